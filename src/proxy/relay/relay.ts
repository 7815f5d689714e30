/**
 * One request relayed by a server node to its local Ollama over a plain keep-alive TCP connection,
 * without an HTTP client library in between. The upstream request is written as one head plus the
 * body, and the response's bytes go to the client as they came, its own framing (Content-Length or
 * chunk sizes) included. Only the response head is parsed and rewritten (hop-by-hop and CORS
 * headers); the body is scanned just enough to know where it ends (framing.ts). Per streamed token
 * that is one read and one write, where undici + node:http decode the chunk and encode it again.
 *
 * The client's side is a Downstream (relay-contract.ts): a request node:http parsed
 * (node-downstream.ts, for requests the server node's own front hands to node:http) or one the front
 * parsed itself (fast/). The relay neither knows nor cares which.
 *
 * When the client goes away the upstream connection is closed at once, which is how Ollama learns
 * to stop generating. A connection is reused only after an exchange that ended cleanly.
 */
import type { Socket } from 'node:net';
import type { RequestMeter } from '../../metrics/worker-metrics.ts';
import { answerFailure, answerOutOfFiles, type FailedExchange } from '../route/upstream-failure.ts';
import { relayed } from './read-buffers.ts';
import { writeHeadAndBody } from '../http/one-write.ts';
import { CRLF, LAST_CHUNK } from '../http/http1.ts';
import { UpstreamError } from '../../errors.ts';
import { BodyEnd, FramingError, parseResponseHead, type ResponseHead } from './framing.ts';
import type { UpstreamUser } from './upstream-sockets.ts';
import type { BodyStream, Downstream, HeaderFilter, RelayOptions } from './relay-contract.ts';
import { admitted, type Pass } from '../../sched/gate.ts';

const PAYLOAD_METHODS = new Set(['POST', 'PUT', 'PATCH']);

export class Relay implements UpstreamUser {
  readonly #d: Downstream;
  readonly #o: RelayOptions;
  readonly #filter: HeaderFilter;
  readonly #started = process.hrtime.bigint();
  readonly #meter: RequestMeter;
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
  /** Bad framing was found where the bytes relayed so far end between two chunks. */
  #atBoundary = false;

  /** The client could not take more: the upstream connection is paused until it drains. */
  #onResDrain: (() => void) | null = null;
  /** The request body is paused until the upstream connection drains. */
  #bodyPaused = false;
  /** A socket timeout was set on the connection (only when a headers or body timeout is). */
  #timed = false;
  /** The downstream still references bytes of the current read (see upstreamData). */
  #held = false;
  /** Its slot of the model at Ollama, or its place in the queue for one (undefined: not asked yet). */
  #pass: Pass | null | undefined;

  constructor(downstream: Downstream, options: RelayOptions, filter: HeaderFilter) {
    this.#d = downstream;
    this.#o = options;
    this.#filter = filter;
    options.stats.requests += 1;
    options.stats.inFlight += 1;
    this.#meter = options.stats.metrics.begin(downstream.url, downstream.device, null);
    if (Buffer.isBuffer(downstream.body)) this.#meter.requestBody(downstream.body);
  }

  /** Takes an upstream connection and sends the request (`fresh`: not a kept one). */
  start(fresh = false): void {
    if (this.#finished) return;
    if (this.#pass === undefined) {
      this.#pass = this.#o.admission?.admit(this.#d) ?? null;
      if (
        !admitted(
          this.#pass,
          () => this.start(fresh),
          (status, message, extra) => this.#refuse(status, message, extra),
        )
      )
        return;
    }
    this.#cancel = this.#o.sockets.acquire(this, fresh);
  }

  // --- the upstream connection's events (UpstreamSockets passes them to the exchange holding it) ---

  upstreamReady(err: Error | null, socket: Socket | null, reused: boolean): void {
    this.#cancel = null;
    if (err !== null) {
      this.#fail(err);
      return;
    }
    this.#begin(socket!, reused);
  }

  upstreamData(chunk: Buffer): boolean {
    this.#held = false;
    this.#data(chunk);
    return this.#held;
  }

  upstreamEnded(): void {
    this.#upstreamEnded();
  }

  upstreamError(err: Error): void {
    this.#fail(err);
  }

  upstreamTimeout(): void {
    this.#fail(
      this.#head === null
        ? new UpstreamError('OLN_UPSTREAM_HEADERS_TIMEOUT', 'no response headers within the headers timeout')
        : new UpstreamError('OLN_UPSTREAM_BODY_TIMEOUT', 'no response data within the body timeout'),
    );
  }

  upstreamDrain(): void {
    if (!this.#bodyPaused) return;
    this.#bodyPaused = false;
    (this.#d.body as BodyStream).resume();
  }

  #begin(socket: Socket, reused: boolean): void {
    if (this.#finished || this.#d.broken()) {
      // The client left or was refused while this request waited: the connection was never used.
      this.#o.sockets.release(socket, true);
      if (!this.#finished) this.#finish();
      return;
    }
    this.#socket = socket;
    this.#reused = reused;
    if (this.#o.headersTimeoutMs > 0) {
      socket.setTimeout(this.#o.headersTimeoutMs);
      this.#timed = true;
    }
    // A connection handed over straight from an exchange that had paused it for a slow client.
    socket.resume();
    this.#writeRequest(socket);
  }

  #writeRequest(socket: Socket): void {
    const d = this.#d;
    const method = d.method;
    const headers = d.headers;
    let head = `${method} ${this.#o.basePath}${d.url} HTTP/1.1${CRLF}host: ${this.#o.sockets.hostHeader}${CRLF}`;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      // The relay states the body's framing itself, below.
      if (name.length === 14 && name.toLowerCase() === 'content-length') continue;
      head += `${name}: ${headers[i + 1]!}${CRLF}`;
    }
    const body = d.body;
    if (body === null) {
      socket.write(PAYLOAD_METHODS.has(method) ? `${head}content-length: 0${CRLF}${CRLF}` : head + CRLF, 'latin1');
      this.#requestSent = true;
      return;
    }
    if (Buffer.isBuffer(body)) {
      writeHeadAndBody(socket, `${head}content-length: ${body.length}${CRLF}${CRLF}`, body);
      this.#o.stats.bytesIn += body.length;
      this.#requestSent = true;
      return;
    }
    socket.cork();
    socket.write(
      body.length !== undefined
        ? `${head}content-length: ${body.length}${CRLF}${CRLF}`
        : `${head}transfer-encoding: chunked${CRLF}${CRLF}`,
      'latin1',
    );
    body.start(
      (chunk) => this.#sendBody(chunk),
      () => this.#bodyDone(),
    );
    socket.uncork();
  }

  /** A piece of a streamed request body: passed on, chunk-framed when the client's was chunked. */
  #sendBody(chunk: Buffer): void {
    const socket = this.#socket;
    const body = this.#d.body as BodyStream;
    if (socket === null || this.#finished) return;
    this.#o.stats.bytesIn += chunk.length;
    this.#meter.requestBody(chunk);
    relayed(chunk.length);
    let ok: boolean;
    if (body.length !== undefined) {
      ok = socket.write(chunk);
    } else {
      socket.cork();
      socket.write(chunk.length.toString(16) + CRLF, 'latin1');
      socket.write(chunk);
      ok = socket.write(CRLF, 'latin1');
      socket.uncork();
    }
    if (!ok && !this.#bodyPaused) {
      this.#bodyPaused = true;
      body.pause();
    }
  }

  #bodyDone(): void {
    const socket = this.#socket;
    if (socket === null || this.#finished) return;
    if ((this.#d.body as BodyStream).length === undefined) socket.write(LAST_CHUNK, 'latin1');
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
        const head = parseResponseHead(buf, this.#d.method);
        // Kept past this read: a copy, since the read's buffer is the connection's to reuse.
        if (head === null) {
          this.#pending = buf === chunk ? Buffer.from(buf) : buf;
          return;
        }
        this.#pending = null;
        if (head.status === 101)
          throw new FramingError('switched-protocols', 'the upstream switched protocols, which ollana does not relay');
        if (head.status < 200) {
          // 100 Continue and the like: the client's Expect was answered by ollana already.
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
        if (buf.length > from) this.#write(from === 0 ? buf : buf.subarray(from));
        else this.#flushSoon();
        return;
      }
      if (end > from) this.#write(buf.subarray(from, end));
      // Bytes after the response: the upstream sent what was not asked for; the connection is not reused.
      this.#complete(end === buf.length);
    } catch (err) {
      // Bad chunk framing in this read: the whole chunks before it go out, then the error line
      // between chunks, where the client can read it.
      const boundary = this.#bodyEnd?.boundary ?? -1;
      if (err instanceof FramingError && this.#head !== null && boundary >= from) {
        if (boundary > from) this.#write(buf.subarray(from, boundary));
        this.#atBoundary = true;
      }
      this.#fail(err as Error);
    }
  }

  #respond(head: ResponseHead): void {
    const out = this.#filter(head.raw, this.#o.dropHeaders);
    if (this.#o.extraHeaders !== null) out.push(...this.#o.extraHeaders);
    if (this.#pass && this.#pass.waitedMs >= 0) out.push('x-ollana-queue-wait-ms', String(this.#pass.waitedMs));
    for (let i = 0; i < head.raw.length; i += 2) {
      if (head.raw[i]!.length === 12 && head.raw[i]!.toLowerCase() === 'content-type')
        this.#contentType = head.raw[i + 1];
    }
    this.#d.respond(head.status, out, head.framing);
    // From here on the status is out: a failure can only end or cut the stream.
    this.#head = head;
    this.#bodyEnd = new BodyEnd(head.framing, head.length);
    if (this.#o.bodyTimeoutMs > 0 || this.#timed) {
      this.#socket?.setTimeout(this.#o.bodyTimeoutMs);
      this.#timed = this.#o.bodyTimeoutMs > 0;
    }
    this.#o.stats.status(head.status);
    const ns = process.hrtime.bigint() - this.#started;
    this.#o.stats.firstByte(ns);
    this.#meter.responded(head.status, ns);
  }

  /**
   * Ollama sends the head with the first token, so it usually leaves with that token's write. If no
   * body byte came with it, the head goes alone on the next turn so a waiting client sees it.
   */
  #flushSoon(): void {
    setImmediate(() => {
      if (!this.#finished) this.#d.flushHead();
    });
  }

  #write(bytes: Buffer): void {
    this.#o.stats.bytesOut += bytes.length;
    this.#meter.responseBody(bytes);
    relayed(bytes.length);
    const ok = this.#d.write(bytes);
    if (this.#d.holds()) this.#held = true;
    if (!ok && this.#socket !== null) {
      this.#socket.pause();
      this.#onResDrain ??= () => {
        this.#socket?.resume();
      };
      this.#d.onceDrain(this.#onResDrain);
    }
  }

  #complete(clean: boolean): void {
    const socket = this.#detach();
    this.#d.end();
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
    this.#fail(new UpstreamError('OLN_UPSTREAM_CLOSED', 'other side closed'));
  }

  #fail(err: Error): void {
    if (this.#finished) return;
    const socket = this.#detach();
    socket?.destroy();
    // A kept connection the upstream closed just as this request went out: nothing was received,
    // and a request whose body is still at hand goes once more on a new connection.
    const body = this.#d.body;
    const replayable = body === null || Buffer.isBuffer(body);
    if (
      this.#reused &&
      !this.#retried &&
      this.#received === 0 &&
      replayable &&
      !(err instanceof FramingError) &&
      (err as { code?: string }).code !== 'OLN_UPSTREAM_HEADERS_TIMEOUT'
    ) {
      this.#retried = true;
      this.#reused = false;
      this.#requestSent = false;
      this.#o.log.debug({ err }, 'kept upstream connection was closed; sending the request on a new one');
      this.#meter.retry();
      this.start(true);
      return;
    }
    const failed: FailedExchange = {
      path: this.#d.url,
      sendError: (status, message, extra) => this.#d.sendError(status, message, extra),
      stats: this.#o.stats,
      log: this.#o.log,
      upstream: this.#o.upstream,
      extraHeaders: this.#o.extraHeaders,
      outOfFiles: this.#o.outOfFiles,
    };
    this.#meter.failed();
    const responded = this.#head !== null && !this.#d.retract();
    if (responded || !answerOutOfFiles(failed, err)) {
      answerFailure(failed, err, responded, this.#contentType, (tail) =>
        this.#d.breakOff(tail, this.#atBoundary || (this.#bodyEnd?.atChunkStart ?? false), err),
      );
    }
    this.#finish();
  }

  /** The client went away or broke its request: the upstream connection is closed (Ollama stops). */
  clientGone(): void {
    if (this.#finished) return;
    this.#o.stats.clientAborts += 1;
    this.#meter.aborted();
    this.#cancel?.();
    this.#detach()?.destroy();
    this.#finish();
  }

  /** The scheduler turned the request away before it went out (503, sched/gate.ts). */
  #refuse(status: number, message: string, extra: string[]): void {
    this.#o.stats.status(status);
    this.#meter.responded(status, process.hrtime.bigint() - this.#started);
    this.#d.sendError(status, message, extra);
    this.#finish();
  }

  /** Whether the response has begun (its status went to the client or is on its way). */
  get responded(): boolean {
    return this.#head !== null;
  }

  /** Takes this exchange's listeners off its connection and returns it (null if it had none). */
  #detach(): Socket | null {
    const socket = this.#socket;
    this.#socket = null;
    if (this.#onResDrain !== null) this.#d.offDrain(this.#onResDrain);
    const body = this.#d.body;
    if (body !== null && !Buffer.isBuffer(body)) body.stop();
    if (socket === null) return null;
    this.#o.sockets.disown(socket);
    if (this.#timed) socket.setTimeout(0);
    return socket;
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#pass?.done();
    this.#o.stats.inFlight -= 1;
    const ns = process.hrtime.bigint() - this.#started;
    this.#o.stats.done(ns);
    this.#meter.end(ns);
    this.#d.finished();
    this.#o.onFinish();
  }
}
