/**
 * Smoke test of the virtual LAN harness (testkit/netns.ts) with real processes: UDP multicast,
 * limited and directed broadcast, unicast, TCP, hostnames, nftables helpers, cut/heal, and cleanup.
 * Every packet is sent from inside a namespace to an address that exists only inside this test's namespaces.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { hostname as osHostname } from 'node:os';
import { after, before, describe } from 'node:test';
import { fileURLToPath } from 'node:url';
import {
  cleanupStale,
  clearRules,
  createLan,
  cut,
  dropMulticast,
  dropRandomUdp,
  heal,
  netnsSkipReason,
  netnsTest as it,
  withLan,
  type Host,
  type HostProcess,
  type Lan,
} from '../../testkit/netns.ts';

const skip = netnsSkipReason();
const NODE = process.execPath;
const HARNESS = fileURLToPath(new URL('../../testkit/netns.ts', import.meta.url));
const PORT = 11436;
const GROUP = '239.255.11.36';

/** Prints `ready <hostname>` once bound and joined, then one JSON line per datagram. */
const RECEIVER = `
const dgram = require('node:dgram');
const s = dgram.createSocket({ type: 'udp4', reuseAddr: true });
s.on('message', (m, r) => console.log(JSON.stringify({ msg: m.toString(), from: r.address })));
s.bind(${PORT}, '0.0.0.0', () => { s.addMembership('${GROUP}'); console.log('ready ' + require('node:os').hostname()); });
`;

/** argv: `<dest>|<payload>`...; sends them in order from one socket, printing `sent <payload>` after each. */
const SENDER = `
const dgram = require('node:dgram');
const s = dgram.createSocket('udp4');
s.bind(0, async () => {
  s.setBroadcast(true);
  s.setMulticastTTL(1);
  for (const a of process.argv.slice(1)) {
    const i = a.indexOf('|');
    const msg = a.slice(i + 1);
    await new Promise((res, rej) => s.send(msg, ${PORT}, a.slice(0, i), (e) => (e ? rej(e) : res())));
    console.log('sent ' + msg);
  }
  s.close();
});
`;

/** Payloads received so far by a receiver process (optionally only lines from index `since`). */
function received(p: HostProcess, since = 0): string[] {
  return p.lines
    .slice(since)
    .filter((l) => l.stream === 'stdout' && l.text.startsWith('{'))
    .map((l) => (JSON.parse(l.text) as { msg: string }).msg);
}

function waitMsg(p: HostProcess, msg: string, since = 0, timeoutMs = 3000): Promise<string> {
  return p.waitForLine((t) => t.startsWith('{') && (JSON.parse(t) as { msg: string }).msg === msg, timeoutMs, since);
}

async function send(from: Host, ...pairs: [dest: string, payload: string][]): Promise<void> {
  const r = await from.exec(NODE, ['-e', SENDER, ...pairs.map(([d, m]) => `${d}|${m}`)], 10_000);
  assert.equal(r.code, 0, `sender failed: ${r.stderr}`);
}

function nsList(): string[] {
  return execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' })
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter(Boolean);
}

/** True once the pid is gone or a zombie (bounded wait). */
async function waitPidGone(pid: number, timeoutMs = 3000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 300 && Date.now() < deadline; i++) {
    if (!existsSync(`/proc/${pid}`)) return true;
    try {
      if (/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'))) return true;
    } catch {
      return true;
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  return false;
}

describe('virtual LAN with 3 hosts', { timeout: 30_000 }, () => {
  let lan: Lan;
  let h1: Host, h2: Host, h3: Host;
  let rx1: HostProcess, rx3: HostProcess;
  let bcast: string;
  const ownHostname = osHostname();

  before(async () => {
    if (skip !== undefined) return; // its tests are reported skipped, with the reason
    lan = await createLan({ hosts: 3 });
    [h1, h2, h3] = lan.hosts as [Host, Host, Host];
    bcast = lan.broadcast;
    rx1 = h1.spawn(NODE, ['-e', RECEIVER]);
    rx3 = h3.spawn(NODE, ['-e', RECEIVER]);
    await Promise.all([
      rx1.waitForLine((t) => t.startsWith('ready '), 5000),
      rx3.waitForLine((t) => t.startsWith('ready '), 5000),
    ]);
  });
  after(async () => {
    await lan?.close();
  });

  it('gives each host its own namespace, hostname and address, and no default route', async () => {
    assert.equal(new Set(lan.hosts.map((h) => h.hostname)).size, 3);
    assert.equal(new Set(lan.hosts.map((h) => h.addr)).size, 3);
    assert.ok(rx1.lines.some((l) => l.text === `ready ${h1.hostname}`));
    for (const h of lan.hosts) {
      assert.match(h.addr, /^10\.211\.\d+\.\d+$/);
      const r = await h.exec('sh', [
        '-c',
        'cat /proc/sys/kernel/hostname; ip -4 route show default | wc -l; ip -4 -o addr show dev eth0',
      ]);
      const [name, defaults, addr] = r.stdout.split('\n');
      assert.equal(name, h.hostname);
      assert.equal(defaults?.trim(), '0');
      assert.match(
        addr ?? '',
        new RegExp(`inet ${h.addr.replaceAll('.', '\\.')}/24 brd ${bcast.replaceAll('.', '\\.')}`),
      );
    }
    assert.equal(osHostname(), ownHostname, 'the machine hostname must not change');
    const nf = '/proc/sys/net/bridge/bridge-nf-call-iptables';
    if (existsSync(nf)) {
      assert.equal(
        execFileSync('ip', ['netns', 'exec', lan.bridgeNs, 'cat', nf], { encoding: 'utf8' }).trim(),
        '0',
        'bridged frames must bypass iptables',
      );
    }
  });

  it('delivers multicast, limited broadcast, directed broadcast and unicast from host 2 to host 1', async () => {
    await send(h2, [GROUP, 'A-mc'], ['255.255.255.255', 'A-lb'], [bcast, 'A-db'], [h1.addr, 'A-uc']);
    for (const m of ['A-mc', 'A-lb', 'A-db', 'A-uc']) await waitMsg(rx1, m);
    for (const m of ['A-mc', 'A-lb', 'A-db']) await waitMsg(rx3, m);
    const line = await waitMsg(rx1, 'A-uc');
    assert.equal((JSON.parse(line) as { from: string }).from, h2.addr);
  });

  it('dropMulticast(host 1) blocks multicast to it but not broadcast; clearRules restores it', async () => {
    await dropMulticast(h1);
    const since = rx1.lines.length;
    await send(h2, [GROUP, 'B-mc'], ['255.255.255.255', 'B-lb']);
    await waitMsg(rx1, 'B-lb', since); // the marker, sent after B-mc over a path that still works
    await waitMsg(rx3, 'B-mc'); // B-mc was really on the LAN
    assert.deepEqual(
      received(rx1, since).filter((m) => m.startsWith('B-')),
      ['B-lb'],
    );

    await clearRules(h1);
    const since2 = rx1.lines.length;
    await send(h2, [GROUP, 'C-mc']);
    await waitMsg(rx1, 'C-mc', since2);
  });

  it('dropRandomUdp drops roughly the given share of datagrams', async () => {
    await dropRandomUdp(h1, 50, PORT);
    const since = rx1.lines.length;
    const n = 200;
    await send(h2, ...Array.from({ length: n }, (_, i): [string, string] => [h1.addr, `G-${i}`]));
    await clearRules(h1);
    await send(h2, [h1.addr, 'G-end']);
    await waitMsg(rx1, 'G-end', since);
    const got = received(rx1, since).filter((m) => /^G-\d+$/.test(m)).length;
    assert.ok(got > n * 0.15 && got < n * 0.85, `received ${got}/${n} with 50% random drop`);
  });

  it('cut(host 1) stops all delivery to it; heal(host 1) restores it', async () => {
    const since = rx1.lines.length;
    const since3 = rx3.lines.length;
    await cut(h1);
    await send(h2, [GROUP, 'D-mc'], ['255.255.255.255', 'D-lb'], [bcast, 'D-db'], [h1.addr, 'D-uc']);
    for (const m of ['D-mc', 'D-lb', 'D-db']) await waitMsg(rx3, m, since3); // they were on the LAN
    await heal(h1);
    await send(h2, [GROUP, 'E-mc'], ['255.255.255.255', 'E-lb'], [bcast, 'E-db'], [h1.addr, 'E-uc']);
    for (const m of ['E-mc', 'E-lb', 'E-db', 'E-uc']) await waitMsg(rx1, m, since);
    assert.deepEqual(
      received(rx1, since).filter((m) => m.startsWith('D-')),
      [],
      'nothing sent during the cut may arrive',
    );
  });

  it('carries TCP from host 2 to host 1', async () => {
    const server = h1.spawn(NODE, [
      '-e',
      `
      const net = require('node:net');
      const srv = net.createServer((c) => { console.log('peer ' + c.remoteAddress); c.end(require('node:os').hostname() + '\\n'); });
      srv.listen(11437, '0.0.0.0', () => console.log('listening'));
    `,
    ]);
    await server.waitForLine((t) => t === 'listening', 5000);
    const r = await h2.exec(
      NODE,
      [
        '-e',
        `
      const c = require('node:net').connect(11437, process.argv[1]);
      let data = ''; c.on('data', (d) => { data += d; }); c.on('end', () => console.log(require('node:os').hostname() + ' got ' + data.trim()));
      c.on('error', (e) => { console.error(e.message); process.exit(2); });
    `,
        h1.addr,
      ],
      5000,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), `${h2.hostname} got ${h1.hostname}`);
    await server.waitForLine((t) => t === `peer ${h2.addr}`, 3000);
    await server.stop();
  });
});

describe('cleanup', { timeout: 30_000 }, () => {
  it('close() removes every namespace and process even when the test body throws', async () => {
    let names: readonly string[] = [];
    let pid: number | undefined;
    await assert.rejects(
      withLan(
        { hosts: 2 },
        async (lan) => {
          names = lan.namespaces;
          const p = lan.hosts[1]!.spawn('sh', ['-c', 'trap "" TERM; echo up; while :; do sleep 1; done']); // ignores SIGTERM
          await p.waitForLine((t) => t === 'up', 3000);
          pid = p.pid;
          assert.deepEqual(
            names.filter((n) => nsList().includes(n)),
            names,
          );
          throw new Error('boom');
        },
        500,
      ),
      /boom/,
    );
    assert.equal(names.length, 3);
    assert.deepEqual(
      names.filter((n) => nsList().includes(n)),
      [],
    );
    assert.ok(pid !== undefined && (await waitPidGone(pid)), 'the spawned process must be gone');
  });

  for (const how of ['uncaught exception', 'SIGTERM'] as const) {
    it(`the process hooks remove the namespaces when a test process dies without close() (${how})`, async () => {
      const script = `
        import { createLan } from ${JSON.stringify(HARNESS)};
        const lan = await createLan({ hosts: 2 });
        const p = lan.hosts[0].spawn('sleep', ['30']);
        await new Promise((r) => setTimeout(r, 50));
        console.log(JSON.stringify({ names: lan.namespaces, pid: p.pid }));
        if (${JSON.stringify(how)} === 'uncaught exception') throw new Error('crash on purpose');
        setTimeout(() => {}, 20_000);
      `;
      const child = spawn(NODE, ['--input-type=module', '-e', script], {
        stdio: ['ignore', 'pipe', 'pipe'],
        env: { ...process.env, NODE_TEST_CONTEXT: undefined },
      });
      let out = '';
      let err = '';
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (how === 'SIGTERM' && out.includes('\n')) child.kill('SIGTERM');
      });
      child.stderr.on('data', (d: Buffer) => {
        err += d.toString();
      });
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((r) =>
        child.once('close', (c, s) => r([c, s])),
      );
      clearTimeout(timer);
      if (how === 'SIGTERM') assert.equal(signal, 'SIGTERM', err);
      else {
        assert.equal(code, 1, err);
        assert.match(err, /crash on purpose/);
      }
      const { names, pid } = JSON.parse(out.trim()) as { names: string[]; pid: number };
      assert.equal(names.length, 3);
      assert.deepEqual(
        names.filter((n) => nsList().includes(n)),
        [],
      );
      assert.ok(await waitPidGone(pid), 'the spawned process must be gone');
    });
  }

  it('cleanupStale() deletes namespaces of dead creators only', async (t) => {
    const deadPid = spawnSync('true').pid;
    assert.ok(deadPid && !existsSync(`/proc/${deadPid}`));
    const r = randomBytes(4).toString('hex');
    const stale = [`oln${deadPid}x${r}b`, `oln${deadPid}x${r}h1`];
    const liveName = `oln${process.ppid}x${r}b`; // creator alive: must be kept
    t.after(() => {
      for (const n of [...stale, liveName]) spawnSync('ip', ['netns', 'del', n], { stdio: 'ignore' });
    });
    const lan = await createLan({ hosts: 1 }); // first: createLan may run cleanupStale itself
    for (const n of [...stale, liveName]) execFileSync('ip', ['netns', 'add', n]);
    try {
      const removed = cleanupStale();
      for (const n of stale) assert.ok(removed.includes(n), `${n} must be removed`);
      const now = nsList();
      assert.deepEqual(
        stale.filter((n) => now.includes(n)),
        [],
      );
      assert.ok(now.includes(liveName));
      for (const n of lan.namespaces) assert.ok(now.includes(n), `own namespace ${n} must be kept`);
    } finally {
      await lan.close();
    }
  });
});
