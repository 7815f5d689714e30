/**
 * A pinned connector (src/net/tls.ts) runs only a few TLS handshakes at once: the rest of a cold burst
 * of new connections waits its turn instead of sharing the CPU with all the others, and its connect
 * timeout starts when its own handshake does, so waiting is no failure. A server that never answers
 * still fails every connect, waiting ones included, in about the timeout. Real TLS on loopback, with a
 * server whose handshakes start only when the test lets them.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { X509Certificate, randomBytes } from 'node:crypto';
import {
  connect as netConnect,
  createServer as createNetServer,
  type AddressInfo,
  type Server,
  type Socket,
} from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { after, before, test } from 'node:test';
import { deviceIdFromDer } from '../../src/identity/device-id.ts';
import { createSelfSigned } from '../../src/identity/self-signed.ts';
import {
  HANDSHAKES_IN_FLIGHT,
  pinnedConnector,
  tlsServerOptions,
  type PinnedConnector,
  type TlsIdentity,
} from '../../src/net/tls.ts';

/** Where settle() connects from: told apart from the connector's connections by address alone. */
const SENTINEL_ADDR = '127.0.0.2';

/**
 * Accepts TCP connections without reading them and holds them; release() hands the held ones to a
 * real TLS server, which then does its part of their handshakes.
 */
class GatedTlsServer {
  readonly held: Socket[] = [];
  readonly #all: Socket[] = [];
  readonly #tcp: Server;
  readonly #tls;
  #sentinelArrived: (() => void) | null = null;

  constructor(server: TlsIdentity) {
    this.#tls = createTlsServer(
      tlsServerOptions({ ...server, ticketKeys: randomBytes(48).toString('base64') }),
      (s: TLSSocket) => {
        s.on('error', () => undefined);
        this.#all.push(s);
      },
    );
    this.#tcp = createNetServer({ pauseOnConnect: true }, (socket) => {
      socket.on('error', () => undefined);
      this.#all.push(socket);
      if (socket.remoteAddress === SENTINEL_ADDR) {
        socket.destroy();
        this.#sentinelArrived?.();
        return;
      }
      this.held.push(socket);
    });
  }

  async listen(): Promise<string> {
    this.#tcp.listen(0, '127.0.0.1');
    await once(this.#tcp, 'listening');
    return String((this.#tcp.address() as AddressInfo).port);
  }

  /**
   * Resolves once every connection opened before this call has been accepted: the kernel queues
   * accepted connections in order, so when a connection opened now arrives, all earlier ones have.
   */
  async settle(port: string): Promise<void> {
    const arrived = new Promise<void>((resolve) => {
      this.#sentinelArrived = resolve;
    });
    const s = netConnect({ host: '127.0.0.1', port: Number(port), localAddress: SENTINEL_ADDR });
    s.on('error', () => undefined);
    await arrived;
    s.destroy();
  }

  /** Lets the held connections' handshakes go ahead. */
  release(): number {
    const n = this.held.length;
    for (const s of this.held.splice(0)) this.#tls.emit('connection', s);
    return n;
  }

  close(): void {
    this.#tcp.close();
    for (const s of this.#all) s.destroy();
  }
}

let serverIdentity: TlsIdentity;
let client: TlsIdentity;
const servers: GatedTlsServer[] = [];

before(async () => {
  const [s, c] = await Promise.all([createSelfSigned('ollana server', 1), createSelfSigned('ollana client', 1)]);
  serverIdentity = { id: deviceIdFromDer(new X509Certificate(s.certPem).raw), certPem: s.certPem, keyPem: s.keyPem };
  client = { id: deviceIdFromDer(new X509Certificate(c.certPem).raw), certPem: c.certPem, keyPem: c.keyPem };
});

after(() => {
  for (const s of servers) s.close();
});

async function gated(): Promise<{ server: GatedTlsServer; port: string }> {
  const server = new GatedTlsServer(serverIdentity);
  servers.push(server);
  return { server, port: await server.listen() };
}

interface Outcome {
  err: (Error & { code?: string }) | null;
  socket: TLSSocket | null;
  at: number;
}

/** Starts `n` connects through `connector` in one go (as a burst of requests makes undici do). */
function burst(connector: PinnedConnector, port: string, n: number): { outcomes: Outcome[]; all: Promise<Outcome[]> } {
  const outcomes: Outcome[] = [];
  const all = Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Outcome>((resolve) => {
          connector({ hostname: '127.0.0.1', port, protocol: 'https:' }, (err, socket) => {
            const o = { err, socket: socket as TLSSocket | null, at: performance.now() };
            outcomes.push(o);
            resolve(o);
          });
        }),
    ),
  );
  return { outcomes, all };
}

async function until(what: string, ok: () => boolean, timeoutMs = 10_000): Promise<void> {
  const start = performance.now();
  while (!ok()) {
    if (performance.now() - start > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

test(`a burst of connects runs at most ${HANDSHAKES_IN_FLIGHT} handshakes at once, and waiting its turn is no timeout`, {
  timeout: 60_000,
}, async () => {
  const { server, port } = await gated();
  const timeoutMs = 2_000;
  // Each round's handshakes are held this long, so the last round waits 3 x 800 ms, longer than the
  // connect timeout, before its own handshakes start.
  const holdMs = 800;
  const n = 3 * HANDSHAKES_IN_FLIGHT + 1;
  const connector = pinnedConnector({ self: client, expectedId: serverIdentity.id, timeoutMs });
  const { outcomes, all } = burst(connector, port, n);
  let started = 0;
  for (let round = 1; started < n; round++) {
    await server.settle(port);
    const expected = Math.min(HANDSHAKES_IN_FLIGHT, n - started);
    assert.equal(
      server.held.length,
      expected,
      `round ${round}: connections opened while ${started} of ${n} handshakes are done`,
    );
    started += expected;
    await new Promise((r) => setTimeout(r, holdMs));
    server.release();
    await until(`round ${round}'s handshakes to complete`, () => outcomes.length >= started);
    assert.deepEqual(
      outcomes.filter((o) => o.err !== null).map((o) => o.err!.message),
      [],
      `round ${round}: no connect failed`,
    );
  }
  const done = await all;
  assert.equal(done.length, n);
  for (const o of done) {
    assert.equal(o.err, null);
    assert.equal(o.socket!.encrypted, true);
    o.socket!.destroy();
  }
});

test('a server that never answers: every connect of a burst fails in about the timeout, waiting ones included', {
  timeout: 60_000,
}, async () => {
  const { server, port } = await gated();
  const timeoutMs = 1_500;
  const n = 4 * HANDSHAKES_IN_FLIGHT;
  const connector = pinnedConnector({ self: client, expectedId: serverIdentity.id, timeoutMs });
  const t0 = performance.now();
  const done = await burst(connector, port, n).all;
  const elapsed = performance.now() - t0;
  assert.equal(
    done.filter((o) => o.err?.code === 'OLN_UPSTREAM_CONNECT_TIMEOUT').length,
    n,
    done.map((o) => o.err?.message ?? 'connected').join('\n'),
  );
  // Taking turns, the last of four rounds would fail after four timeouts.
  assert.ok(
    elapsed < 2 * timeoutMs,
    `all ${n} failed after ${elapsed.toFixed(0)} ms (connect timeout ${timeoutMs} ms)`,
  );
  const waited = done.filter((o) => /waiting its turn/.test(o.err!.message));
  assert.equal(waited.length, n - HANDSHAKES_IN_FLIGHT, 'the connects that never started say they were waiting');
  assert.match(
    waited[0]!.err!.message,
    new RegExp(`127\\.0\\.0\\.1:${port} completed no TLS handshake in ${timeoutMs} ms`),
  );
  assert.equal(server.held.length, HANDSHAKES_IN_FLIGHT, 'only the first turn ever connected');
});
