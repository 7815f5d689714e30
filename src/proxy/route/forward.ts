/**
 * One forwarded request, as an undici dispatch handler: the request body streams from the client
 * socket to the upstream, each response chunk is written to the client as it arrives (Node corks the
 * socket per tick, so a chunk costs one write), and backpressure flows both ways through
 * controller.pause()/resume() and the client socket's 'drain'. When the client goes away the upstream
 * request is aborted at once, which is how Ollama learns to stop generating.
 *
 * With several candidate servers and a replayable body (buffered, or none), a failure before any
 * byte went back to the client (connection refused, 503, a 404 for a missing model...) moves the
 * request to the next candidate.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Dispatcher } from 'undici';
import type { Logger } from '../../log.ts';
import type { Upstream } from '../../protocol/messages.ts';
import { downstreamResponseHeaders } from '../http/headers.ts';
import { REFUSED_HEADER } from '../listen/refusal.ts';
import type { StatsCollector } from '../stats.ts';
import type { RequestMeter } from '../../metrics/worker-metrics.ts';
import { relayed } from '../relay/read-buffers.ts';
import {
  CONNECT_CODES,
  answerFailure,
  answerOutOfFiles,
  codeOf,
  responseErrorSender,
  type FailedExchange,
} from './upstream-failure.ts';
import { UpstreamError, type UpstreamFailureCode } from '../../errors.ts';

const CLIENT_GONE = new Error('client went away');

/** undici's codes of a failed exchange, as ollana's own (UND_ERR_SOCKET: see fromUndici). */
const UNDICI_CODES: Readonly<Record<string, UpstreamFailureCode>> = {
  UND_ERR_CONNECT_TIMEOUT: 'OLN_UPSTREAM_CONNECT_TIMEOUT',
  UND_ERR_HEADERS_TIMEOUT: 'OLN_UPSTREAM_HEADERS_TIMEOUT',
  UND_ERR_BODY_TIMEOUT: 'OLN_UPSTREAM_BODY_TIMEOUT',
  UND_ERR_DESTROYED: 'OLN_UPSTREAM_GONE',
  UND_ERR_CLOSED: 'OLN_UPSTREAM_CLOSED',
  UND_ERR_SOCKET: 'OLN_UPSTREAM_CLOSED',
};

/**
 * An error undici reported, with ollana's code (UpstreamFailureCode): undici's own codes are mapped,
 * keeping undici's error as the cause; a socket error undici wrapped (UND_ERR_SOCKET) is its cause,
 * the system error, when that has a code. Anything else (a system error, an ollana code passed
 * through undici, such as the pinned connector's) is returned as it is.
 */
export function fromUndici(err: Error): Error {
  const code = (err as { code?: unknown }).code;
  if (typeof code !== 'string' || !code.startsWith('UND_ERR_')) return err;
  const cause = (err as { cause?: unknown }).cause;
  if (code === 'UND_ERR_SOCKET' && cause instanceof Error && typeof (cause as { code?: unknown }).code === 'string')
    return cause;
  return new UpstreamError(UNDICI_CODES[code] ?? 'OLN_UPSTREAM_FAILED', err.message, { cause: err });
}

export interface ForwardOptions {
  readonly stats: StatsCollector;
  readonly log: Logger;
  /** The model the router read from the body, or null (then the metrics read it as the body goes out). */
  readonly model?: string | null;
  /** Servers to try in order; one for a server node. */
  readonly candidates: readonly Upstream[];
  /** Human name of an upstream for error messages. */
  readonly describe: (u: Upstream) => string;
  /** Starts one attempt against `u` with this handler (picks the pool, builds the request). */
  readonly dispatch: (u: Upstream, handler: Forward) => void;
  /** Whether this response status, before any byte went out, may move to the next candidate. */
  readonly retryable: ((status: number) => boolean) | null;
  /** Headers to add to the response (CORS), or null. */
  readonly extraHeaders: readonly string[] | null;
  /** Response headers to drop from the upstream's because ollana sets them (lowercase), or null. */
  readonly dropHeaders: ReadonlySet<string> | null;
  /** Told when an upstream could not be reached, so the next requests try it last for a while. */
  readonly unreachable: (u: Upstream) => void;
  /** Told when a server node answered that it does not allow this device (then the next is tried). */
  readonly refusedBy: (u: Upstream) => void;
  /** Per-upstream in-flight accounting for least-busy routing. */
  readonly attempt: (u: Upstream, delta: 1 | -1) => void;
  readonly onFinish: () => void;
  /** Told which upstream answered, and how, once its response head goes to the client. */
  readonly onServed?: ((u: Upstream, status: number) => void) | null;
  /** Whether the client's connection was refused after this request's head (connection-guard.ts). */
  readonly clientBroken: (socket: Duplex) => boolean;
  /** Told when no connection to the upstream could be opened for lack of file descriptors (logged there, summarised). */
  readonly outOfFiles: (upstream: string, err: Error) => void;
}

export class Forward implements Dispatcher.DispatchHandler {
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #opts: ForwardOptions;
  readonly #started = process.hrtime.bigint();
  readonly #meter: RequestMeter;
  #index = 0;
  #controller: Dispatcher.DispatchController | null = null;
  #abandoned: Error | null = null;
  #responded = false;
  #finished = false;
  #clientGone = false;
  #attemptOpen = false;
  #contentType: string | undefined;
  #resume: (() => void) | null = null;

  constructor(req: IncomingMessage, res: ServerResponse, opts: ForwardOptions) {
    this.#req = req;
    this.#res = res;
    this.#opts = opts;
    opts.stats.requests += 1;
    opts.stats.inFlight += 1;
    this.#meter = opts.stats.metrics.begin(req.url ?? '/', '', opts.model ?? null);
    res.once('close', () => this.#onClientClose());
  }

  /** The upstream of the current attempt. */
  get upstream(): Upstream {
    return this.#opts.candidates[this.#index]!;
  }

  start(): void {
    this.#openAttempt();
    this.#opts.dispatch(this.upstream, this);
  }

  #openAttempt(): void {
    this.#attemptOpen = true;
    this.#opts.attempt(this.upstream, 1);
  }

  #closeAttempt(): void {
    if (!this.#attemptOpen) return;
    this.#attemptOpen = false;
    this.#opts.attempt(this.upstream, -1);
  }

  /** Moves to the next candidate if there is one and nothing reached the client; true if it did. */
  #tryNext(controller: Dispatcher.DispatchController | null, why: string): boolean {
    if (this.#responded || this.#clientGone || this.#index + 1 >= this.#opts.candidates.length) return false;
    this.#opts.log.info(
      { from: this.upstream.id, why },
      `retrying on another server node: ${this.#opts.describe(this.upstream)} ${why}`,
    );
    if (controller !== null && !controller.aborted) {
      this.#abandoned = new Error('moved to another server');
      controller.abort(this.#abandoned);
    }
    this.#closeAttempt();
    this.#meter.failover();
    this.#index += 1;
    this.#controller = null;
    this.start();
    return true;
  }

  #onClientClose(): void {
    if (this.#finished) return;
    this.#clientGone = true;
    this.#opts.stats.clientAborts += 1;
    this.#meter.aborted();
    this.#controller?.abort(CLIENT_GONE);
    this.#finish();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    // Bytes the parser refused after this request's head (bad chunked framing in its body, a
    // smuggled request behind it): undici calls this before it writes the first byte upstream, so
    // such a request never reaches Ollama when its bad bytes came in the same read as its head.
    if (!this.#clientGone && this.#opts.clientBroken(this.#req.socket)) {
      this.#onClientClose();
      return;
    }
    if (this.#clientGone) controller.abort(CLIENT_GONE);
  }

  onBodySent(chunk: Buffer): void {
    this.#opts.stats.bytesIn += chunk.length;
    this.#meter.requestBody(chunk);
    relayed(chunk.length);
  }

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: Record<string, string | string[] | undefined>,
  ): void {
    if (controller !== this.#controller || this.#clientGone) return;
    if (statusCode < 200) return; // 1xx: Node answers the client's 100-continue itself
    if (statusCode === 403 && headers[REFUSED_HEADER] !== undefined) {
      this.#opts.refusedBy(this.upstream);
      if (this.#tryNext(controller, 'does not allow this device')) return;
    } else if (this.#opts.retryable?.(statusCode) === true && this.#tryNext(controller, `answered ${statusCode}`)) {
      return;
    }
    const raw = (controller.rawHeaders ?? []) as (Buffer | string)[];
    const out = downstreamResponseHeaders(raw, this.#opts.dropHeaders);
    if (this.#opts.extraHeaders !== null) out.push(...this.#opts.extraHeaders);
    const ct = headers['content-type'];
    this.#contentType = Array.isArray(ct) ? ct[0] : ct;
    this.#res.writeHead(statusCode, out);
    this.#responded = true;
    this.#opts.onServed?.(this.upstream, statusCode);
    this.#opts.stats.status(statusCode);
    const ns = process.hrtime.bigint() - this.#started;
    this.#opts.stats.firstByte(ns);
    this.#meter.responded(statusCode, ns);
    // Ollama sends headers together with the first token, so the body chunk usually follows in the
    // same tick and carries the headers out with it. If it does not, flush the headers alone so that
    // a client waiting on them (SSE, a long upload reply) is not left hanging.
    setImmediate(() => {
      if (!this.#res.headersSent && !this.#res.writableEnded && !this.#clientGone) this.#res.flushHeaders();
    });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (controller !== this.#controller || this.#clientGone) return;
    this.#opts.stats.bytesOut += chunk.length;
    this.#meter.responseBody(chunk);
    relayed(chunk.length);
    if (!this.#res.write(chunk)) {
      controller.pause();
      if (this.#resume === null) this.#resume = () => this.#controller?.resume();
      this.#res.once('drain', this.#resume);
    }
  }

  onResponseEnd(controller: Dispatcher.DispatchController): void {
    if (controller !== this.#controller || this.#clientGone) return;
    this.#res.end();
    this.#opts.stats.completed += 1;
    this.#finish();
  }

  onResponseError(controller: Dispatcher.DispatchController, undiciErr: Error): void {
    if (undiciErr === this.#abandoned) return; // an attempt we moved away from
    if (this.#clientGone || undiciErr === CLIENT_GONE) {
      this.#finish();
      return;
    }
    if (this.#controller !== null && controller !== this.#controller) return;
    const err = fromUndici(undiciErr);
    const failed: FailedExchange = {
      path: this.#req.url ?? '/',
      sendError: responseErrorSender(this.#res, this.#req.url ?? '/'),
      stats: this.#opts.stats,
      log: this.#opts.log,
      upstream: this.#opts.describe(this.upstream),
      extraHeaders: this.#opts.extraHeaders,
      outOfFiles: this.#opts.outOfFiles,
    };
    if (!this.#responded && answerOutOfFiles(failed, err)) {
      this.#meter.failed();
      this.#finish();
      return;
    }
    const code = codeOf(err);
    if (!this.#responded && CONNECT_CODES.has(code)) {
      this.#opts.unreachable(this.upstream);
      this.#meter.unreachable(this.upstream.id);
      if (this.#tryNext(null, `failed: ${err.message} (${code})`)) return;
    } else if (
      !this.#responded &&
      this.#opts.retryable?.(502) === true &&
      !code.includes('TIMEOUT') &&
      this.#tryNext(null, `answered with no valid HTTP response: ${err.message}`)
    ) {
      // An answer that is not HTTP (a broken or hostile server) is a 502 of the server's own making:
      // a request that may move on a 502 moves on this too.
      return;
    }
    this.#meter.failed();
    answerFailure(failed, err, this.#responded, this.#contentType, (tail) => {
      if (tail !== null && !this.#res.writableEnded) this.#res.end(tail);
      else this.#res.destroy(err);
    });
    this.#finish();
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#closeAttempt();
    this.#opts.stats.inFlight -= 1;
    const ns = process.hrtime.bigint() - this.#started;
    this.#opts.stats.done(ns);
    this.#meter.end(ns);
    if (!this.#req.complete) this.#req.resume(); // let an unread request body drain instead of stalling the socket
    this.#opts.onFinish();
  }
}
