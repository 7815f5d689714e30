/**
 * Issue #14's red-team list against a server node (fast front and relay, plain HTTP on loopback):
 * clients that read a long stream slowly or never, thousands of idle connections, streams aborted
 * in a loop. Each is measured from /proc (RSS, open descriptors) and from /proc/net/tcp (the node's
 * connections to Ollama); assertions are on counts returning to their baseline, not on time.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { openFileLimit, rssMiB } from '../helpers/hostile-client.ts';
import { raw } from '../helpers/http.ts';
import { freePort, removeHome, type Started, startServerNode } from '../helpers/ollana-process.ts';

let emu: Emulator;
let node: Started;

const fds = (pid: number): number => readdirSync(`/proc/${pid}/fd`).length;

/** Established TCP connections to the emulator's port, from /proc/net/tcp: the node's upstream sockets. */
function upstreamSockets(): number {
  const hexPort = `:${emu.port.toString(16).toUpperCase().padStart(4, '0')}`;
  let n = 0;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // The emulator's end of each connection: local address on its port, state 01 (ESTABLISHED).
    if (f.length > 3 && f[1]!.endsWith(hexPort) && f[3] === '01') n += 1;
  }
  return n;
}

/** Polls `probe` until `ok`, at most `ms`; returns the last value seen. */
async function settle<T>(probe: () => T, ok: (v: T) => boolean, ms: number): Promise<T> {
  const deadline = performance.now() + ms;
  let v = probe();
  while (!ok(v) && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
    v = probe();
  }
  return v;
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

before(async () => {
  emu = await startEmulator({ tokens: 100_000, tokenIntervalMs: 5, ttftMs: 1 });
  node = await startServerNode(emu.url, { workers: 2, args: ['--max-connections', '6000'] });
  assert.equal((await raw(`${node.url}/api/tags`)).status, 200);
});

after(async () => {
  await node?.stop();
  if (node) removeHome(node.home);
  await emu?.close();
});

describe('red team (issue #14)', { concurrency: false }, () => {
  test('a client that never reads a 1 GiB download: the node holds a bounded amount, and lets go when it leaves', async (t) => {
    const pid = node.proc.pid!;
    const baseline = { rss: rssMiB(pid), fds: fds(pid) };
    const s = await open(node.port);
    // A small receive buffer, never read: only backpressure keeps the node from holding the GiB.
    s.pause();
    s.write(`GET /emulator/bytes?n=${1024 ** 3} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
    // Wait until the node has what it will hold: its RSS stops growing (bounded polls).
    let last = 0;
    let peak = 0;
    for (let i = 0; i < 30; i++) {
      await new Promise((r) => setTimeout(r, 200));
      const now = rssMiB(pid);
      peak = Math.max(peak, now);
      if (i > 5 && Math.abs(now - last) < 1) break;
      last = now;
    }
    s.destroy();
    const after = await settle(
      () => ({ fds: fds(pid), up: upstreamSockets() }),
      (v) => v.fds <= baseline.fds + 2,
      10_000,
    );
    const report = `RSS ${baseline.rss.toFixed(0)} -> peak ${peak.toFixed(0)} MiB while the client read nothing; fds ${baseline.fds} -> ${after.fds} after it left`;
    t.diagnostic(report);
    assert.ok(peak - baseline.rss < 100, `bounded: ${report}`);
    assert.ok(after.fds <= baseline.fds + 2, `descriptors back: ${report}`);
  });

  test('300 streams aborted after their first token, in a loop: descriptors and upstream sockets return to the baseline, RSS does not grow', {
    timeout: 120_000,
  }, async (t) => {
    const ROUNDS = 300;
    const pid = node.proc.pid!;
    // A first round warms the paths (and the upstream pool) before the baseline is taken.
    const one = async (i: number): Promise<void> => {
      const s = await open(node.port);
      const body = JSON.stringify({ model: 'llama3.2', prompt: `abort ${i}` });
      s.write(
        `POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
      await new Promise<void>((resolve) => {
        let got = '';
        s.on('data', (c: Buffer) => {
          got += c.toString('latin1');
          if (got.includes('"response"')) resolve();
        });
        s.once('close', () => resolve());
      });
      s.destroy();
    };
    for (let i = 0; i < 20; i++) await one(i);
    await settle(
      () => upstreamSockets(),
      (n) => n === 0,
      10_000,
    );
    const baseline = { rss: rssMiB(pid), fds: fds(pid), up: upstreamSockets() };
    const generated = (): number => emu.requests.filter((r) => r.url === '/api/generate').length;
    const aborted = generated();
    for (let i = 0; i < ROUNDS; i++) await one(i);
    const after = await settle(
      () => ({ fds: fds(pid), up: upstreamSockets() }),
      (v) => v.fds <= baseline.fds + 2 && v.up <= baseline.up,
      10_000,
    );
    const rss = rssMiB(pid);
    const report =
      `${ROUNDS} aborted streams: fds ${baseline.fds} -> ${after.fds}, upstream sockets ${baseline.up} -> ${after.up}, ` +
      `RSS ${baseline.rss.toFixed(0)} -> ${rss.toFixed(0)} MiB; ${generated() - aborted} reached Ollama`;
    t.diagnostic(report);
    assert.equal(generated() - aborted, ROUNDS);
    assert.ok(after.fds <= baseline.fds + 2, `descriptors back: ${report}`);
    assert.ok(
      after.up <= baseline.up,
      `no upstream socket left behind (each abort closes its connection, so Ollama stops): ${report}`,
    );
    assert.ok(rss - baseline.rss < 40, `RSS does not grow with the rounds: ${report}`);
  });
  test('5,000 idle connections: descriptors and memory bounded while open, back to the baseline when they close', {
    timeout: 120_000,
  }, async (t) => {
    const COUNT = Math.min(5_000, openFileLimit() - 2_000);
    const pid = node.proc.pid!;
    const baseline = { rss: rssMiB(pid), fds: fds(pid), up: upstreamSockets() };
    const sockets: Socket[] = [];
    try {
      // Each asks once and then stays idle on its kept-alive connection (silent ones are closed once
      // they exceed the handshake budget: tls-port-limits.test.ts).
      const idle = async (): Promise<Socket> => {
        const s = await open(node.port);
        s.write('GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
        await new Promise<void>((resolve, reject) => {
          let got = '';
          s.on('data', (c: Buffer) => {
            got += c.toString('latin1');
            if (/\r\n\r\n\{.*\}$/s.test(got)) resolve();
          });
          s.once('close', () => reject(new Error(`closed before its answer: ${got.slice(0, 100)}`)));
        });
        return s;
      };
      for (let i = 0; i < COUNT; i += 250)
        sockets.push(...(await Promise.all(Array.from({ length: Math.min(250, COUNT - i) }, idle))));
      const held = await settle(
        () => fds(pid),
        (n) => n >= baseline.fds + COUNT,
        10_000,
      );
      // The requests also opened kept connections to Ollama (at most --upstream-connections per worker).
      const pooled = upstreamSockets() - baseline.up;
      const during = rssMiB(pid);
      // Still serving meanwhile.
      assert.equal((await raw(`${node.url}/api/tags`)).status, 200);
      for (const s of sockets) s.destroy();
      const left = await settle(
        () => fds(pid),
        (n) => n <= baseline.fds + pooled + 2,
        15_000,
      );
      const after = rssMiB(pid);
      const report =
        `${COUNT} idle connections: fds ${baseline.fds} -> ${held} -> ${left} after they closed (${pooled} of them kept upstream connections); RSS ${baseline.rss.toFixed(0)} -> ` +
        `${during.toFixed(0)} -> ${after.toFixed(0)} MiB (${(((during - baseline.rss) * 1024) / COUNT).toFixed(1)} KiB per connection)`;
      t.diagnostic(report);
      assert.ok(held - baseline.fds <= COUNT + pooled + 10, `one descriptor per connection: ${report}`);
      assert.ok(during - baseline.rss < 150, `memory bounded: ${report}`);
      assert.ok(left <= baseline.fds + pooled + 2, `descriptors back to the baseline: ${report}`);
    } finally {
      for (const s of sockets) s.destroy();
    }
  });
});

test('in one proxy thread: 200 streams aborted in a loop leave no timer, socket or handle behind', {
  timeout: 120_000,
}, async (t) => {
  // The server node's proxy in this thread, so its timers and handles are this process's to count.
  // getActiveResourcesInfo lists what keeps the loop alive: ref'd timers and every socket and server.
  // The proxy's own sweeps are unref'd and made once per server, not per request.
  const { ProxyServer } = await import('../../src/proxy/proxy-server.ts');
  const { pino } = await import('pino');
  const port = await freePort();
  const server = new ProxyServer(
    {
      worker: 0,
      host: '127.0.0.1',
      port,
      origins: [],
      connectTimeoutMs: 5_000,
      headersTimeoutMs: 0,
      bodyTimeoutMs: 0,
      upstreamConnections: 16,
      upstreamKeepAliveMs: 60_000,
      requestHeadersTimeoutMs: 10_000,
      keepAliveTimeoutMs: 65_000,
      requestBodyTimeoutMs: 30_000,
      maxConnections: 0,
      debugHooks: false,
      tls: null,
      listenTls: false,
      trust: { trustLan: false, allowed: [], disabled: [] },
    },
    pino({ level: 'silent' }),
    {
      status: () => Promise.reject(new Error('no status in this test')),
      metrics: () => Promise.reject(new Error('no metrics in this test')),
      crash: () => undefined,
      refused: () => undefined,
      refusedBy: () => undefined,
    },
  );
  server.setRoutes({
    version: 1,
    role: 'server',
    upstreams: [
      { id: 'local', url: emu.url, device: '', basePath: '', healthy: true, models: [], leader: true, load: 0 },
    ],
  });
  await server.listen();
  try {
    const one = async (i: number): Promise<void> => {
      const s = await open(port);
      const body = JSON.stringify({ model: 'llama3.2', prompt: `thread abort ${i}` });
      s.write(
        `POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
      );
      await new Promise<void>((resolve) => {
        let got = '';
        s.on('data', (c: Buffer) => {
          got += c.toString('latin1');
          if (got.includes('"response"')) resolve();
        });
        s.once('close', () => resolve());
      });
      s.destroy();
    };
    const resources = (): Record<string, number> => {
      const out: Record<string, number> = {};
      for (const r of process.getActiveResourcesInfo()) out[r] = (out[r] ?? 0) + 1;
      return out;
    };
    for (let i = 0; i < 10; i++) await one(i);
    const quiet = (): boolean => server.snapshot().inFlight === 0 && upstreamSockets() === 0;
    await settle(quiet, (ok) => ok, 10_000);
    const before = resources();
    for (let i = 0; i < 200; i++) await one(i);
    await settle(quiet, (ok) => ok, 10_000);
    const after = await settle(
      resources,
      (r) => (r.Timeout ?? 0) <= (before.Timeout ?? 0) && (r.TCPSocketWrap ?? 0) <= (before.TCPSocketWrap ?? 0),
      10_000,
    );
    t.diagnostic(
      `active resources before ${JSON.stringify(before)}, after 200 aborted streams ${JSON.stringify(after)}; in flight ${server.snapshot().inFlight}`,
    );
    assert.equal(server.snapshot().inFlight, 0);
    assert.ok((after.Timeout ?? 0) <= (before.Timeout ?? 0), 'no timer left behind');
    assert.ok((after.TCPSocketWrap ?? 0) <= (before.TCPSocketWrap ?? 0), 'no socket left behind');
  } finally {
    await server.drain(1_000);
  }
});
