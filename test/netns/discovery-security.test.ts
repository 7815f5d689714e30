/**
 * Issue #22 (discovery part), for real: a hostile host on the same virtual LAN as a server node and a
 * client node sends crafted discovery datagrams from inside its own network namespace (fixtures/
 * lan-attacker.ts). Requests are made through the client node from inside its host. Every packet
 * stays inside this test's namespaces.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe } from 'node:test';
import { createLan, netnsTest as test, type Host, type HostProcess, type Lan } from '../../testkit/netns.ts';
import { CLIENT, NODE, client, emulator, madeByThisFile, serve, until } from './lan-nodes.ts';

const ATTACKER = fileURLToPath(new URL('./fixtures/lan-attacker.ts', import.meta.url));
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

/** ollana with the default 1 s heartbeat (the red team's setting); --trust-lan: pairing is not the point here. */
async function node(host: Host, extra: string[] = []): Promise<Node> {
  const home = mkdtempSync(join(tmpdir(), 'ollana-lan-sec-'));
  homes.push(home);
  const { proc } = await serve(host, home, ['--trust-lan', ...extra]);
  return { proc, home, host };
}

function attacker(host: Host, ...args: string[]): HostProcess {
  return host.spawn(NODE, [ATTACKER, ...args]);
}

async function result(p: HostProcess, timeoutMs: number): Promise<Record<string, unknown>> {
  return JSON.parse(await p.waitForLine((t) => t.startsWith('{'), timeoutMs)) as Record<string, unknown>;
}

function fds(pid: number): number {
  return readdirSync(`/proc/${pid}/fd`).length;
}

interface Upstream {
  url: string;
  healthy: boolean;
}

describe('discovery a LAN host cannot forge (issue #22)', { concurrency: false }, () => {
  test('forged byes, a redirect, replays and a fake second boot from another host: every request still succeeds', {
    timeout: 120_000,
  }, async (t) => {
    const l = await lan(3);
    const [h1, h2, h3] = l.hosts as [Host, Host, Host];
    await emulator(h1);
    await node(h1);
    await node(h2);
    await until(
      'the client to see the server',
      () => client(h2, 'status'),
      (s) => s.upstreams?.length === 1,
    );
    const forging = attacker(h3, 'forge', h1.addr, h2.addr, '12');
    await forging.waitForLine((x) => x === 'attacking', 15_000);
    let ok = 0;
    let failed = 0;
    const errors = new Set<string>();
    // Requests back to back for as long as the attack runs (each batch is one ollama-js process).
    for (let batch = 0; batch < 40 && forging.lines.every((x) => !x.text.startsWith('{')); batch++) {
      const r = (await client(h2, 'generate', '6')) as { ok: number; failed: number; errors: string[] };
      ok += r.ok;
      failed += r.failed;
      for (const e of r.errors) errors.add(e);
    }
    const out = await result(forging, 20_000);
    t.diagnostic(
      `attacker: ${JSON.stringify(out)}; requests through the client during the attack: ${ok} ok, ${failed} failed`,
    );
    assert.ok(Number(out.sent) >= 100, JSON.stringify(out));
    assert.ok(ok >= 30, `${ok} requests made`);
    assert.equal(failed, 0, [...errors].join('; '));
    const st = await client(h2, 'status');
    assert.deepEqual(
      st.upstreams.map((u: Upstream) => u.url),
      [`https://${h1.addr}:11435`],
      'neither moved nor dropped',
    );
    assert.deepEqual(st.cluster.conflicts, [], 'no duplicate-id conflict from a host without the key');
    const d = st.discovery.stats.dropped;
    t.diagnostic(`client discovery drops: ${JSON.stringify(d)}`);
    assert.ok(d.forged >= 100, `forged: ${d.forged}`);
  });

  test('a flood of made-up servers from 200 addresses: peers, routes, memory, fds, log and re-announces stay bounded', {
    timeout: 180_000,
  }, async (t) => {
    const l = await lan(3);
    const [h1, h2, h3] = l.hosts as [Host, Host, Host];
    const prefix = h3.addr.split('.').slice(0, 3).join('.');
    for (let a = 50; a < 250; a++) {
      const r = await h3.exec('ip', ['addr', 'add', `${prefix}.${a}/24`, 'dev', 'eth0']);
      assert.equal(r.code, 0, r.stderr);
    }
    await emulator(h1);
    const server = await node(h1);
    const cl = await node(h2);
    await until(
      'the client to see the server',
      () => client(h2, 'status'),
      (s) => s.upstreams?.length === 1,
    );
    const sBefore = await client(h1, 'status', '11435', server.home);
    const before = await client(h2, 'status');
    const fdsBefore = fds(cl.proc.pid!);
    const linesBefore = { client: cl.proc.lines.length, server: server.proc.lines.length };
    const started = Date.now();
    // 10 000 announcements to the LAN's broadcast address (server and client both get them): half from
    // 600 made-up servers, each signed with its own key, half that cannot verify.
    const flood = attacker(h3, 'flood', l.broadcast, '600', '50', '249', '10000');
    const out = await result(flood, 150_000);
    const floodS = (Date.now() - started) / 1000;
    const during = await client(h2, 'status');
    const fdsDuring = fds(cl.proc.pid!);
    assert.deepEqual(await client(h2, 'generate', '5'), { ok: 5, failed: 0, errors: [] }, 'the client still serves');
    const sAfter = await client(h1, 'status', '11435', server.home);
    const grew = {
      clientRssMB: Math.round((during.memory.rssBytes - before.memory.rssBytes) / 1e6),
      clientFds: fdsDuring - fdsBefore,
      clientLogLines: cl.proc.lines.length - linesBefore.client,
      serverLogLines: server.proc.lines.length - linesBefore.server,
      serverDatagramsSent: sAfter.discovery.stats.sent - sBefore.discovery.stats.sent,
    };
    t.diagnostic(
      `flood ${JSON.stringify(out)} over ${floodS.toFixed(1)} s; client peers ${during.peers.length}, ` +
        `upstreams ${during.upstreams.length}; growth ${JSON.stringify(grew)}; client drops ${JSON.stringify(during.discovery.stats.dropped)}`,
    );
    const msgs = new Map<string, number>();
    for (const x of cl.proc.lines.slice(linesBefore.client)) {
      const m = /"msg":"([^"]{0,40})/.exec(x.text)?.[1] ?? x.text.slice(0, 40);
      msgs.set(m, (msgs.get(m) ?? 0) + 1);
    }
    t.diagnostic(`client log lines by message: ${JSON.stringify([...msgs])}`);
    assert.ok(during.discovery.stats.peers <= 256, `peers ${during.discovery.stats.peers}`);
    assert.ok(during.upstreams.length <= 33, `upstreams ${during.upstreams.length}`);
    assert.ok(
      !during.upstreams.some((u: Upstream) => /127\.0\.0\.1|localhost|\.255:/.test(u.url)),
      JSON.stringify(during.upstreams),
    );
    assert.ok(grew.clientRssMB < 80, `client RSS grew ${grew.clientRssMB} MB`);
    assert.ok(grew.clientFds < 200, `client fds grew ${grew.clientFds}`);
    // Connections to the made-up servers' addresses: a model list fetch and one connection ahead per
    // proxy worker for each of at most 32 servers, fetches paced to one per 2 s per server.
    assert.ok(
      Number(out.connections) <= 32 * 2 * (floodS / 2 + 2),
      `${String(out.connections)} connections to the attacker in ${floodS.toFixed(1)} s`,
    );
    assert.ok(
      grew.clientLogLines < 150 && grew.serverLogLines < 150,
      `log lines: ${grew.clientLogLines} client, ${grew.serverLogLines} server`,
    );
    // The server's own announces: 3 copies a heartbeat, one extra announce an interval at most.
    assert.ok(
      grew.serverDatagramsSent <= 3 * 2 * (floodS + 5),
      `server sent ${grew.serverDatagramsSent} datagrams in ${floodS.toFixed(1)} s`,
    );
    // Once the flood stops, the made-up nodes time out and the table is back to the real server.
    const settled = await until(
      'the made-up peers to time out',
      () => client(h2, 'status'),
      (s) => s.discovery.stats.peers <= 1 && s.upstreams.length === 1,
      15_000,
    );
    t.diagnostic(
      `after the flood: peers ${settled.value.discovery.stats.peers}, RSS ${Math.round(settled.value.memory.rssBytes / 1e6)} MB ` +
        `(before ${Math.round(before.memory.rssBytes / 1e6)} MB)`,
    );
    assert.equal(settled.value.upstreams[0].url, `https://${h1.addr}:11435`);
  });

  test('a graceful server stop: a 10 s stream through a client node runs to its end while the server drains', {
    timeout: 120_000,
  }, async (t) => {
    const l = await lan(2);
    const [h1, h2] = l.hosts as [Host, Host];
    await emulator(h1);
    const server = await node(h1);
    await node(h2);
    await until(
      'the client to see the server',
      () => client(h2, 'status'),
      (s) => s.upstreams?.length === 1,
    );
    const streamer = h2.spawn(NODE, [CLIENT, 'stream', '500', '20']); // 10 s of tokens
    await streamer.waitForLine((x) => x === 'started', 10_000);
    const stopAt = Date.now();
    server.proc.kill('SIGTERM');
    // The client stops sending it new requests (503: no other server), but keeps the running stream.
    const draining = await until(
      'the client to see the server draining',
      () => client(h2, 'status'),
      (s) => s.upstreams.length === 1 && s.upstreams[0].healthy === false,
      5_000,
    );
    t.diagnostic(`draining seen ${Math.round(draining.ms)} ms after SIGTERM`);
    const fresh = (await client(h2, 'generate', '1')) as { ok: number; failed: number; errors: string[] };
    assert.equal(fresh.failed, 1, 'a new request is not sent to a draining server');
    const line = await streamer.waitForLine((x) => x.startsWith('{'), 30_000);
    const r = JSON.parse(line) as { parts: number; done: boolean; error: string | null; ms: number };
    t.diagnostic(`stream: ${JSON.stringify(r)}; ended ${Date.now() - stopAt} ms after SIGTERM`);
    assert.deepEqual({ done: r.done, error: r.error }, { done: true, error: null });
    assert.ok(r.parts >= 500, `${r.parts} parts`);
    const exit = await server.proc.exited;
    assert.equal(exit.code, 0);
    await until(
      'the client to drop the server after its bye',
      () => client(h2, 'status'),
      (s) => s.upstreams.length === 0,
      5_000,
    );
  });
});
