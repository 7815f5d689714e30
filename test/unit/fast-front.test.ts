/**
 * The fast front's clocks (src/proxy/fast/front.ts, connection.ts) on a fake clock: the header
 * timeout, the keep-alive idle timeout, and the longer allowance for an idle connection that sends
 * only empty lines. Real loopback sockets, the real connection guard, the relay to the Ollama
 * emulator; only time is the test's: nothing here waits for a timeout to pass.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server, type Socket, connect } from 'node:net';
import { test } from 'node:test';
import { pino } from 'pino';
import { FastFront } from '../../src/proxy/fast/front.ts';
import { ConnectionGuard } from '../../src/proxy/listen/connection-guard.ts';
import type { RelayOptions } from '../../src/proxy/relay/relay-contract.ts';
import { UpstreamSockets } from '../../src/proxy/relay/upstream-sockets.ts';
import { StatsCollector } from '../../src/proxy/stats.ts';
import { startEmulator } from '../../testkit/ollama-emulator.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { parseResponses } from '../helpers/hostile-client.ts';

const HEADERS_TIMEOUT_MS = 10_000;
const KEEP_ALIVE_MS = 5_000;
/** node:http's keepAliveTimeoutBuffer, which the front keeps too. */
const KEEP_ALIVE_BUFFER_MS = 1_000;
/** The front sweeps every quarter of the header timeout, at most once a second. */
const SWEEP_MS = 1_000;

/** Resolves once `cond` holds; fails after `ms` of real time (a bound, not a wait for a timeout). */
async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Client {
  readonly socket: Socket;
  /** What the server sent so far. */
  received(): Buffer;
  readonly closed: () => boolean;
}

async function startFront(t: import('node:test').TestContext) {
  const emu = await startEmulator({ ttftMs: 0, tokenIntervalMs: 0 });
  t.after(() => emu.close());
  const clock = new FakeClock();
  const log = pino({ level: 'silent' });
  const guard = new ConnectionGuard(
    {
      requestHeadersTimeoutMs: HEADERS_TIMEOUT_MS,
      keepAliveTimeoutMs: KEEP_ALIVE_MS,
      requestBodyTimeoutMs: 0,
      maxConnections: 0,
    },
    log,
    0,
  );
  const stats = new StatsCollector(0);
  const sockets = new UpstreamSockets({
    host: '127.0.0.1',
    port: emu.port,
    hostHeader: `127.0.0.1:${emu.port}`,
    max: 4,
    keepAliveMs: 60_000,
    connectTimeoutMs: 5_000,
  });
  const target: RelayOptions = {
    stats,
    log,
    sockets,
    basePath: '',
    upstream: `Ollama at ${emu.url}`,
    headersTimeoutMs: 0,
    bodyTimeoutMs: 0,
    extraHeaders: null,
    dropHeaders: null,
    onFinish: () => undefined,
    outOfFiles: guard.outOfFiles,
  };
  const front = new FastFront(
    {
      maxHeaderBytes: 64 * 1024,
      smallBody: 64 * 1024,
      headersTimeoutMs: HEADERS_TIMEOUT_MS,
      keepAliveTimeoutMs: KEEP_ALIVE_MS,
      requestBodyTimeoutMs: 0,
      hostCheck: false,
    },
    guard,
    stats,
    () => target,
    () => false,
    clock,
  );
  const accepted: Socket[] = [];
  const server: Server = createServer((socket) => {
    accepted.push(socket);
    front.adopt(socket, () => socket.destroy(new Error('handed to node:http: not expected here')));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    front.closeAll();
    front.stop();
    guard.close();
    sockets.destroy(new Error('test over'));
    server.close();
  });
  const port = (server.address() as { port: number }).port;

  async function client(): Promise<Client> {
    const socket = connect({ port, host: '127.0.0.1' });
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    const chunks: Buffer[] = [];
    let closed = false;
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.once('close', () => {
      closed = true;
    });
    t.after(() => socket.destroy());
    await until(() => accepted.length > 0 && front.size > 0, 'the front to adopt the connection');
    return { socket, received: () => Buffer.concat(chunks), closed: () => closed };
  }

  /** Bytes the server side has read from its one connection. */
  const serverRead = (): number => accepted.at(-1)?.bytesRead ?? 0;
  return { clock, front, client, serverRead };
}

test('header timeout: a head still incomplete is answered 408 once the fake clock passes it, not before', async (t) => {
  const { clock, front, client, serverRead } = await startFront(t);
  const c = await client();
  const partial = 'GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n';
  c.socket.write(partial);
  await until(() => serverRead() >= partial.length, 'the front to read the partial head');

  clock.advance(HEADERS_TIMEOUT_MS - SWEEP_MS);
  assert.equal(front.size, 1, 'the connection is still the front’s before the header timeout');
  assert.equal(c.received().length, 0);

  clock.advance(SWEEP_MS);
  await until(() => c.closed(), 'the connection to close after the header timeout');
  const { responses } = parseResponses(c.received());
  assert.equal(responses.length, 1);
  assert.equal(responses[0]?.status, 408);
  assert.equal(front.size, 0);
});

test('keep-alive: an idle connection after an answer is closed once the keep-alive timeout (+1 s) passed, not before', async (t) => {
  const { clock, front, client } = await startFront(t);
  const c = await client();
  c.socket.write('GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  await until(() => parseResponses(c.received()).responses.length === 1, 'the answer from the emulator');
  assert.equal(parseResponses(c.received()).responses[0]?.status, 200);
  const answered = c.received().length;

  clock.advance(KEEP_ALIVE_MS + KEEP_ALIVE_BUFFER_MS - SWEEP_MS);
  assert.equal(front.size, 1, 'the idle connection is kept before the keep-alive timeout');
  assert.equal(c.closed(), false);

  clock.advance(SWEEP_MS);
  await until(() => c.closed(), 'the idle connection to close');
  assert.equal(c.received().length, answered, 'an idle connection is closed without an answer');
  assert.equal(front.size, 0);
});

test('keep-alive: an idle connection that sends only empty lines gets the header timeout on top, then a 408', async (t) => {
  const { clock, front, client, serverRead } = await startFront(t);
  const c = await client();
  c.socket.write('GET /api/version HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
  await until(() => parseResponses(c.received()).responses.length === 1, 'the answer from the emulator');
  const read = serverRead();
  c.socket.write('\r\n\r\n');
  await until(() => serverRead() >= read + 4, 'the front to read the empty lines');

  clock.advance(KEEP_ALIVE_MS + KEEP_ALIVE_BUFFER_MS);
  assert.equal(front.size, 1, 'empty lines are allowed the header timeout beyond the keep-alive timeout');
  clock.advance(HEADERS_TIMEOUT_MS - SWEEP_MS);
  assert.equal(front.size, 1);
  assert.equal(c.closed(), false);

  clock.advance(SWEEP_MS);
  await until(() => c.closed(), 'the trickling connection to close');
  const { responses } = parseResponses(c.received());
  assert.deepEqual(
    responses.map((r) => r.status),
    [200, 408],
  );
});
