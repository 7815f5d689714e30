/**
 * One request relayed by a server node to its local Ollama over a plain keep-alive TCP connection,
 * without an HTTP client library in between. node:http still parses the client's request (with the
 * connection guard's rules); the upstream request is written as one head plus the body, and the
 * response's bytes go to the client as they came, its own framing (Content-Length or chunk sizes)
 * included. Only the response head is parsed and rewritten (hop-by-hop and CORS headers); the body
 * is scanned just enough to know where it ends (framing.ts). Per streamed token that is one read and
 * one write, where undici + node:http decode the chunk and encode it again.
 *
 * When the client goes away the upstream connection is closed at once, which is how Ollama learns
 * to stop generating. A connection is reused only after an exchange that ended cleanly.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { Logger } from '../../log.ts';
import type { StatsCollector } from '../stats.ts';
import { downstreamResponseHeaders, upstreamRequestHeaders } from '../headers.ts';
import { answerFailure, answerOutOfFiles, type FailedExchange } from '../upstream-failure.ts';
import { BodyEnd, FramingError, parseResponseHead, type ResponseHead } from './framing.ts';
import type { UpstreamSockets } from './upstream-sockets.ts';

export interface RelayOptions {
  readonly stats: StatsCollector;
  readonly log: Logger;
  readonly sockets: UpstreamSockets;
  /** A path prefix of the upstream's URL ('' for none). */
  readonly basePath: string;
  /** Human name of the upstream for error messages. */
  readonly upstream: string;
  /** Time for the response head after the request went out, and between body reads; 0 = none. */
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  /** Headers to add to the response (CORS), or null. */
  readonly extraHeaders: readonly string[] | null;
  /** Response headers to drop from the upstream's because ollana sets them (lowercase), or null. */
  readonly dropHeaders: ReadonlySet<string> | null;
  readonly onFinish: () => void;
  /** Whether the client's connection was refused after this request's head (connection-guard.ts). */
  readonly clientBroken: (socket: Duplex) => boolean;
  readonly outOfFiles: (upstream: string, err: Error) => void;
}

/** Whether the relay can carry this request: HTTP/1.1 (a 1.0 client cannot take chunked framing). */
export function relayable(req: IncomingMessage): boolean {
  return req.httpVersionMajor === 1 && req.httpVersionMinor === 1;
}

const PAYLOAD_METHODS = new Set(['POST', 'PUT', 'PATCH']);
const CRLF = '\r\n';
const LAST_CHUNK = '0\r\n\r\n';

function socketError(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

export class Relay {
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #body: Buffer | IncomingMessage | null;
  readonly #o: RelayOptions;
  readonly #started = process.hrtime.bigint();
  #socket: Socket | null = null;
  #reused = false;
  #retried = false;
  #cancel: (() => void) | null = null;
  /** Response bytes before the head was complete. */
  #pending: Buffer | null = null;
  #head: ResponseHead | null = null;
  #bodyEnd: BodyEnd | null = null;
  #received = 0;
  #requestSent = false;
  #finished = false;
  #contentType: string | undefined;

  readonly #onData = (chunk: Buffer): void => this.#data(chunk);
  readonly #onEnd = (): void => this.#upstreamEnded();
  readonly #onError = (err: Error): void => this.#fail(err);
  readonly #onTimeout = (): void => {
    this.#fail(this.#head === null
      ? socketError('no response headers within the headers timeout', 'UND_ERR_HEADERS_TIMEOUT')
      : socketError('no response data within the body timeout', 'UND_ERR_BODY_TIMEOUT'));
  };
  readonly #onResDrain = (): void => { this.#socket?.resume(); };
  readonly #onBodyData = (chunk: Buffer): void => this.#sendBody(chunk);
  readonly #onBodyEnd = (): void => this.#bodyDone();
  readonly #onSocketDrain = (): void => { this.#req.resume(); };

  constructor(req: IncomingMessage, res: ServerResponse, body: Buffer | IncomingMessage | null, options: RelayOptions) {
    this.#req = req;
    this.#res = res;
    this.#body = body;
    this.#o = options;
    options.stats.requests += 1;
    options.stats.inFlight += 1;
    res.once('close', () => this.#clientClosed());
  }

  /**
   * Sends the request once the current read is parsed: node:http hands over a request as soon as its
   * head is parsed (from native code, which runs the tick queue after each callback) and parses the
   * rest of the same read afterwards, so bad bytes behind the head (broken chunk framing, a smuggled
   * request) reach the connection guard before anything goes out. setImmediate runs after that.
   */
  start(fresh = false): void {
    setImmediate(() => {
      if (this.#finished) return;
      this.#cancel = this.#o.sockets.acquire(this.#take, fresh);
    });
  }

  readonly #take = (err: Error | null, socket: Socket | null, reused: boolean): void => {
    this.#cancel = null;
    if (err !== null) { this.#fail(err); return; }
    this.#begin(socket!, reused);
  };

  #begin(socket: Socket, reused: boolean): void {
    if (this.#finished || this.#o.clientBroken(this.#req.socket)) {
      // The client left or was refused while this request waited: the connection was never used.
      this.#o.sockets.release(socket, true);
      if (!this.#finished) this.#finish();
      return;
    }
    this.#socket = socket;
    this.#reused = reused;
    socket.on('data', this.#onData);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onEnd);
    socket.on('error', this.#onError);
    socket.on('timeout', this.#onTimeout);
    socket.setTimeout(this.#o.headersTimeoutMs);
    // A connection handed over straight from an exchange that had paused it for a slow client.
    socket.resume();
    this.#writeRequest(socket);
  }

  #writeRequest(socket: Socket): void {
    const req = this.#req;
    const method = req.method ?? 'GET';
    const headers = upstreamRequestHeaders(req, 'http');
    let head = `${method} ${this.#o.basePath}${req.url ?? '/'} HTTP/1.1${CRLF}host: ${this.#o.sockets.hostHeader}${CRLF}`;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      // The relay states the body's framing itself, below.
      if (name.length === 14 && name.toLowerCase() === 'content-length') continue;
      head += `${name}: ${headers[i + 1]!}${CRLF}`;
    }
    const body = this.#body;
    socket.cork();
    if (body === null) {
      socket.write(PAYLOAD_METHODS.has(method) ? `${head}content-length: 0${CRLF}${CRLF}` : head + CRLF, 'latin1');
      this.#requestSent = true;
    } else if (Buffer.isBuffer(body)) {
      socket.write(`${head}content-length: ${body.length}${CRLF}${CRLF}`, 'latin1');
      socket.write(body);
      this.#o.stats.bytesIn += body.length;
      this.#requestSent = true;
    } else {
      const length = body.headers['content-length'];
      socket.write(length !== undefined ? `${head}content-length: ${length}${CRLF}${CRLF}` : `${head}transfer-encoding: chunked${CRLF}${CRLF}`, 'latin1');
      body.on('data', this.#onBodyData);
      body.on('end', this.#onBodyEnd);
    }
    socket.uncork();
  }

  /** A piece of a streamed request body: passed on, chunk-framed when the client's was chunked. */
  #sendBody(chunk: Buffer): void {
    const socket = this.#socket;
    if (socket === null || this.#finished) return;
    this.#o.stats.bytesIn += chunk.length;
    let ok: boolean;
    if (this.#req.headers['content-length'] !== undefined) {
      ok = socket.write(chunk);
    } else {
      socket.cork();
      socket.write(chunk.length.toString(16) + CRLF, 'latin1');
      socket.write(chunk);
      ok = socket.write(CRLF, 'latin1');
      socket.uncork();
    }
    if (!ok) {
      this.#req.pause();
      socket.once('drain', this.#onSocketDrain);
    }
  }

  #bodyDone(): void {
    const socket = this.#socket;
    if (socket === null || this.#finished) return;
    if (this.#req.headers['content-length'] === undefined) socket.write(LAST_CHUNK, 'latin1');
    this.#requestSent = true;
  }

  #data(chunk: Buffer): void {
    if (this.#finished) return;
    this.#received += chunk.length;
    let from = 0;
    let buf = chunk;
    try {
      while (this.#head === null) {
        buf = this.#pending === null ? chunk : Buffer.concat([this.#pending, chunk]);
        const head = parseResponseHead(buf, this.#req.method ?? 'GET');
        if (head === null) { this.#pending = buf; return; }
        this.#pending = null;
        if (head.status === 101) throw new FramingError('the upstream switched protocols, which ollana does not relay');
        if (head.status < 200) {
          // 100 Continue and the like: Node already answered the client's Expect itself.
          chunk = buf.subarray(head.end);
          if (chunk.length === 0) return;
          continue;
        }
        this.#respond(head);
        from = head.end;
      }
      const bodyEnd = this.#bodyEnd!;
      const end = bodyEnd.feed(buf, from);
      if (end < 0) {
        this.#write(from === 0 ? buf : buf.subarray(from));
        return;
      }
      if (end > from) this.#write(buf.subarray(from, end));
      // Bytes after the response: the upstream sent what was not asked for; the connection is not reused.
      this.#complete(end === buf.length);
    } catch (err) {
      this.#fail(err as Error);
    }
  }

  #respond(head: ResponseHead): void {
    const out = downstreamResponseHeaders(head.raw, this.#o.dropHeaders);
    if (this.#o.extraHeaders !== null) out.push(...this.#o.extraHeaders);
    for (let i = 0; i < head.raw.length; i += 2) {
      if (head.raw[i]!.length === 12 && head.raw[i]!.toLowerCase() === 'content-type') this.#contentType = head.raw[i + 1];
    }
    const res = this.#res;
    if (head.framing === 'chunked') {
      out.push('transfer-encoding', 'chunked');
      res.writeHead(head.status, out);
      // The body's bytes carry the upstream's chunk framing already: Node must not frame them again.
      res.chunkedEncoding = false;
    } else {
      res.writeHead(head.status, out);
    }
    // From here on the status is out: a failure can only end or cut the stream.
    this.#head = head;
    this.#bodyEnd = new BodyEnd(head.framing, head.length);
    this.#socket?.setTimeout(this.#o.bodyTimeoutMs);
    this.#o.stats.status(head.status);
    this.#o.stats.firstByte(process.hrtime.bigint() - this.#started);
    // Ollama sends the head with the first token, so it usually leaves with that token's write. If no
    // body byte came with it, flush the head alone on the next turn so a waiting client sees it.
    setImmediate(() => {
      if (!res.headersSent && !res.writableEnded && !this.#finished) res.flushHeaders();
    });
  }

  #write(bytes: Buffer): void {
    this.#o.stats.bytesOut += bytes.length;
    if (!this.#res.write(bytes)) {
      this.#socket?.pause();
      this.#res.once('drain', this.#onResDrain);
    }
  }

  #complete(clean: boolean): void {
    const socket = this.#detach();
    this.#res.end();
    this.#o.stats.completed += 1;
    const head = this.#head!;
    if (socket !== null) this.#o.sockets.release(socket, clean && this.#requestSent && head.keepAlive, head.idleMs);
    this.#finish();
  }

  #upstreamEnded(): void {
    if (this.#finished) return;
    if (this.#head !== null && this.#head.framing === 'close') {
      this.#complete(false);
      return;
    }
    this.#fail(socketError('other side closed', 'UND_ERR_SOCKET'));
  }

  #fail(err: Error): void {
    if (this.#finished) return;
    const socket = this.#detach();
    socket?.destroy();
    // A kept connection the upstream closed just as this request went out: nothing was received,
    // and a request whose body is still at hand goes once more on a new connection.
    const replayable = this.#body === null || Buffer.isBuffer(this.#body);
    if (this.#reused && !this.#retried && this.#received === 0 && replayable && !(err instanceof FramingError) &&
      (err as { code?: string }).code !== 'UND_ERR_HEADERS_TIMEOUT') {
      this.#retried = true;
      this.#reused = false;
      this.#requestSent = false;
      this.#o.log.debug({ err }, 'kept upstream connection was closed; sending the request on a new one');
      this.start(true);
      return;
    }
    const failed: FailedExchange = {
      req: this.#req, res: this.#res, stats: this.#o.stats, log: this.#o.log,
      upstream: this.#o.upstream, extraHeaders: this.#o.extraHeaders, outOfFiles: this.#o.outOfFiles,
    };
    const responded = this.#head !== null;
    if (responded || !answerOutOfFiles(failed, err)) {
      answerFailure(failed, err, responded, this.#contentType, (tail) => this.#endWith(tail, err));
    }
    this.#finish();
  }

  /**
   * Ends a broken response with an error line where the framing allows one: between chunks (most
   * streams break there, Ollama writes a token per chunk) or in a body that ends with the connection
   * anyway. Elsewhere the client's connection is cut, so it sees the response truncated.
   */
  #endWith(tail: string | null, err: Error): void {
    const res = this.#res;
    const framing = this.#head?.framing;
    if (tail !== null && !res.writableEnded && framing === 'chunked' && this.#bodyEnd!.atChunkStart) {
      res.end(`${Buffer.byteLength(tail).toString(16)}${CRLF}${tail}${CRLF}${LAST_CHUNK}`);
    } else if (tail !== null && !res.writableEnded && framing === 'close') {
      res.end(tail);
    } else {
      res.destroy(err);
    }
  }

  #clientClosed(): void {
    if (this.#finished) return;
    this.#o.stats.clientAborts += 1;
    this.#cancel?.();
    // Closing the upstream connection is what tells Ollama to stop generating.
    this.#detach()?.destroy();
    this.#finish();
  }

  /** Takes this exchange's listeners off its connection and returns it (null if it had none). */
  #detach(): Socket | null {
    const socket = this.#socket;
    this.#socket = null;
    this.#res.off('drain', this.#onResDrain);
    const body = this.#body;
    if (body !== null && !Buffer.isBuffer(body)) {
      body.off('data', this.#onBodyData);
      body.off('end', this.#onBodyEnd);
    }
    if (socket === null) return null;
    socket.off('data', this.#onData);
    socket.off('end', this.#onEnd);
    socket.off('close', this.#onEnd);
    socket.off('error', this.#onError);
    socket.off('timeout', this.#onTimeout);
    socket.off('drain', this.#onSocketDrain);
    socket.setTimeout(0);
    return socket;
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#o.stats.inFlight -= 1;
    this.#o.stats.done(process.hrtime.bigint() - this.#started);
    if (!this.#req.complete) this.#req.resume(); // let an unread request body drain instead of stalling the socket
    this.#o.onFinish();
  }
}
