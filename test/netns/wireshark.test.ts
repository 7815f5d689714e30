/**
 * The Wireshark dissector (tools/wireshark/ollana.lua) on a real capture: a server node and a client
 * node in network namespaces, dumpcap capturing UDP 11436 on the client host's eth0, hostile datagrams
 * sent from inside the server host; then Debian's tshark reads the capture with the dissector and its
 * JSON must carry every header and body field of the nodes' datagrams and flag each malformed one.
 * Every packet stays inside this test's namespaces.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createLan, netnsTest as test, type Host } from '../../testkit/netns.ts';
import { NODE, client, emulator, madeByThisFile, serve, until } from './lan-nodes.ts';

const DISSECTOR = fileURLToPath(new URL('../../tools/wireshark/ollana.lua', import.meta.url));
const { lans, homes } = madeByThisFile();

/** What tshark's JSON holds for one packet: every key of its ollana layer, nested trees flattened. */
type Fields = Map<string, string[]>;

function flatten(value: unknown, into: Fields): Fields {
  if (value === null || typeof value !== 'object') return into;
  for (const [key, v] of Object.entries(value)) {
    if (typeof v === 'string') into.set(key, [...(into.get(key) ?? []), v]);
    else if (Array.isArray(v)) for (const item of v) flatten({ [key]: item }, into);
    else flatten(v, into);
  }
  return into;
}

/** Sends the malformed datagrams (one per way to be wrong) to `target`:11436 from inside `host`. */
async function sendMalformed(host: Host, target: string): Promise<void> {
  const script = `
    const dgram = require('node:dgram');
    const head = (len) => Buffer.concat([Buffer.from('OLNA'), Buffer.from([2, len >> 8, len & 255])]);
    const sig = Buffer.alloc(64, 1);
    const notMsgpack = Buffer.from([0xc1, 0x00, 0x01]);
    // A msgpack map {kind: 'announce', port: 'x'}: a wrong type and every other field missing.
    const fields = Buffer.concat([Buffer.from([0x82, 0xa4]), Buffer.from('kind'), Buffer.from([0xa8]), Buffer.from('announce'),
      Buffer.from([0xa4]), Buffer.from('port'), Buffer.from([0xa1]), Buffer.from('x')]);
    const datagrams = [
      Buffer.concat([head(notMsgpack.length), notMsgpack, sig]),
      Buffer.concat([head(fields.length), fields, sig]),
      Buffer.concat([head(500), Buffer.from([0x80]), sig]),
      Buffer.from('not ollana at all'),
      Buffer.concat([Buffer.from('OLNA'), Buffer.from([1]), Buffer.alloc(40)]),
      Buffer.concat([head(1300 - 7 - 64), Buffer.alloc(1300 - 7 - 64, 0xc0), sig]),
    ];
    const s = dgram.createSocket('udp4');
    let left = datagrams.length;
    for (const d of datagrams) s.send(d, 11436, ${JSON.stringify(target)}, () => { if (--left === 0) s.close(); });
  `;
  const r = await host.exec(NODE, ['-e', script]);
  assert.equal(r.code, 0, r.stderr);
}

function tsharkMissing(): string | undefined {
  for (const tool of ['tshark', 'dumpcap']) {
    try {
      execFileSync(tool, ['--version'], { stdio: 'ignore', timeout: 10_000 });
    } catch {
      return `\`${tool}\` is not installed (Debian package tshark; test/helpers/install-test-tools.ts installs it)`;
    }
  }
  return undefined;
}

describe('Wireshark dissector on a capture from network namespaces', { concurrency: false }, () => {
  test('decodes the header and msgpack fields of real datagrams and flags malformed ones', {
    timeout: 120_000,
    skip: process.env.CI === 'true' ? false : (tsharkMissing() ?? false),
  }, async () => {
    const l = await createLan({ hosts: 2 });
    lans.push(l);
    const [h1, h2] = l.hosts as [Host, Host];
    const dir = mkdtempSync(join(tmpdir(), 'ollana-pcap-'));
    homes.push(dir);
    const pcap = join(dir, 'discovery.pcapng');
    const capture = h2.spawn('dumpcap', ['-i', 'eth0', '-f', 'udp port 11436', '-w', pcap]);
    await capture.waitForLine((t) => t.includes('Capturing on'), 15_000);

    await emulator(h1);
    const serverHome = mkdtempSync(join(tmpdir(), 'ollana-ws-'));
    const clientHome = mkdtempSync(join(tmpdir(), 'ollana-ws-'));
    homes.push(serverHome, clientHome);
    await serve(h1, serverHome, ['--trust-lan']);
    await serve(h2, clientHome, ['--trust-lan']);
    const seen = await until(
      'the client node to hear the server node',
      () => client(h2, 'status'),
      (s) => s.peers?.some((p: { role: string }) => p.role === 'server') === true,
      15_000,
    );
    const server = seen.value.peers.find((p: { role: string }) => p.role === 'server') as { id: string };
    const self = seen.value.node.id as string;

    await sendMalformed(h1, h2.addr);
    await until(
      'the client node to count the malformed datagrams',
      () => client(h2, 'status'),
      (s) => {
        const d = s.discovery?.stats?.dropped;
        return d?.malformed >= 3 && d.magic >= 1 && d.version >= 1 && d.oversize >= 1;
      },
      15_000,
    );
    capture.kill('SIGINT');
    await capture.exited;

    const json = execFileSync('tshark', ['-X', `lua_script:${DISSECTOR}`, '-r', pcap, '-T', 'json', '-Y', 'udp'], {
      encoding: 'utf8',
      maxBuffer: 64 * 1024 * 1024,
      timeout: 60_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const packets = (JSON.parse(json) as { _source: { layers: Record<string, unknown> } }[]).map((p) => ({
      src: flatten({ ip: p._source.layers.ip }, new Map()).get('ip.src')?.[0],
      fields: flatten(p._source.layers.ollana, new Map()),
    }));
    const one = (f: Fields, key: string): string | undefined => f.get(key)?.[0];
    const flagged = packets.filter((p) => p.fields.has('_ws.expert.message'));
    const good = packets.filter((p) => !p.fields.has('_ws.expert.message'));

    const announces = good.filter((p) => one(p.fields, 'ollana.kind') === 'announce');
    assert.ok(announces.length > 0, `no announce decoded among ${packets.length} packets`);
    const a = announces[0]!.fields;
    assert.equal(announces[0]!.src, h1.addr);
    assert.equal(one(a, 'ollana.magic'), 'OLNA');
    assert.equal(one(a, 'ollana.version'), '2');
    assert.equal(one(a, 'ollana.id'), server.id);
    assert.equal(one(a, 'ollana.role'), 'server');
    assert.equal(one(a, 'ollana.port'), '11435');
    assert.ok(Number(one(a, 'ollana.seq')) > 1_000_000_000_000, `seq ${one(a, 'ollana.seq')} starts at the clock (ms)`);
    assert.match(one(a, 'ollana.boot') ?? '', /^[0-9a-zA-Z:._-]+$/);
    assert.ok(Number(one(a, 'ollana.load.workers')) >= 1);
    assert.equal(one(a, 'ollana.load.inflight'), '0');
    assert.equal(one(a, 'ollana.draining'), '0');
    assert.ok(a.has('ollana.cert') && a.has('ollana.signature') && a.has('ollana.term') && a.has('ollana.leader'));
    assert.equal(Number(one(a, 'ollana.body_len')) + 7 + 64 > 600, true);

    const queries = good.filter((p) => one(p.fields, 'ollana.kind') === 'query');
    assert.ok(queries.length > 0, 'the client node asked for servers at start');
    assert.equal(queries[0]!.src, h2.addr);
    assert.equal(one(queries[0]!.fields, 'ollana.id'), self);
    assert.equal(one(queries[0]!.fields, 'ollana.role'), 'client');
    assert.equal(one(queries[0]!.fields, 'ollana.port'), '0');

    const experts = flagged.map((p) => p.fields.get('_ws.expert.message')?.join(' | '));
    const has = (key: string) => flagged.filter((p) => p.fields.has(key)).length;
    assert.equal(has('ollana.bad_msgpack'), 1, experts.join('\n'));
    assert.equal(has('ollana.bad_field'), 1, experts.join('\n'));
    assert.equal(has('ollana.bad_length'), 1, experts.join('\n'));
    assert.equal(has('ollana.bad_magic'), 1, experts.join('\n'));
    assert.equal(has('ollana.bad_version'), 1, experts.join('\n'));
    assert.equal(has('ollana.oversize'), 1, experts.join('\n'));
    for (const p of flagged) assert.equal(p.src, h1.addr, 'only the hostile datagrams are flagged');
    const fieldsFlag = flagged.find((p) => p.fields.has('ollana.bad_field'))!.fields;
    assert.equal(
      one(fieldsFlag, 'ollana.kind'),
      'announce',
      'the well-formed fields of a bad datagram are still shown',
    );
  });
});
