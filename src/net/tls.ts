/**
 * TLS between nodes, pinned to device ids (the SHA-256 of a node's self-signed certificate, as
 * Syncthing does it). No certificate authority is involved: each side completes the handshake without
 * chain checks and then compares the peer's certificate with the id it expects, before any HTTP byte
 * is read or written. The server port asks every client for a certificate; the client side pins the
 * id that discovery announced for that address.
 */
import { connect, createSecureContext, type SecureContext, type TLSSocket, type TlsOptions } from 'node:tls';
import type { buildConnector } from 'undici';
import { deviceIdFromDer } from '../identity/device-id.ts';
import { UpstreamError, type OllanaErrorCode, type UpstreamFailureCode } from '../errors.ts';

/** What a node needs to speak TLS as itself. */
export interface TlsIdentity {
  readonly id: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** The server side: one per process, shared by every proxy worker (same ticket keys, so a session
 * resumes whichever worker the kernel hands the next connection to). */
export interface TlsServerSettings extends TlsIdentity {
  /** 48 random bytes, base64, made once per process start */
  readonly ticketKeys: string;
}

/**
 * TLS handshakes this thread completed (as server or as client) and how many of them resumed a
 * session: shown per worker in /ollana/v1/status, so the bench can show that the handshake is paid
 * per connection, not per request, and that new connections resume.
 */
export const tlsCounts = { handshakes: 0, resumed: 0 };

/** Called once per completed handshake, on either side. */
export function countHandshake(socket: TLSSocket): void {
  tlsCounts.handshakes++;
  if (socket.isSessionReused()) tlsCounts.resumed++;
}

/**
 * Slow or stalled handshakes are cut after this long (a handshake takes milliseconds on a LAN, tens
 * of them on a busy machine); until then they count against the listener's handshake budget
 * (connection-guard.ts), where a flood of them closes its own oldest first.
 */
export const HANDSHAKE_TIMEOUT_MS = 5_000;

export function tlsServerOptions(s: TlsServerSettings): TlsOptions {
  return {
    cert: s.certPem,
    key: s.keyPem,
    // Ask for the client's certificate, but let the handshake finish without a CA: the fingerprint
    // check against the allow list comes right after it (listen/listener.ts), before any HTTP is read.
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.3',
    ALPNProtocols: ['http/1.1'],
    ticketKeys: Buffer.from(s.ticketKeys, 'base64'),
    handshakeTimeout: HANDSHAKE_TIMEOUT_MS,
  };
}

/**
 * The device id of the peer's certificate, or null when it sent none. Runs once per handshake on the
 * server (and per full handshake on the client): getPeerX509Certificate hands over the DER as it is,
 * where getPeerCertificate builds an object of every field first (several times the cost; figures in
 * bench/README.md, "Two hops (TLS)").
 */
export function peerDeviceId(socket: TLSSocket): string | null {
  const cert = socket.getPeerX509Certificate();
  return cert === undefined ? null : deviceIdFromDer(cert.raw);
}

/** The peer's certificate common name (e.g. "ollana lab-h1"), for log lines and the pending list. */
export function peerName(socket: TLSSocket): string {
  const cn = socket.getPeerCertificate()?.subject?.CN;
  const name = Array.isArray(cn) ? cn[0] : cn;
  return typeof name === 'string' ? name.replace(/^ollana /, '').slice(0, 64) : '';
}

/** The server we reached is not the device we meant to reach. */
export class PinMismatchError extends Error {
  readonly code = 'OLN_PIN_MISMATCH' satisfies OllanaErrorCode & UpstreamFailureCode;
  readonly expected: string;
  readonly actual: string | null;

  constructor(address: string, expected: string, actual: string | null) {
    super(
      `${address} presented ${actual === null ? 'no certificate' : `device ${actual}`}, not ${expected} as announced; ` +
        'nothing was sent to it (a forged announcement, or that server was given a new identity)',
    );
    this.expected = expected;
    this.actual = actual;
  }
}

export interface PinnedConnectorOptions {
  readonly self: TlsIdentity;
  /** the device id the server at this origin must present */
  readonly expectedId: string;
  readonly timeoutMs: number;
}

/**
 * TLS handshakes one connector (one server node, in one thread) runs at once; more connections wait
 * their turn. Handshakes started all together share the CPU, each takes about as long as the whole
 * burst, and on a busy machine some pass the connect timeout. A handshake is a few ms of client CPU
 * plus two round trips (TCP, then TLS 1.3): a few in flight keep the thread busy across a LAN's round
 * trips, more only make each one longer; 4 was the fastest cap measured (bench/README.md, where it names
 * HANDSHAKES_IN_FLIGHT).
 * Each proxy worker has its own connector per server node, so a client node with W workers runs at
 * most 4 W handshakes per server.
 */
export const HANDSHAKES_IN_FLIGHT = 4;

/** Client contexts of this thread, by certificate and key (a node has one identity; tests have a few). */
const clientContexts = new Map<string, SecureContext>();
const MAX_CLIENT_CONTEXTS = 8;

/**
 * The client side's SecureContext for `self`, made once per thread. Passing the PEM certificate and
 * key to every tls.connect makes OpenSSL parse both and build a new context per connection, which
 * costs each handshake about a millisecond of CPU more (bench/two-hop/handshakes.ts; bench/README.md,
 * "Two hops (TLS)"). Per-connection
 * settings (session, ALPN, no chain check) stay on tls.connect; the TLS version floor lives here.
 */
export function clientSecureContext(self: TlsIdentity): SecureContext {
  const key = `${self.certPem}\n${self.keyPem}`;
  let context = clientContexts.get(key);
  if (context === undefined) {
    context = createSecureContext({ cert: self.certPem, key: self.keyPem, minVersion: 'TLSv1.3' });
    if (clientContexts.size >= MAX_CLIENT_CONTEXTS) clientContexts.delete(clientContexts.keys().next().value!);
    clientContexts.set(key, context);
  }
  return context;
}

/** Where undici asks to connect, and how messages name it ("[fe80::1]:11435"). */
function target(hostname: string, portText: string): { host: string; port: number; address: string } {
  const host = hostname.replace(/^\[|\]$/g, '');
  const port = Number(portText) || 443;
  return { host, port, address: `${host.includes(':') ? `[${host}]` : host}:${port}` };
}

/** A connection waiting for its turn to handshake (see {@link HANDSHAKES_IN_FLIGHT}). */
interface Waiting {
  start(): void;
  fail(err: Error): void;
}

/** An undici connector (see {@link pinnedConnector}) that can also fetch a session ticket ahead of use. */
export interface PinnedConnector extends buildConnector.connector {
  /**
   * Opens one pinned connection to `origin` before any request needs one, keeps the session ticket
   * the server sends after the handshake, and closes the connection without writing a byte of HTTP:
   * the connections undici opens later resume instead of paying full handshakes, also when a burst
   * opens many at once. (undici cannot adopt a socket opened ahead, and a server node closes a
   * connection that sends no request within --request-headers-timeout, answering 408: keeping this
   * one open for the pool would race that answer.) Resolves with whether a ticket is held; rejects
   * when the connection or the pin fails, or `signal` aborts it (the socket is destroyed then).
   */
  warm(origin: string, signal?: AbortSignal): Promise<boolean>;
}

/**
 * An undici connector that speaks TLS with this node's certificate and hands undici the socket only
 * when the server presents `expectedId`. Keeps the last TLS session ticket (strongly, unlike undici's
 * own cache, which holds sessions weakly) so that new connections resume instead of paying a full
 * handshake. Every connection of every connector of this thread shares one SecureContext per identity.
 * At most {@link HANDSHAKES_IN_FLIGHT} handshakes run at once; `timeoutMs` counts from a connection's
 * own start, not from when it began to wait.
 */
export function pinnedConnector(o: PinnedConnectorOptions): PinnedConnector {
  const context = clientSecureContext(o.self);
  let session: Buffer | undefined;
  let inFlight = 0;
  const waiting: Waiting[] = [];
  /** performance.now() of the last handshake that completed */
  let completedAt = -Infinity;
  /** Connects and pins; `callback` gets the socket once the server proved to be `expectedId`. */
  const dial = (hostname: string, portText: string, callback: buildConnector.Callback): TLSSocket => {
    const { host, port, address } = target(hostname, portText);
    let settled = false;
    const socket = connect({
      host,
      port,
      secureContext: context,
      session,
      rejectUnauthorized: false,
      ALPNProtocols: ['http/1.1'],
    });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    const settle = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.removeListener('error', onError);
      if (err === null) {
        callback(null, socket);
        return;
      }
      socket.on('error', () => undefined); // a late error of a socket given up on must not crash the worker
      socket.destroy();
      callback(err, null);
    };
    const onError = (err: Error): void => settle(err);
    const timer = setTimeout(
      () =>
        settle(
          new UpstreamError(
            'OLN_UPSTREAM_CONNECT_TIMEOUT',
            `connect timeout: ${address} did not complete a TLS handshake in ${o.timeoutMs} ms`,
          ),
        ),
      o.timeoutMs,
    );
    timer.unref();
    // A ticket may arrive before or after the pin check; only a pinned server's is kept.
    let pinned = false;
    let ticket: Buffer | undefined;
    socket.on('session', (s: Buffer) => {
      if (pinned) session = s;
      else ticket = s;
    });
    socket.once('error', onError);
    socket.once('secureConnect', () => {
      countHandshake(socket);
      // A resumed session carries no certificate on the client side, but only the server that issued
      // the ticket can resume it, and tickets are kept only from servers that passed the pin.
      if (!socket.isSessionReused()) {
        const actual = peerDeviceId(socket);
        if (actual !== o.expectedId) {
          settle(new PinMismatchError(address, o.expectedId, actual));
          return;
        }
      }
      pinned = true;
      if (ticket !== undefined) session = ticket;
      settle(null);
    });
    return socket;
  };

  /**
   * A handshake ended and frees its turn. One that timed out while no other completed since it began
   * says the server is not answering: the connections still waiting would only time out one turn after
   * another, so they fail now, and a burst fails in about the timeout instead of a multiple of it.
   */
  const finished = (err: Error | null, startedAt: number, address: string): void => {
    inFlight--;
    if (err === null) completedAt = performance.now();
    else if ((err as { code?: string }).code === 'OLN_UPSTREAM_CONNECT_TIMEOUT' && completedAt < startedAt) {
      const given = waiting.splice(0);
      const cause =
        `connect timeout: ${address} completed no TLS handshake in ${o.timeoutMs} ms; ` +
        'this connection was waiting its turn behind those and is given up too';
      for (const w of given) w.fail(new UpstreamError('OLN_UPSTREAM_CONNECT_TIMEOUT', cause));
    }
    while (inFlight < HANDSHAKES_IN_FLIGHT && waiting.length > 0) waiting.shift()!.start();
  };
  /** Dials now if fewer than HANDSHAKES_IN_FLIGHT handshakes run, else when a turn frees; `cancel` ends either. */
  const take = (hostname: string, port: string, callback: buildConnector.Callback): { cancel(err: Error): void } => {
    let socket: TLSSocket | null = null;
    const entry: Waiting = {
      start: () => {
        inFlight++;
        const startedAt = performance.now();
        socket = dial(hostname, port, (...result) => {
          finished(result[0], startedAt, target(hostname, port).address);
          callback(...result);
        });
      },
      fail: (err) => callback(err, null),
    };
    if (inFlight < HANDSHAKES_IN_FLIGHT) entry.start();
    else waiting.push(entry);
    return {
      cancel: (err) => {
        if (socket !== null) {
          socket.destroy(err);
          return;
        } // dial's callback reports it
        const at = waiting.indexOf(entry);
        if (at >= 0) {
          waiting.splice(at, 1);
          entry.fail(err);
        }
      },
    };
  };

  const connector = ((opts, callback) => {
    take(opts.hostname, opts.port, callback);
  }) as PinnedConnector;
  connector.warm = (origin, signal) =>
    new Promise<boolean>((resolve, reject) => {
      const aborted = (): Error =>
        Object.assign(new Error(`connection ahead to ${origin} cancelled`), { code: 'ABORT_ERR' });
      if (signal?.aborted === true) {
        reject(aborted());
        return;
      }
      const before = session;
      let done = false;
      let timer: NodeJS.Timeout | undefined;
      let open: TLSSocket | null = null;
      const finish = (err: Error | null): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (open !== null) {
          // close_notify and FIN; the server's http layer sees a connection that ends before a request.
          open.on('error', () => undefined);
          open.destroySoon();
        }
        if (err !== null) reject(err);
        else resolve(session !== undefined);
      };
      const onAbort = (): void => {
        if (open !== null) finish(aborted());
        else turn.cancel(aborted()); // waiting or still connecting: the callback reports it
      };
      const { hostname, port } = new URL(origin);
      const turn = take(hostname, port, (err, s) => {
        if (err !== null) {
          finish(err);
          return;
        }
        open = s as TLSSocket;
        // TLS 1.3 tickets follow the handshake; the connector's own 'session' listener (added first)
        // has stored it by the time this one runs.
        if (session !== before) {
          finish(null);
          return;
        }
        open.once('session', () => finish(null));
        open.once('close', () => finish(null));
        timer = setTimeout(() => finish(null), o.timeoutMs);
        timer.unref();
      });
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  return connector;
}
