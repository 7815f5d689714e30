/**
 * The load a server node announces is the proxy workers' in-flight requests, which the workers keep
 * in memory shared with the supervisor (no message per heartbeat). Real worker threads, real streams
 * through them to the emulator on loopback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { ProxyPool } from '../../src/actors/proxy-pool.ts';
import type { RouteTable } from '../../src/protocol/messages.ts';
import { startEmulator } from '../../testkit/ollama-emulator.ts';

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

/** Polls `probe` every 20 ms until it holds; fails after `ms` naming what never happened. */
async function until(probe: () => boolean, ms: number, what: string): Promise<void> {
  const deadline = Date.now() + ms;
  while (!probe()) {
    if (Date.now() > deadline) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test('ProxyPool.inFlight counts the requests in flight across workers, and drops to 0 when they end', {
  timeout: 60_000,
}, async (t) => {
  const emu = await startEmulator({ ttftMs: 0, tokenIntervalMs: 20, tokens: 1000 });
  t.after(() => emu.close());
  const dir = mkdtempSync(join(tmpdir(), 'ollana-pool-load-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const port = await freePort();
  const table: RouteTable = {
    version: 1,
    role: 'server',
    upstreams: [
      { id: 'local', url: emu.url, device: '', basePath: '', healthy: true, models: [], leader: true, load: 0 },
    ],
  };
  const pool = new ProxyPool(
    2,
    {
      log: { level: 'warn', file: join(dir, 'proxy.log'), pretty: false },
      proxy: {
        host: '127.0.0.1',
        port,
        origins: [],
        connectTimeoutMs: 5_000,
        headersTimeoutMs: 0,
        bodyTimeoutMs: 0,
        upstreamConnections: 16,
        upstreamKeepAliveMs: 60_000,
        debugHooks: false,
        requestHeadersTimeoutMs: 10_000,
        keepAliveTimeoutMs: 65_000,
        requestBodyTimeoutMs: 30_000,
        maxConnections: 0,
        tls: null,
        listenTls: false,
        trust: { trustLan: false, allowed: [], disabled: [] },
      },
    },
    table,
    pino({ level: 'silent' }),
  );
  t.after(() => pool.stop(1_000));
  await pool.start();
  assert.equal(pool.inFlight(), 0);

  // Several streams, each on its own connection, so the kernel spreads them over both workers.
  const streams = Array.from({ length: 6 }, () => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path: '/api/generate', agent: false });
    req.on('error', () => undefined);
    req.end(JSON.stringify({ model: 'llama3.2', prompt: 'long' }));
    return req;
  });
  await until(() => pool.inFlight() === 6, 20_000, '6 requests in flight');
  const perWorker = (await pool.stats()).map((w) => ('inFlight' in w ? w.inFlight : 0));
  assert.equal(
    perWorker.reduce((a, b) => a + b, 0),
    6,
    `workers report ${perWorker.join(' + ')}`,
  );

  for (const req of streams.slice(0, 4)) req.destroy();
  await until(() => pool.inFlight() === 2, 10_000, '2 requests left in flight after 4 clients left');
  for (const req of streams) req.destroy();
  await until(() => pool.inFlight() === 0, 10_000, 'no request in flight');
});
