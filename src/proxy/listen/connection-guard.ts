/**
 * The defences of a proxy worker's listener against broken or hostile clients, kept apart from the
 * proxying: limits on header size and header time, the answer to bytes Node's strict HTTP parser
 * (llhttp) refuses (request smuggling, bad framing, oversized or slow headers), a cap on open
 * connections, accept errors, and the request-target and Host checks. Every refusal goes through one
 * RefusalLog, so a flood costs a few log lines.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Server as NetServer, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../log.ts';
import { ConnectionCap } from './connection-cap.ts';
import { IdleWatch } from './idle-watch.ts';
import { BodyWatch } from './body-watch.ts';
import { jsonReply, parserRefusalReply, REFUSAL_KINDS, type Kind } from './guard-replies.ts';
import type { GuardSettings } from './guard-settings.ts';
import { HandshakeBudget } from './handshake-budget.ts';
import { outOfFiles, outOfFilesAdvice } from '../../net/open-files.ts';
import { RefusalLog } from './refusal-log.ts';
import { RequestChecks, remote } from './request-checks.ts';

/** How long a refused connection may stay half-open to read its answer before it is cut. */
const LINGER_MS = 2_000;
/** At the connection limit, idle connections are closed at most this often. */
const EVICT_EVERY_MS = 1_000;
/**
 * At the connection limit, a request body that has sent nothing for this long (or for the body
 * timeout, if shorter) counts as idle: its connection may be closed to make room.
 */
const STALLED_BODY_EVICT_MS = 5_000;
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
  readonly #checks: RequestChecks;
  /** Admitted connections not established yet: they may be closed to make room for new ones. */
  readonly #handshakes: HandshakeBudget;

  constructor(settings: GuardSettings, log: Logger, worker: number) {
    this.#settings = settings;
    this.#refusals = new RefusalLog(log, REFUSAL_KINDS);
    this.#checks = new RequestChecks(this.#refusals);
    this.#worker = worker;
    this.#cap = new ConnectionCap(settings.connectionBoard ?? null, worker, settings.maxConnections);
    this.#handshakes = new HandshakeBudget(this.#cap.max, this.#cap.workers, this.#refusals);
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
    this.#handshakes.tls = tls;
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
      if (this.#handshakes.full()) this.#handshakes.evict(socket);
      // At the node's cap, a connection still in its handshake is closed before a new one is refused.
      if (!this.#cap.admit() && !(this.#handshakes.evict(socket) && this.#cap.admit())) {
        this.#refuseConnection(socket);
        return;
      }
      let released = false;
      const release = (): void => {
        if (released) return;
        released = true;
        this.#cap.release();
      };
      this.#handshakes.track(socket, release);
      socket.once('close', () => {
        this.#handshakes.established(socket);
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
    this.#handshakes.established(raw);
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
    const reply = parserRefusalReply(err, socket, this.#settings.requestHeadersTimeoutMs, this.#refusals);
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
