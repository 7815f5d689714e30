/**
 * The defences of a proxy worker's listener against broken or hostile clients, kept apart from the
 * proxying: limits on header size and header time, the answer to bytes Node's strict HTTP parser
 * (llhttp) refuses (request smuggling, bad framing, oversized or slow headers), a cap on open
 * connections, accept errors, and the request-target and Host checks. Every refusal goes through one
 * RefusalLog, so a flood costs a few log lines.
 */
import type { IncomingMessage, Server, ServerOptions, ServerResponse } from 'node:http';
import type { Server as NetServer, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../log.ts';
import { ConnectionCap } from './connection-cap.ts';
import { IdleWatch } from './idle-watch.ts';
import { BodyWatch, declaresBody } from './body-watch.ts';
import { outOfFiles, outOfFilesAdvice } from '../../net/open-files.ts';
import { RefusalLog } from './refusal-log.ts';
import { RequestChecks, remote } from './request-checks.ts';

/** Request line plus header block, as Node's parser counts them (its default is 16 KiB). */
export const MAX_HEADER_BYTES = 64 * 1024;
/** How long a refused connection may stay half-open to read its answer before it is cut. */
const LINGER_MS = 2_000;
/** At the connection limit, idle connections are closed at most this often. */
const EVICT_EVERY_MS = 1_000;
/**
 * Share of --max-connections that connections still in their handshake (TLS not done; on a plain
 * listener, not one byte sent) may hold. A flood of connections that never send a ClientHello then
 * churns within this share while the rest of the cap stays for clients that talk.
 */
const HANDSHAKE_SHARE = 4;
/**
 * At the connection limit, a request body that has sent nothing for this long (or for the body
 * timeout, if shorter) counts as idle: its connection may be closed to make room.
 */
const STALLED_BODY_EVICT_MS = 5_000;
/** The handshake budget of one worker is never below this. */
const MIN_HANDSHAKE_BUDGET = 16;

export interface GuardSettings {
  /** From connect, or from a request's first byte, until its headers are complete; 0 = no limit. */
  readonly requestHeadersTimeoutMs: number;
  /** Idle time allowed between requests, stray empty lines or not (idle-watch.ts); 0 = no limit. */
  readonly keepAliveTimeoutMs: number;
  /** Time a request body may send nothing while ollana reads it (body-watch.ts); 0 = no limit. */
  readonly requestBodyTimeoutMs: number;
  /** Open connections of the whole node; 0 = no limit. */
  readonly maxConnections: number;
  /** Where the workers count their connections (connection-cap.ts); absent: this worker alone. */
  readonly connectionBoard?: Int32Array;
}

const KINDS = {
  malformed: { level: 'info', what: 'malformed requests refused with 400' },
  'headers-too-large': { level: 'info', what: 'requests with oversized headers refused with 431' },
  'headers-timeout': { level: 'info', what: 'connections closed for slow request headers (408)' },
  'body-timeout': { level: 'info', what: 'connections closed for request bodies that stalled (408)' },
  'idle-trickle': { level: 'info', what: 'idle connections closed for sending empty lines instead of a request (408)' },
  'bad-target': { level: 'info', what: 'requests with a bad request target refused' },
  'bad-host': { level: 'info', what: 'requests without exactly one valid Host refused with 400' },
  'missing-host': { level: 'info', what: 'HTTP/1.1 requests without a Host header refused with 400' },
  'connect-method': { level: 'info', what: 'CONNECT requests refused with 405' },
  'bad-version': { level: 'info', what: 'requests of an HTTP version other than 1.0 and 1.1 refused with 505' },
  'connection-limit': { level: 'warn', what: 'connections refused over the connection limit' },
  'handshake-evicted': { level: 'info', what: 'connections closed in their handshake to make room' },
  'accept-failed': { level: 'warn', what: 'failed accepts' },
  'out-of-files': { level: 'error', what: 'requests answered 503 for lack of file descriptors' },
} as const;
export type Kind = keyof typeof KINDS;

/** The createServer options the guard's limits live in. */
export function guardedServerOptions(
  s: GuardSettings,
): Pick<ServerOptions, 'headersTimeout' | 'connectionsCheckingInterval' | 'maxHeaderSize' | 'requireHostHeader'> {
  return {
    headersTimeout: s.requestHeadersTimeoutMs,
    // Node checks header deadlines on this interval (default 30 s): a slow connection lives at most
    // the timeout plus one interval. A quarter of the timeout, at most 1 s, keeps that close.
    connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(s.requestHeadersTimeoutMs / 4) || 1_000)),
    maxHeaderSize: MAX_HEADER_BYTES,
    // Node would answer an HTTP/1.1 request without Host itself: 400, no body, nothing logged. The
    // guard refuses it instead (#refusesHost), with an error body saying what to send.
    requireHostHeader: false,
  };
}

function jsonReply(status: number, reason: string, message: string): string {
  const body = JSON.stringify({ error: message });
  return (
    `HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-type: application/json; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

/**
 * Runs `answer` once the request's body has been read (and dropped). ollana's own answers (503 with
 * no server, 403, its endpoints) wait for it, so that a body the parser rejects is answered 400 by
 * the clientError handler instead of both a 503 and a 400 on one request.
 */
export function afterBody(req: IncomingMessage, answer: () => void): void {
  if (req.complete || !declaresBody(req)) {
    answer();
    return;
  }
  req.once('end', answer);
  req.resume();
}

export class ConnectionGuard {
  readonly #settings: GuardSettings;
  readonly #refusals: RefusalLog<Kind>;
  readonly #worker: number;
  /** Sockets whose bytes the parser refused: nothing read from them may still go upstream. */
  readonly #broken = new WeakSet<Duplex>();
  readonly #cap: ConnectionCap;
  readonly #idle: IdleWatch | null;
  readonly #bodies: BodyWatch;
  #http: Server | null = null;
  /** Closes the idle connections node:http does not hold (the server node's fast front). */
  #evictMore: (() => void) | null = null;
  #evictedAt = 0;
  #askedAt = 0;
  /**
   * Admitted connections not established yet (TLS handshake not done, or on a plain listener no byte
   * read), oldest first, each with its idempotent release from the cap: they may be closed to make
   * room for new ones (#evictHandshake).
   */
  readonly #handshaking = new Map<Socket, () => void>();
  /** How many of them this worker holds at most (a share of the node's cap, split over the workers). */
  readonly #handshakeBudget: number;
  /** Whether the listener speaks TLS: established then means handshake done (established()), else a byte read. */
  #tls = false;
  readonly #checks: RequestChecks;

  constructor(settings: GuardSettings, log: Logger, worker: number) {
    this.#settings = settings;
    this.#refusals = new RefusalLog(log, KINDS);
    this.#checks = new RequestChecks(this.#refusals);
    this.#worker = worker;
    this.#cap = new ConnectionCap(settings.connectionBoard ?? null, worker, settings.maxConnections);
    this.#handshakeBudget =
      settings.maxConnections > 0
        ? Math.max(MIN_HANDSHAKE_BUDGET, Math.floor(settings.maxConnections / HANDSHAKE_SHARE / this.#cap.workers))
        : Number.POSITIVE_INFINITY;
    // Answered already (the upstream did not wait for the whole body): only the close is left.
    this.#bodies = new BodyWatch(settings.requestBodyTimeoutMs, (req, res, idleMs) =>
      this.#bodyTimedOut(req.socket, res.headersSent, idleMs),
    );
    this.#idle =
      settings.keepAliveTimeoutMs > 0
        ? new IdleWatch(settings.keepAliveTimeoutMs, settings.requestHeadersTimeoutMs, (socket, idleMs) =>
            this.#closeTrickle(socket, idleMs),
          )
        : null;
  }

  /** Installs the handlers on the worker's HTTP server (before listen); `tls`: the listener speaks TLS. */
  attach(server: Server, tls = false): void {
    this.#http = server;
    this.#tls = tls;
    server.on('clientError', (err: Error & { code?: string; reason?: string }, socket: Duplex) =>
      this.#clientError(err, socket),
    );
    server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
      this.#broken.add(socket);
      this.#refusals.note(
        'connect-method',
        { remote: remote(socket) },
        `refused a CONNECT request from ${remote(socket)}: ollana is not a forward proxy; answered 405`,
      );
      this.#answerAndClose(
        socket,
        jsonReply(
          405,
          'Method Not Allowed',
          'ollana: CONNECT is not supported; ollana forwards Ollama API requests, it is not a forward proxy',
        ),
      );
    });
    this.#limit(server);
    this.#idle?.attach(server);
    this.#bodies.attach(server);
  }

  /**
   * The same defences for connections whose requests node:http does not parse (fast/front.ts): `also`
   * closes their idle connections when the node is at its connection limit.
   */
  evictAlso(also: () => void): void {
    this.#evictMore = also;
  }

  /** Bytes the parser refused on a connection parsed outside node:http; `responding`: a response is under way. */
  malformed(err: Error & { code?: string; reason?: string }, socket: Duplex, responding: boolean): void {
    this.#refuse(err, socket, responding);
  }

  /** A connection parsed outside node:http sent no complete request headers in time. */
  headersTimedOut(socket: Duplex, responding: boolean): void {
    this.#refuse(
      Object.assign(new Error('request headers timeout'), { code: 'ERR_HTTP_REQUEST_TIMEOUT' }),
      socket,
      responding,
    );
  }

  /** A request body on a connection parsed outside node:http sent nothing for `idleMs`. */
  bodyTimedOut(socket: Duplex, responding: boolean, idleMs: number): void {
    this.#bodyTimedOut(socket, responding, idleMs);
  }

  /** How long a stalled body must have sent nothing before its connection may be closed to make room. */
  get stalledBodyEvictMs(): number {
    const timeout = this.#settings.requestBodyTimeoutMs;
    return timeout > 0 ? Math.min(STALLED_BODY_EVICT_MS, timeout) : STALLED_BODY_EVICT_MS;
  }

  /**
   * A request body stopped coming: 408 if no answer has begun, else the connection is cut; either way
   * nothing more of it goes upstream, and the upstream request ends with the connection.
   */
  #bodyTimedOut(socket: Duplex, responding: boolean, idleMs: number): void {
    this.#broken.add(socket);
    const from = remote(socket);
    const seconds = Math.round(idleMs / 100) / 10;
    const limit = this.#settings.requestBodyTimeoutMs / 1000;
    this.#refusals.note(
      'body-timeout',
      { remote: from, idleMs, responding },
      `closed a connection from ${from} whose request body sent nothing for ${seconds} s (--request-body-timeout ${limit} s); ` +
        (responding ? 'cut its response' : 'answered 408'),
    );
    if (responding || !socket.writable) {
      socket.destroy();
      return;
    }
    this.#answerAndClose(
      socket,
      jsonReply(
        408,
        'Request Timeout',
        `ollana: the request body sent nothing for ${seconds} s; send the body without long pauses (--request-body-timeout ${limit} s)`,
      ),
    );
  }

  /** An idle connection parsed outside node:http that sent only empty lines past the keep-alive deadline. */
  trickled(socket: Socket, idleMs: number): void {
    this.#closeTrickle(socket, idleMs);
  }

  #closeTrickle(socket: Socket, idleMs: number): void {
    this.#broken.add(socket);
    const from = remote(socket);
    const seconds = Math.round(idleMs / 100) / 10;
    const keepAlive = this.#settings.keepAliveTimeoutMs / 1000;
    this.#refusals.note(
      'idle-trickle',
      { remote: from, idleMs },
      `closed a connection from ${from} that sent only empty lines after its last request for ${seconds} s ` +
        `(--keep-alive-timeout ${keepAlive} s); answered 408`,
    );
    this.#answerAndClose(
      socket,
      jsonReply(
        408,
        'Request Timeout',
        `ollana: no request within ${seconds} s on an idle connection that sent only empty lines; ` +
          `send a request within --keep-alive-timeout (${keepAlive} s) or close the connection`,
      ),
    );
  }

  /**
   * Counts every connection the server accepts against the node-wide cap, before the server sees it:
   * its one 'connection' listener (HTTP parser, or TLS handshake) runs only for admitted ones, as
   * #guardHandshakes in listener.ts does for handshakes. Failed accepts are logged.
   */
  #limit(server: NetServer): void {
    const serve = server.listeners('connection') as ((socket: Socket) => void)[];
    server.removeAllListeners('connection');
    server.on('connection', (socket: Socket) => {
      // The handshake budget is full: the longest-waiting of those connections makes room.
      if (this.#handshaking.size >= this.#handshakeBudget && this.#pruneEstablished() >= this.#handshakeBudget)
        this.#evictHandshake(socket);
      // At the node's cap, a connection still in its handshake is closed before a new one is refused.
      if (!this.#cap.admit() && !(this.#evictHandshake(socket) && this.#cap.admit())) {
        this.#refuseConnection(socket);
        return;
      }
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        this.#cap.release();
      };
      this.#handshaking.set(socket, release);
      socket.once('close', () => {
        this.#handshaking.delete(socket);
        release();
      });
      for (const listener of serve) listener.call(server, socket);
    });
    this.#cap.onRoomWanted(() => this.#evictIdle());
    server.on('error', (err: Error & { code?: string }) => {
      // Errors before 'listening' are listen() failures, reported by listen(). After it, they are
      // failed accepts (EMFILE: out of file descriptors), which must not kill the worker.
      if (!server.listening) return;
      this.#refusals.note(
        'accept-failed',
        { code: err.code, err },
        `proxy worker ${this.#worker} failed to accept a connection: ${outOfFiles(err) ? outOfFilesAdvice() : err.message}`,
      );
    });
  }

  /**
   * A connection finished its TLS handshake (`raw`: the TCP socket under it): it no longer counts
   * against the handshake budget and is not closed to make room for others' handshakes.
   */
  established(raw: Socket): void {
    this.#handshaking.delete(raw);
  }

  /**
   * On a plain listener, forgets the connections that have sent a byte (they are established; no
   * event says so, so they are found here, each once). Returns how many remain in their handshake.
   */
  #pruneEstablished(): number {
    if (!this.#tls)
      for (const socket of this.#handshaking.keys()) if (socket.bytesRead > 0) this.#handshaking.delete(socket);
    return this.#handshaking.size;
  }

  /**
   * Closes one connection still in its handshake to make room for `arriving`: the oldest that sent
   * nothing at all (no ClientHello, no request byte), else the oldest. On a plain listener a
   * connection that sent a byte is established, and is dropped from the list on the way. Returns
   * whether one was closed (its place in the cap is free at once).
   */
  #evictHandshake(arriving: Socket): boolean {
    let victim: Socket | null = null;
    for (const socket of this.#handshaking.keys()) {
      if (socket.bytesRead === 0) {
        victim = socket;
        break;
      }
      if (!this.#tls) this.#handshaking.delete(socket);
      else victim ??= socket;
    }
    if (victim === null) return false;
    const release = this.#handshaking.get(victim)!;
    this.#handshaking.delete(victim);
    release();
    victim.destroy();
    const from = arriving.remoteAddress ?? 'unknown';
    const budget = this.#handshakeBudget;
    this.#refusals.note(
      'handshake-evicted',
      { remote: victim.remoteAddress ?? 'unknown', arriving: from, budget },
      `closed a connection from ${victim.remoteAddress ?? 'unknown'} that had not completed its ${this.#tls ? 'TLS handshake' : 'first request'} ` +
        `to make room for one from ${from}: this worker lets ${budget} connections wait in their handshake ` +
        `(1/${HANDSHAKE_SHARE} of --max-connections ${this.#cap.max}, split over the workers)`,
    );
    return true;
  }

  #refuseConnection(socket: Socket): void {
    const from = socket.remoteAddress ?? 'unknown';
    const max = this.#cap.max;
    socket.destroy();
    this.#refusals.note(
      'connection-limit',
      { remote: from, limit: max },
      `connection limit reached: the node holds ${max} connections (--max-connections ${max}); refused one from ${from} ` +
        'and closed the idle ones to make room (raise --max-connections if this is legitimate load)',
    );
    const now = Date.now();
    if (now - this.#askedAt < EVICT_EVERY_MS) return;
    this.#askedAt = now;
    this.#cap.askForRoom();
  }

  /**
   * Makes room at the limit: closes the connections that carry no request in progress (idle
   * keep-alive ones, and ones still sending or not yet sending headers) and those whose request body
   * has stalled. A flood can then only hold
   * the limit with requests in progress; a client whose idle connection closes reconnects.
   */
  #evictIdle(): void {
    const now = Date.now();
    if (this.#http === null || now - this.#evictedAt < EVICT_EVERY_MS) return;
    this.#evictedAt = now;
    this.#http.closeIdleConnections();
    this.#bodies.closeStalled(this.stalledBodyEvictMs);
    this.#evictMore?.();
  }

  /** A request found no file descriptor for its upstream connection (forward.ts answered it 503). */
  readonly outOfFiles = (upstream: string, err: Error): void => {
    this.#refusals.note(
      'out-of-files',
      { code: (err as { code?: string }).code, upstream },
      `proxy worker ${this.#worker} could not open a connection to ${upstream}: ${outOfFilesAdvice()}; answered 503`,
    );
  };

  /** Whether the client's connection was refused after this request's head: then nothing goes upstream. */
  readonly broken = (socket: Duplex): boolean => this.#broken.has(socket);

  /**
   * Answers 414 or 400 for a request ollana will not forward (an overlong URL, a target that is not a
   * path, not exactly one valid Host) and returns true; otherwise turns an absolute-form target into
   * the origin form with its authority as the Host (request-target.ts) and returns false.
   */
  refuses(req: IncomingMessage, res: ServerResponse): boolean {
    return this.#checks.refuses(req, res);
  }

  #clientError(err: Error & { code?: string; reason?: string }, socket: Duplex): void {
    // The https server passes its TLS handshake failures (a timeout, plain HTTP on the TLS port) on
    // as client errors too: no HTTP was read, there is nothing to answer, and the TLS listener logs
    // them itself (listener.ts).
    if (typeof err.code === 'string' && (err.code.startsWith('ERR_TLS_') || err.code.startsWith('ERR_SSL_'))) {
      socket.destroy();
      return;
    }
    // A response already under way on this connection (an earlier pipelined request) cannot be
    // followed by an answer without corrupting it. Node's own clientError default checks the same
    // private field.
    const current = (socket as { _httpMessage?: ServerResponse | null })._httpMessage;
    this.#refuse(err, socket, current?.headersSent === true);
  }

  #refuse(err: Error & { code?: string; reason?: string }, socket: Duplex, responding: boolean): void {
    this.#broken.add(socket);
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const from = remote(socket);
    let reply: string;
    switch (err.code) {
      case 'HPE_HEADER_OVERFLOW':
        this.#refusals.note(
          'headers-too-large',
          { remote: from, code: err.code },
          `refused a request from ${from} whose request line and headers exceed ${MAX_HEADER_BYTES / 1024} KiB; answered 431`,
        );
        reply = jsonReply(
          431,
          'Request Header Fields Too Large',
          `ollana: request line and headers over ${MAX_HEADER_BYTES / 1024} KiB (or too many header fields); send fewer or smaller headers`,
        );
        break;
      case 'ERR_HTTP_REQUEST_TIMEOUT': {
        const seconds = this.#settings.requestHeadersTimeoutMs / 1000;
        this.#refusals.note(
          'headers-timeout',
          { remote: from, code: err.code },
          `closed a connection from ${from} that sent no complete request headers within ${seconds} s; answered 408`,
        );
        reply = jsonReply(
          408,
          'Request Timeout',
          `ollana: no complete request headers within ${seconds} s (--request-headers-timeout)`,
        );
        break;
      }
      default: {
        // llhttp's reason is a fixed phrase such as "Transfer-Encoding can't be present with Content-Length".
        const reason = err.reason ?? err.message;
        this.#refusals.note(
          'malformed',
          { remote: from, code: err.code, reason },
          `refused a malformed HTTP request from ${from}: ${reason} (${err.code ?? 'unknown'}); answered 400 and closed the connection`,
        );
        reply = jsonReply(400, 'Bad Request', `ollana: malformed HTTP request: ${reason}`);
      }
    }
    // A response already under way cannot be followed by a 400 without corrupting it: cut instead.
    if (responding) {
      socket.destroy();
      return;
    }
    this.#answerAndClose(socket, reply);
  }

  #answerAndClose(socket: Duplex, reply: string): void {
    socket.end(reply);
    // The server allows half-open connections: a client that never closes its side would keep this
    // one forever. Cut it after a grace period long enough to read the answer.
    setTimeout(() => socket.destroy(), LINGER_MS).unref();
  }

  /** Stops making room for other workers and logs the pending refusal summaries (on drain). */
  close(): void {
    this.#cap.stop();
    this.#idle?.stop();
    this.#bodies.stop();
    this.#refusals.flush();
  }
}
