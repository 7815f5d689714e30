/**
 * The codes an upstream failure is logged and branched on are ollana's own (OLN_UPSTREAM_*), the same
 * on both ways of forwarding: the relay (a server node to its local Ollama, no undici in it) and the
 * undici pools (a client node to its server nodes), whose undici codes are mapped where they arrive.
 * One proxy in this thread, against scripted upstreams on loopback that misbehave on cue.
 */
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { pino } from 'pino';
import { ProxyServer, type ProxySettings } from '../../src/proxy/proxy-server.ts';
import type { RouteTable } from '../../src/protocol/messages.ts';
import { freePort } from '../helpers/ollana-process.ts';
import { raw } from '../helpers/http.ts';

/** What the scripted upstream does with each request it reads. */
let script: (socket: Socket) => void = () => undefined;
let upstream: Server;
let upstreamUrl = '';
const held = new Set<Socket>();

before(async () => {
  upstream = createServer((socket) => {
    held.add(socket);
    socket.on('close', () => held.delete(socket));
    socket.on('error', () => undefined);
    socket.once('data', () => script(socket));
  });
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  const addr = upstream.address();
  if (addr === null || typeof addr === 'string') throw new Error('no upstream port');
  upstreamUrl = `http://127.0.0.1:${addr.port}`;
});

after(async () => {
  for (const s of held) s.destroy();
  await new Promise<void>((resolve) => upstream.close(() => resolve()));
});

interface Logged {
  readonly msg: string;
  readonly code?: string;
}

/** A proxy in this thread for `role`, its warnings collected; stopped by the returned function. */
async function proxy(role: RouteTable['role']): Promise<{ url: string; logged: Logged[]; stop: () => Promise<void> }> {
  const logged: Logged[] = [];
  const log = pino(
    { level: 'warn' },
    {
      write: (line: string) => {
        logged.push(JSON.parse(line) as Logged);
      },
    },
  );
  const port = await freePort();
  const settings: ProxySettings = {
    worker: 0,
    host: '127.0.0.1',
    port,
    origins: [],
    connectTimeoutMs: 2_000,
    headersTimeoutMs: 300,
    bodyTimeoutMs: 300,
    upstreamConnections: 4,
    upstreamKeepAliveMs: 10_000,
    requestHeadersTimeoutMs: 10_000,
    keepAliveTimeoutMs: 5_000,
    requestBodyTimeoutMs: 10_000,
    maxConnections: 0,
    debugHooks: false,
    tls: null,
    listenTls: false,
    trust: { trustLan: false, allowed: [], disabled: [] },
  };
  const server = new ProxyServer(settings, log, {
    status: () => Promise.reject(new Error('no status in this test')),
    metrics: () => Promise.reject(new Error('no metrics in this test')),
    crash: () => undefined,
    refused: () => undefined,
    refusedBy: () => undefined,
  });
  server.setRoutes({
    version: 1,
    role,
    upstreams: [
      { id: 'local', url: upstreamUrl, device: '', basePath: '', healthy: true, models: [], leader: true, load: 0 },
    ],
  });
  await server.listen();
  return {
    url: `http://127.0.0.1:${port}`,
    logged,
    stop: async () => {
      await server.drain(500);
    },
  };
}

/** The code of the first warning logged as `msg`, waiting for it (bounded). */
async function codeLogged(logged: Logged[], msg: string): Promise<string | undefined> {
  for (let i = 0; i < 200; i++) {
    const hit = logged.find((l) => l.msg === msg);
    if (hit !== undefined) return hit.code;
    await new Promise((resolve) => setImmediate(resolve));
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return undefined;
}

/** Sends one request and settles when it is answered or cut, whichever comes. */
async function send(url: string): Promise<number> {
  try {
    return (
      await raw(`${url}/api/generate`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"model":"m"}',
      })
    ).status;
  } catch {
    return 0;
  }
}

for (const role of ['server', 'client'] as const) {
  const way = role === 'server' ? 'the relay' : 'undici';
  test(`${way}: no response headers in time is 504, logged as OLN_UPSTREAM_HEADERS_TIMEOUT`, async () => {
    script = () => undefined;
    const p = await proxy(role);
    try {
      assert.equal(await send(p.url), 504);
      assert.equal(await codeLogged(p.logged, 'upstream failed before responding'), 'OLN_UPSTREAM_HEADERS_TIMEOUT');
    } finally {
      await p.stop();
    }
  });

  test(`${way}: a response body that stalls is cut, logged as OLN_UPSTREAM_BODY_TIMEOUT`, async () => {
    script = (socket) =>
      socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"a"');
    const p = await proxy(role);
    try {
      await send(p.url);
      assert.equal(await codeLogged(p.logged, 'upstream broke off a response'), 'OLN_UPSTREAM_BODY_TIMEOUT');
    } finally {
      await p.stop();
    }
  });
}

test('the relay: an upstream that closes mid-head is 502, logged as OLN_UPSTREAM_CLOSED', async () => {
  script = (socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-');
  const p = await proxy('server');
  try {
    assert.equal(await send(p.url), 502);
    assert.equal(await codeLogged(p.logged, 'upstream failed before responding'), 'OLN_UPSTREAM_CLOSED');
  } finally {
    await p.stop();
  }
});
