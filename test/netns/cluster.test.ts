/**
 * The LAN cluster for real: several ollana processes, each in its own network namespace on one virtual
 * LAN, with an Ollama emulator on each server host's loopback. Requests are made from inside the
 * client hosts with the official ollama-js client. Every packet stays inside this test's namespaces.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  createLan,
  cut,
  dropMulticast,
  dropRandomUdp,
  heal,
  netnsTest as test,
  type Host,
  type HostProcess,
  type Lan,
} from '../../testkit/netns.ts';
import { threadNames } from '../helpers/threads.ts';
import { CLIENT, EMULATOR, MAIN, NODE, client, emulator, madeByThisFile, serve, until } from './lan-nodes.ts';

const RESIDENCY_CLIENT = fileURLToPath(new URL('./fixtures/residency-client.ts', import.meta.url));

/** residency-client.ts inside `host` (its emu-* commands ask that host's emulator directly). */
// biome-ignore lint/suspicious/noExplicitAny: each command prints its own JSON shape
async function residency(host: Host, ...args: string[]): Promise<any> {
  const r = await host.exec(NODE, [RESIDENCY_CLIENT, ...args], 20_000);
  return JSON.parse(r.stdout.trim().split('\n').at(-1) ?? '');
}

/** Fast heartbeats keep the suite short: a node silent for 3.5 heartbeats (1050 ms) is gone. */
const HEARTBEAT = '300ms';
const DETECT_MS = 1_050;

const { lans, homes } = madeByThisFile();

async function lan(hosts: number): Promise<Lan> {
  const l = await createLan({ hosts });
  lans.push(l);
  return l;
}

interface Node {
  proc: HostProcess;
  home: string;
  host: Host;
}

async function node(host: Host, opts: { home?: string; extra?: string[] } = {}): Promise<Node> {
  const home = opts.home ?? mkdtempSync(join(tmpdir(), 'ollana-lan-'));
  homes.push(home);
  // --trust-lan: these scenarios are about discovery and failover; pairing has its own (trust.test.ts).
  const { proc } = await serve(host, home, ['--heartbeat', HEARTBEAT, '--trust-lan', ...(opts.extra ?? [])]);
  return { proc, home, host };
}

function logTime(p: HostProcess, pred: (msg: string) => boolean): number | null {
  for (const l of p.lines) {
    if (!l.text.startsWith('{')) continue;
    const j = JSON.parse(l.text) as { msg?: string; time?: number };
    if (typeof j.msg === 'string' && pred(j.msg)) return j.time ?? null;
  }
  return null;
}

interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

const upstreamCount = (s: { upstreams?: unknown[] }): number => s.upstreams?.length ?? -1;

describe('LAN cluster in network namespaces', { concurrency: false }, () => {
  test('1 server, 2 clients: both clients serve ollama-js through the server within 1 s', {
    timeout: 90_000,
  }, async () => {
    const l = await lan(3);
    const [h1, h2, h3] = l.hosts as [Host, Host, Host];
    await emulator(h1);
    const server = await node(h1);
    assert.ok(server.proc.lines.some((x) => x.text.includes('this machine is a server node')));
    // With discovery on, both actors run on threads of their own (with it off, neither: solo-node.test.ts).
    const threads = threadNames(server.proc.pid!);
    assert.ok(threads.includes('discovery') && threads.includes('election'), `threads: ${threads.join(', ')}`);
    const clients = await Promise.all([node(h2), node(h3)]);
    for (const c of clients) {
      assert.ok(c.proc.lines.some((x) => x.text.includes('this machine is a client node')));
      const listening = logTime(c.proc, (m) => m.includes('listening on'))!;
      const found = await until(
        'the client to find the server',
        async () => logTime(c.proc, (m) => m.startsWith('server node')),
        (t) => t !== null,
      );
      assert.ok(found.value! - listening < 1_000, `found the server ${found.value! - listening} ms after listening`);
      const tags = await client(c.host, 'list');
      assert.deepEqual(tags.models?.sort(), ['llama3.2:latest', 'nomic-embed-text:latest']);
      const gen = await client(c.host, 'generate', '3');
      assert.deepEqual(gen, { ok: 3, failed: 0, errors: [] });
    }
    const st = await client(h2, 'status');
    assert.equal(st.role, 'client');
    assert.equal(st.peers.filter((p: { role: string }) => p.role === 'server').length, 1);
    assert.equal(st.peers[0].addr, h1.addr);
    // Metrics on both sides of the hop: each client node counted its 3 generations, the server node
    // 6, by the device that sent them, and the tokens each client node counted add up to the server's.
    const [m2, m3, m1] = await Promise.all([
      client(h2, 'metrics'),
      client(h3, 'metrics'),
      client(h1, 'metrics', '11435'),
    ]);
    const generated = (m: { samples: Sample[] }, labels: Record<string, string>, name = 'ollana_requests_total') =>
      m.samples
        .filter((x) => x.name === name && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
        .reduce((n, x) => n + x.value, 0);
    for (const m of [m2, m3]) {
      assert.equal(generated(m, { family: 'generate', model: 'llama3.2', outcome: '2xx', device: '' }), 3);
      assert.ok(generated(m, {}, 'ollana_tls_handshakes_total') > 0, 'the client node reached the server over TLS');
    }
    assert.equal(generated(m1, { family: 'generate', outcome: '2xx' }), 6);
    const devices = new Set(
      m1.samples
        .filter((x: Sample) => x.name === 'ollana_requests_total' && x.labels.family === 'generate')
        .map((x: Sample) => x.labels.device),
    );
    assert.equal(devices.size, 2, `one device label per client node: ${[...devices].join(', ')}`);
    const tokens = (m: { samples: Sample[] }) => generated(m, { family: 'generate' }, 'ollana_generated_tokens_total');
    assert.ok(tokens(m1) > 0);
    assert.equal(tokens(m2) + tokens(m3), tokens(m1));
  });

  test('3 servers elect one leader; the leader dies: a new one, and requests after detection all succeed', {
    timeout: 90_000,
  }, async () => {
    const l = await lan(4);
    const servers = l.hosts.slice(0, 3);
    const ch = l.hosts[3]!;
    await Promise.all(servers.map((h) => emulator(h)));
    const nodes = await Promise.all(servers.map((h) => node(h)));
    await node(ch);
    const seen = await until(
      'the client to see 3 servers and a leader',
      () => client(ch, 'status'),
      (s) => upstreamCount(s) === 3 && s.cluster.leader !== '',
    );
    const leader: string = seen.value.cluster.leader;
    const ids: string[] = [];
    for (const n of nodes) {
      const s = await until(
        'server agreement on the leader',
        () => client(n.host, 'status', '11435'),
        (x) => x.cluster.leader === leader,
      );
      ids.push(s.value.node.id);
    }
    assert.equal(leader, [...ids].sort()[0], 'the lowest id leads');
    assert.equal(ids.filter((id) => id === leader).length, 1);

    const victim = nodes[ids.indexOf(leader)]!;
    victim.proc.kill('SIGKILL'); // no bye: only missed heartbeats tell
    const after = await until(
      'a new leader',
      () => client(ch, 'status'),
      (s) => s.cluster.leader !== leader && s.cluster.leader !== '' && upstreamCount(s) === 2,
      8_000,
    );
    assert.equal(after.value.cluster.leader, ids.filter((id) => id !== leader).sort()[0]);
    assert.ok(after.value.cluster.term > seen.value.cluster.term, 'a new term');
    const gen = await client(ch, 'generate', '20');
    assert.deepEqual(gen, { ok: 20, failed: 0, errors: [] }, 'no request after the detection window fails');
  });

  test('a cut link: clients stop routing to that server within the detection time; healed: it is used again', {
    timeout: 90_000,
  }, async () => {
    const l = await lan(3);
    const [h1, h2, h3] = l.hosts as [Host, Host, Host];
    // only1 lives on h1 alone: its requests succeed only when h1 is used.
    await Promise.all([emulator(h1, 'llama3.2:latest,only1:latest'), emulator(h2)]);
    await Promise.all([node(h1), node(h2)]);
    await node(h3);
    await until(
      'the client to see both servers',
      () => client(h3, 'status'),
      (s) => upstreamCount(s) === 2,
    );
    await cut(h1);
    const gone = await until(
      'the cut server to be dropped',
      () => client(h3, 'status'),
      (s) => upstreamCount(s) === 1,
      8_000,
    );
    assert.ok(gone.ms < DETECT_MS + 2_000, `dropped after ${gone.ms.toFixed(0)} ms`);
    assert.equal(gone.value.upstreams[0].url, `https://${h2.addr}:11435`);
    assert.deepEqual(await client(h3, 'generate', '5'), { ok: 5, failed: 0, errors: [] });
    await heal(h1);
    await until(
      'the healed server to be used again',
      () => client(h3, 'status'),
      (s) => upstreamCount(s) === 2,
      8_000,
    );
    assert.deepEqual(await client(h3, 'generate', '10'), { ok: 10, failed: 0, errors: [] });
    await until(
      "the healed server's models to be known again",
      () => client(h3, 'status'),
      (st) => st.upstreams.some((u: { models: string[] }) => u.models.includes('only1:latest')),
      8_000,
    );
    assert.deepEqual(await client(h3, 'generate', '3', 'only1'), { ok: 3, failed: 0, errors: [] }, 'h1 is used again');
  });

  test('a server whose Ollama stops leaves the cluster; when it starts again, it returns', {
    timeout: 90_000,
  }, async () => {
    const l = await lan(2);
    const [h1, h2] = l.hosts as [Host, Host];
    let emu = await emulator(h1);
    const server = await node(h1);
    await node(h2);
    await until(
      'the client to see the server',
      () => client(h2, 'status'),
      (s) => upstreamCount(s) === 1,
    );
    await emu.stop();
    await until(
      'the server to leave',
      () => client(h2, 'status'),
      (s) => upstreamCount(s) === 0,
      8_000,
    );
    const down = await client(h2, 'list');
    assert.match(String(down.error), /503|still looking|no Ollama server/i);
    await server.proc.waitForLine((t) => t.includes('stopped answering'), 5_000);
    emu = await emulator(h1);
    await until(
      'the server to return',
      () => client(h2, 'status'),
      (s) => upstreamCount(s) === 1,
      8_000,
    );
    assert.deepEqual(await client(h2, 'generate', '2'), { ok: 2, failed: 0, errors: [] });
  });

  test('two nodes with the same identity: the conflict is reported', { timeout: 90_000 }, async () => {
    const l = await lan(3);
    const [h1, h2, h3] = l.hosts as [Host, Host, Host];
    await Promise.all([emulator(h1), emulator(h2)]);
    const a = await node(h1);
    const cloneHome = mkdtempSync(join(tmpdir(), 'ollana-lan-'));
    for (const f of ['cert.pem', 'key.pem']) copyFileSync(join(a.home, f), join(cloneHome, f)); // a cloned data directory
    await node(h2, { home: cloneHome });
    await node(h3);
    const seen = await until(
      'a duplicate-id conflict',
      () => client(h3, 'status'),
      (s) => s.cluster.conflicts.some((c: { kind: string }) => c.kind === 'duplicate-id'),
    );
    const c = seen.value.cluster.conflicts.find((x: { kind: string }) => x.kind === 'duplicate-id');
    assert.match(c.detail, /same id/);
    const self = await until(
      'the clone to be reported on the server too',
      () => client(h1, 'status', '11435'),
      (s) => s.cluster.conflicts.some((x: { kind: string }) => x.kind === 'duplicate-id'),
    );
    assert.ok(self.value.cluster.conflicts.length >= 1);
    // Logged when the node saw the conflict; the line may reach this process after its status did.
    await a.proc.waitForLine((text) => text.includes('uses this node'), 10_000);
  });

  test('multicast dropped: broadcast still finds the server', { timeout: 90_000 }, async () => {
    const l = await lan(2);
    const [h1, h2] = l.hosts as [Host, Host];
    await dropMulticast(h1);
    await dropMulticast(h2);
    await emulator(h1);
    // Control: with only multicast on both sides, the dropped group means nobody is found.
    const mcServer = await node(h1, { extra: ['--discovery', 'multicast'] });
    await node(h2, { extra: ['--discovery', 'multicast'] });
    for (let i = 0; i < 10; i++) {
      assert.equal(upstreamCount(await client(h2, 'status')), 0, 'multicast is really dropped');
      await new Promise((r) => setTimeout(r, 300));
    }
    // The same server with broadcast as well (the default): the client hears its broadcast announces.
    await mcServer.proc.stop();
    await node(h1);
    const found = await until(
      'discovery over broadcast',
      () => client(h2, 'status'),
      (s) => upstreamCount(s) === 1,
      5_000,
    );
    assert.equal(found.value.upstreams[0].url, `https://${h1.addr}:11435`);
    assert.deepEqual(await client(h2, 'generate', '2'), { ok: 2, failed: 0, errors: [] });
  });

  test('30% random UDP loss: discovery still converges', { timeout: 90_000 }, async () => {
    const l = await lan(3);
    for (const h of l.hosts) await dropRandomUdp(h, 30, 11436);
    const [h1, h2, h3] = l.hosts as [Host, Host, Host];
    await Promise.all([emulator(h1), emulator(h2)]);
    await Promise.all([node(h1), node(h2)]);
    await node(h3);
    await until(
      'both servers despite loss',
      () => client(h3, 'status'),
      (s) => upstreamCount(s) === 2,
      10_000,
    );
    assert.deepEqual(await client(h3, 'generate', '5'), { ok: 5, failed: 0, errors: [] });
  });

  test('a stream from a server whose link is cut ends with an error line, not a hang', {
    timeout: 90_000,
  }, async () => {
    const l = await lan(2);
    const [h1, h2] = l.hosts as [Host, Host];
    await emulator(h1);
    await node(h1);
    await node(h2);
    await until(
      'the client to see the server',
      () => client(h2, 'status'),
      (s) => upstreamCount(s) === 1,
    );
    const streamer = h2.spawn(NODE, [CLIENT, 'stream', '500', '20']); // 10 s of tokens
    await streamer.waitForLine((t) => t === 'started', 10_000);
    const cutAt = Date.now();
    await cut(h1);
    const line = await streamer.waitForLine((t) => t.startsWith('{'), 10_000);
    const result = JSON.parse(line) as { parts: number; done: boolean; error: string | null };
    const endedAfter = Date.now() - cutAt;
    assert.equal(result.done, false);
    assert.match(String(result.error), /left the cluster|broke off/);
    assert.ok(endedAfter < DETECT_MS + 3_000, `the stream ended ${endedAfter} ms after the cut`);
    assert.ok(result.parts > 0 && result.parts < 500);
  });

  test('hostile datagrams are dropped and counted; the node keeps serving; `ollana status` shows it', {
    timeout: 90_000,
  }, async () => {
    const l = await lan(3);
    const [h1, h2, h3] = l.hosts as [Host, Host, Host];
    await emulator(h1);
    await node(h1);
    await node(h2);
    await until(
      'the client to see the server',
      () => client(h2, 'status'),
      (s) => upstreamCount(s) === 1,
    );
    const flood = client(h3, 'garbage', h2.addr, '5000');
    const during = await client(h2, 'generate', '5');
    assert.equal((await flood).sent, 5000);
    assert.deepEqual(during, { ok: 5, failed: 0, errors: [] });
    // The flood is sent; the client's discovery thread may still be reading it: wait for the counts.
    type Dropped = { magic: number; version: number; malformed: number; oversize: number; rateLimited: number };
    const dropped = (s: { discovery: { stats: { dropped: Dropped } } }): Dropped => s.discovery.stats.dropped;
    const { value: st } = await until(
      'the client to count the garbage it dropped',
      () => client(h2, 'status'),
      (s) => {
        const x = dropped(s);
        return x.magic + x.version + x.malformed + x.oversize + x.rateLimited >= 1000;
      },
    );
    const d = dropped(st);
    assert.ok(d.version > 0 && d.oversize > 0, 'each kind of garbage is told apart');
    assert.equal(upstreamCount(st), 1, 'the real server is still known');
    const cli = await h2.exec(NODE, [MAIN, 'status', '--json'], 15_000);
    assert.equal(cli.code, 0, cli.stderr);
    const json = JSON.parse(cli.stdout) as { role: string; peers: { addr: string; role: string }[] };
    assert.equal(json.role, 'client');
    assert.ok(json.peers.some((p) => p.addr === h1.addr && p.role === 'server'));
    const human = await h2.exec(NODE, [MAIN, 'status'], 15_000);
    assert.match(human.stdout, /role: client node/);
    assert.match(human.stdout, new RegExp(`${h1.addr.replace(/\./g, '\\.')}.*leader`));
  });

  test('auto mode: a server whose Ollama stays away becomes a client node and uses the LAN', {
    timeout: 90_000,
  }, async () => {
    const l = await lan(2);
    const [h1, h2] = l.hosts as [Host, Host];
    const emu1 = await emulator(h1);
    await emulator(h2);
    const n1 = await node(h1, { extra: ['--role-switch-after', '1s'] });
    await node(h2);
    await emu1.stop();
    await n1.proc.waitForLine((t) => t.includes('turns from server into client'), 15_000);
    await n1.proc.waitForLine((t) => t.includes('client node listening on http://127.0.0.1:11434'), 15_000);
    await until(
      'the new client to find the other server',
      () => client(h1, 'status'),
      (s) => upstreamCount(s) === 1,
    );
    assert.deepEqual(await client(h1, 'generate', '2'), { ok: 2, failed: 0, errors: [] });
  });

  test('auto mode: a client node whose Ollama appears becomes a server node', { timeout: 90_000 }, async () => {
    const l = await lan(2);
    const [h1, h2] = l.hosts as [Host, Host];
    const n1 = await node(h1, { extra: ['--ollama-url', '127.0.0.1:11500'] });
    assert.ok(n1.proc.lines.some((x) => x.text.includes('this machine is a client node')));
    await node(h2);
    const emu = h1.spawn(NODE, [
      EMULATOR,
      '--port',
      '11500',
      '--tokens',
      '3',
      '--token-interval-ms',
      '2',
      '--ttft-ms',
      '0',
    ]);
    await emu.waitForLine((t) => t.includes('"url"'), 10_000);
    await n1.proc.waitForLine((t) => t.includes('turns from client into server'), 15_000);
    await until(
      'the other client to find the new server',
      () => client(h2, 'status'),
      (s) => upstreamCount(s) === 1,
    );
    assert.deepEqual(await client(h2, 'generate', '2'), { ok: 2, failed: 0, errors: [] });
  });

  test("a client node fetches a server's changed model list over the connection it keeps: no full TLS handshake per refresh", {
    timeout: 90_000,
  }, async () => {
    const l = await lan(2);
    const [h1, h2] = l.hosts as [Host, Host];
    await emulator(h1, 'm0:latest');
    await node(h1);
    await node(h2);
    const listed = (s: { upstreams?: { models: string[] }[] }): string =>
      [...(s.upstreams?.[0]?.models ?? [])].sort().join(',');
    await until(
      "the client to list the server's model",
      () => client(h2, 'status'),
      (s) => listed(s) === 'm0:latest',
    );
    const tls = async (): Promise<{ requests: number; full: number; resumed: number }> => {
      const t = (await client(h1, 'status', '11435')).workers.totals as {
        requests: number;
        tlsHandshakes: number;
        tlsResumed: number;
      };
      return { requests: t.requests, full: t.tlsHandshakes - t.tlsResumed, resumed: t.tlsResumed };
    };
    const before = await tls();
    const models = ['m0:latest'];
    for (let i = 1; i <= 3; i++) {
      // The server node sees the new model at its next Ollama check and announces a new models digest;
      // the client fetches the list again.
      assert.deepEqual(await client(h1, 'copy', 'm0', `m${i}`), { ok: true });
      models.push(`m${i}:latest`);
      await until(
        `the client to list m${i}`,
        () => client(h2, 'status'),
        (s) => listed(s) === models.join(','),
        10_000,
      );
    }
    const after = await tls();
    assert.ok(
      after.requests - before.requests >= 3,
      `the 3 list fetches reached the server (${before.requests} -> ${after.requests} requests)`,
    );
    // Each status read connects afresh (a full handshake of its own, counted in its answer); the list
    // fetches reuse the client node's connection, or resume its session when the connection has closed.
    assert.equal(
      after.full - before.full,
      1,
      `full handshakes on the server during 3 refreshes: ${JSON.stringify({ before, after })}`,
    );
  });

  test('the discovery port held by another program: a clear error naming it and the flag', {
    timeout: 60_000,
  }, async () => {
    const l = await lan(1);
    const h1 = l.hosts[0]!;
    const holder = h1.spawn(NODE, [
      '-e',
      "const s=require('node:dgram').createSocket('udp4');s.bind(11436,'0.0.0.0',()=>console.log('held'))",
    ]);
    await holder.waitForLine((t) => t === 'held', 10_000);
    const home = mkdtempSync(join(tmpdir(), 'ollana-lan-'));
    homes.push(home);
    const r = await h1.exec(NODE, [MAIN, 'serve', '--workers', '1'], 30_000, {
      env: { OLLANA_HOME: home, OLLANA_DISCOVERY: undefined },
    });
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /discovery UDP port 0\.0\.0\.0:11436 is in use.*--discovery-port.*\[OLN_PORT_IN_USE\]/);
  });

  test('requests go to a server that has the model; /api/tags is the union; a failing server is retried elsewhere', {
    timeout: 90_000,
  }, async () => {
    const l = await lan(3);
    const [h1, h2, h3] = l.hosts as [Host, Host, Host];
    const emu1 = await emulator(h1, 'llama3.2:latest,shared:latest');
    await emulator(h2, 'qwen3:0.6b,shared:latest');
    await Promise.all([node(h1), node(h2)]);
    const c3 = await node(h3);
    await until(
      'both servers with their models',
      () => client(h3, 'status'),
      (s) => upstreamCount(s) === 2 && s.upstreams.every((u: { models: string[] }) => u.models.length === 2),
    );
    const tags = await client(h3, 'list');
    assert.deepEqual(tags.models.sort(), ['llama3.2:latest', 'qwen3:0.6b', 'shared:latest']);
    assert.deepEqual(await client(h3, 'generate', '4', 'qwen3:0.6b'), { ok: 4, failed: 0, errors: [] });
    assert.deepEqual(await client(h3, 'generate', '4', 'llama3.2'), { ok: 4, failed: 0, errors: [] });
    // Each server's Ollama lists what it loaded (the client node also polls the servers' /api/ps, so
    // the server nodes' request counts say nothing about where the generations went).
    assert.deepEqual(
      await residency(h1, 'emu-ps'),
      { models: ['llama3.2:latest'] },
      'llama went to the server with llama',
    );
    assert.deepEqual(await residency(h2, 'emu-ps'), { models: ['qwen3:0.6b'] }, 'qwen went to the server with qwen');
    // shared is loaded on h1 alone: its requests go there (warm first). h1's Ollama dies; until h1's
    // health check notices, h1 answers 502: those requests move to h2.
    assert.deepEqual(await residency(h1, 'emu-gen', 'shared'), { ok: true });
    const count = async (h: Host): Promise<number> =>
      (await client(h, 'status', '11435')).workers.totals.requests as number;
    const a1 = await count(h1);
    const load = client(h3, 'generate', '150', 'shared');
    await until(
      'the shared-model requests to reach h1',
      () => count(h1),
      (n) => n > a1 + 10,
      10_000,
    );
    await emu1.stop();
    // The one request streaming from h1 at the instant its Ollama dies cannot move (bytes went out):
    // it ends with an error line. Every other request is answered, by h2 when h1 cannot.
    const result = (await load) as { ok: number; failed: number; errors: string[] };
    assert.ok(result.failed <= 1 && result.ok + result.failed === 150, JSON.stringify(result));
    for (const e of result.errors) assert.match(e, /broke off the response/);
    // A request was moved to the other server; the node's log line may reach this process after the load ended.
    await c3.proc.waitForLine((text) => text.includes('retrying on another server node'), 10_000);
  });
});
