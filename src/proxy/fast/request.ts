/**
 * One request on a fast connection (connection.ts): the relay's downstream, its request body's
 * source, and its answer written straight to the socket.
 */
import { deviceOf } from '../../metrics/device-label.ts';
import { http } from '../../net/node-http.ts';
import type { Socket } from 'node:net';
import { errorBody } from '../http/errors-http.ts';
import { forwardedHeaders } from '../http/headers.ts';
import { CRLF, LAST_CHUNK, httpDate, lastChunkWith } from '../http/http1.ts';
import { writeHeadAndBody } from '../http/one-write.ts';
import type { BodyFraming } from '../relay/framing.ts';
import type { Relay } from '../relay/relay.ts';
import type { BodyStream, Downstream } from '../relay/relay-contract.ts';
import type { FastConnection } from './connection.ts';
import type { Facts } from './head-facts.ts';
import type { RequestHead } from './request-parser.ts';

/** While a streamed body waits for its upstream connection, at most this much of it is held. */
const MAX_QUEUED_BODY = 1024 * 1024;

/** One request on a fast connection: the relay's downstream, and its request body's source. */
export class FastRequest implements Downstream, BodyStream {
  readonly method: string;
  readonly url: string;
  readonly headers: string[];
  body: Buffer | BodyStream | null;
  readonly length: string | undefined;
  /** 'none' | 'whole' (collected, sent with the head) | 'stream' */
  readonly mode: 'none' | 'whole' | 'stream';
  readonly keepAlive: boolean;
  readonly device: string;
  relay: Relay | null = null;
  messageDone = false;
  responseDone = false;
  /** The status line went out (or is about to, with the first body bytes). */
  responding = false;
  readonly #c: FastConnection;
  readonly #socket: Socket;
  #chunks: Buffer[] | null = null;
  #size = 0;
  #onData: ((chunk: Buffer) => void) | null = null;
  #onEnd: (() => void) | null = null;
  #stopped = false;
  /** The response head, until it goes out with the first body bytes. */
  #head: string | null = null;
  /** The upstream's body ends with its connection: this side frames it in chunks. */
  #frame = false;
  #framing: BodyFraming | null = null;

  constructor(c: FastConnection, socket: Socket, head: RequestHead, f: Facts, smallBody: number) {
    this.#c = c;
    this.#socket = socket;
    this.method = head.method;
    this.url = head.url;
    this.keepAlive = head.keepAlive;
    this.device = deviceOf(socket);
    this.headers = forwardedHeaders(head.headers, socket.remoteAddress, f.host, f.connection, 'http');
    this.length = f.chunked ? undefined : f.contentLength;
    if (!f.chunked && (f.contentLength === undefined || f.contentLength === '0')) {
      this.mode = 'none';
      this.body = null;
    } else if (!f.chunked && Number(f.contentLength) <= smallBody) {
      this.mode = 'whole';
      this.body = null;
      this.#chunks = [];
    } else {
      this.mode = 'stream';
      this.body = this;
      this.#chunks = [];
    }
  }

  /** Whether the relay may start: its body is at hand, or it streams. */
  get ready(): boolean {
    return this.mode !== 'whole' || this.messageDone;
  }

  // --- the request body, from the parser ---

  bodyChunk(chunk: Buffer): void {
    if (this.#stopped || this.responseDone) return;
    if (this.#onData !== null) {
      this.#onData(chunk);
      return;
    }
    this.#chunks!.push(chunk);
    this.#size += chunk.length;
    if (this.mode === 'stream' && this.#size > MAX_QUEUED_BODY) this.#socket.pause();
  }

  complete(): void {
    this.messageDone = true;
    if (this.mode === 'whole') {
      const chunks = this.#chunks!;
      this.body = chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, this.#size);
      this.#chunks = null;
    } else if (this.#onEnd !== null && !this.#stopped) {
      this.#onEnd();
    }
  }

  // --- BodyStream: the relay reads a streamed body ---

  start(data: (chunk: Buffer) => void, end: () => void): void {
    const queued = this.#chunks!;
    this.#chunks = null;
    this.#onData = data;
    this.#onEnd = end;
    for (const chunk of queued) data(chunk);
    if (this.#size > MAX_QUEUED_BODY) this.#socket.resume();
    if (this.messageDone) end();
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  stop(): void {
    this.#stopped = true;
    this.#onData = null;
    this.#onEnd = null;
    this.#chunks = null;
  }

  // --- Downstream: the response, straight to the socket ---

  broken(): boolean {
    return this.#c.gone;
  }

  respond(status: number, headers: string[], framing: BodyFraming): void {
    this.responding = true;
    this.#framing = framing;
    this.#frame = framing === 'close';
    let head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Unknown'}${CRLF}`;
    let date = false;
    for (let i = 0; i < headers.length; i += 2) {
      const name = headers[i]!;
      if (name.length === 4 && name.toLowerCase() === 'date') date = true;
      head += `${name}: ${headers[i + 1]!}${CRLF}`;
    }
    if (!date) head += `date: ${httpDate()}${CRLF}`;
    if (framing === 'chunked' || framing === 'close') head += `transfer-encoding: chunked${CRLF}`;
    this.#head = head + this.#c.connectionHeaders(this.keepAlive) + CRLF;
  }

  retract(): boolean {
    if (this.#head === null || !this.responding) return false;
    this.#head = null;
    this.responding = false;
    this.#framing = null;
    this.#frame = false;
    return true;
  }

  flushHead(): void {
    const head = this.#head;
    if (head === null || this.#c.gone) return;
    this.#head = null;
    this.#socket.write(head, 'latin1');
  }

  write(bytes: Buffer): boolean {
    const socket = this.#socket;
    if (this.#c.gone) return true;
    const head = this.#head;
    this.#head = null;
    if (!this.#frame) return head === null ? socket.write(bytes) : writeHeadAndBody(socket, head, bytes);
    // The upstream's body ends with its connection: this side frames it in chunks.
    socket.cork();
    if (head !== null) socket.write(head, 'latin1');
    socket.write(bytes.length.toString(16) + CRLF, 'latin1');
    socket.write(bytes);
    const ok = socket.write(CRLF, 'latin1');
    socket.uncork();
    return ok;
  }

  holds(): boolean {
    // Node wrote what it could at once; anything left is queued with a reference to the bytes.
    return this.#socket.writableLength > 0;
  }

  onceDrain(resume: () => void): void {
    this.#socket.once('drain', resume);
  }

  offDrain(resume: () => void): void {
    this.#socket.off('drain', resume);
  }

  end(): void {
    this.#finishResponse(this.#frame ? LAST_CHUNK : '');
  }

  breakOff(tail: string | null, atChunkStart: boolean, err: Error): void {
    if (tail !== null && ((this.#framing === 'chunked' && atChunkStart) || this.#frame)) {
      this.#finishResponse(lastChunkWith(tail));
      return;
    }
    this.#c.cut(err);
  }

  sendError(status: number, message: string, extra: string[]): void {
    if (this.responding || this.#c.gone) return;
    this.responding = true;
    const body = errorBody(this.url, status, message);
    let head =
      `HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? 'Unknown'}${CRLF}content-type: application/json; charset=utf-8${CRLF}` +
      `content-length: ${Buffer.byteLength(body)}${CRLF}date: ${httpDate()}${CRLF}`;
    for (let i = 0; i < extra.length; i += 2) head += `${extra[i]!}: ${extra[i + 1]!}${CRLF}`;
    this.#head = head + this.#c.connectionHeaders(this.keepAlive) + CRLF;
    this.#finishResponse(body);
  }

  #finishResponse(tail: string): void {
    if (this.responseDone) return;
    this.responseDone = true;
    if (this.#c.gone) return;
    const head = this.#head;
    this.#head = null;
    if (head !== null || tail !== '') this.#socket.write(head === null ? tail : head + tail, 'latin1');
  }

  finished(): void {
    this.responseDone = true;
    this.#c.exchangeOver(this);
  }
}
