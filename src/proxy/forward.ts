/**
 * One forwarded request, as an undici dispatch handler: the request body streams from the client
 * socket to the upstream, each response chunk is written to the client as it arrives (Node corks the
 * socket per tick, so a chunk costs one write), and backpressure flows both ways through
 * controller.pause()/resume() and the client socket's 'drain'. When the client goes away the upstream
 * request is aborted at once, which is how Ollama learns to stop generating.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Dispatcher } from 'undici';
import type { Logger } from '../log.ts';
import { downstreamResponseHeaders } from './headers.ts';
import { sendError, streamErrorTail } from './errors-http.ts';
import type { StatsCollector } from './stats.ts';

const CLIENT_GONE = new Error('client went away');

/** Undici error codes that mean "the upstream never answered", as opposed to a broken answer. */
const CONNECT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN',
  'UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_SOCKET', 'EPIPE', 'ETIMEDOUT']);

export interface ForwardOptions {
  readonly stats: StatsCollector;
  readonly log: Logger;
  /** Human name of the upstream for error messages, e.g. "Ollama at http://127.0.0.1:11434". */
  readonly upstreamName: string;
  /** Headers to add to the response (CORS), or null. */
  readonly extraHeaders: readonly string[] | null;
  /** Response headers to drop from the upstream's because ollana sets them (lowercase), or null. */
  readonly dropHeaders: ReadonlySet<string> | null;
  readonly onFinish: () => void;
}

function codeOf(err: Error): string {
  const code = (err as { code?: unknown }).code;
  const cause = (err as { cause?: { code?: unknown } }).cause;
  if (typeof code === 'string' && code !== 'UND_ERR_SOCKET') return code;
  if (cause && typeof cause.code === 'string') return cause.code;
  return typeof code === 'string' ? code : 'UNKNOWN';
}

export class Forward implements Dispatcher.DispatchHandler {
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #opts: ForwardOptions;
  readonly #started = process.hrtime.bigint();
  #controller: Dispatcher.DispatchController | null = null;
  #responded = false;
  #finished = false;
  #clientGone = false;
  #contentType: string | undefined;
  #resume: (() => void) | null = null;

  constructor(req: IncomingMessage, res: ServerResponse, opts: ForwardOptions) {
    this.#req = req;
    this.#res = res;
    this.#opts = opts;
    opts.stats.requests += 1;
    opts.stats.inFlight += 1;
    res.once('close', () => this.#onClientClose());
  }

  #onClientClose(): void {
    if (this.#finished) return;
    this.#clientGone = true;
    this.#opts.stats.clientAborts += 1;
    this.#controller?.abort(CLIENT_GONE);
    this.#finish();
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#clientGone) controller.abort(CLIENT_GONE);
  }

  onBodySent(chunk: Buffer): void {
    this.#opts.stats.bytesIn += chunk.length;
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | string[] | undefined>): void {
    if (statusCode < 200) return; // 1xx: Node answers the client's 100-continue itself
    if (this.#clientGone) return;
    const raw = (controller.rawHeaders ?? []) as (Buffer | string)[];
    const out = downstreamResponseHeaders(raw, this.#opts.dropHeaders);
    if (this.#opts.extraHeaders !== null) out.push(...this.#opts.extraHeaders);
    const ct = headers['content-type'];
    this.#contentType = Array.isArray(ct) ? ct[0] : ct;
    this.#res.writeHead(statusCode, out);
    this.#responded = true;
    this.#opts.stats.status(statusCode);
    this.#opts.stats.firstByte(process.hrtime.bigint() - this.#started);
    // Ollama sends headers together with the first token, so the body chunk usually follows in the
    // same tick and carries the headers out with it. If it does not, flush the headers alone so that
    // a client waiting on them (SSE, a long upload reply) is not left hanging.
    setImmediate(() => {
      if (!this.#res.headersSent && !this.#res.writableEnded && !this.#clientGone) this.#res.flushHeaders();
    });
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.#clientGone) return;
    this.#opts.stats.bytesOut += chunk.length;
    if (!this.#res.write(chunk)) {
      controller.pause();
      if (this.#resume === null) this.#resume = () => this.#controller?.resume();
      this.#res.once('drain', this.#resume);
    }
  }

  onResponseEnd(): void {
    if (this.#clientGone) return;
    this.#res.end();
    this.#opts.stats.completed += 1;
    this.#finish();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.#clientGone || err === CLIENT_GONE) {
      this.#finish();
      return;
    }
    const code = codeOf(err);
    const path = this.#req.url ?? '/';
    this.#opts.stats.upstreamErrors += 1;
    if (!this.#responded) {
      const timeout = code === 'UND_ERR_HEADERS_TIMEOUT';
      const status = timeout ? 504 : 502;
      const what = timeout
        ? `${this.#opts.upstreamName} sent no response headers within the headers timeout`
        : CONNECT_CODES.has(code)
          ? `cannot reach ${this.#opts.upstreamName}: ${err.message} (${code}); is Ollama running there?`
          : `${this.#opts.upstreamName} failed: ${err.message} (${code})`;
      this.#opts.log.warn({ code, path, err }, 'upstream failed before responding');
      this.#opts.stats.status(status);
      if (!this.#res.headersSent && !this.#res.destroyed) {
        sendError(this.#res, path, status, `ollana: ${what}`, this.#opts.extraHeaders === null ? [] : [...this.#opts.extraHeaders]);
      }
    } else {
      // Bytes already went out: the status cannot change. End the stream with an error line the
      // client's parser reports (ollama-js throws on it), or cut the connection so it sees truncation.
      this.#opts.log.warn({ code, path, err }, 'upstream broke off a response');
      const tail = streamErrorTail(this.#contentType, `ollana: ${this.#opts.upstreamName} broke off the response: ${err.message}`);
      if (tail !== null && !this.#res.writableEnded) this.#res.end(tail);
      else this.#res.destroy(err);
    }
    this.#finish();
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#opts.stats.inFlight -= 1;
    this.#opts.stats.done(process.hrtime.bigint() - this.#started);
    if (!this.#req.complete) this.#req.resume(); // let an unread request body drain instead of stalling the socket
    this.#opts.onFinish();
  }
}
