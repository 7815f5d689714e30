/**
 * The relay's client side for a request node:http parsed (an IncomingMessage and its
 * ServerResponse): the requests the server node's front hands to node:http (fast/front.ts), such as
 * those of a browser (Origin) or with `Expect: 100-continue`, when they go to the local Ollama.
 */
import { deviceOf } from '../../metrics/device-label.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { upstreamRequestHeaders } from '../http/headers.ts';
import { responseErrorSender } from '../route/upstream-failure.ts';
import type { BodyFraming } from './framing.ts';
import type { BodyStream, Downstream } from './relay-contract.ts';
import { lastChunkWith } from '../http/http1.ts';

/** Whether the relay can carry this request: HTTP/1.1 (a 1.0 client cannot take chunked framing). */
export function relayable(req: IncomingMessage): boolean {
  return req.httpVersionMajor === 1 && req.httpVersionMinor === 1;
}

/** An IncomingMessage as the relay's body stream. */
class RequestBody implements BodyStream {
  readonly #req: IncomingMessage;
  #data: ((chunk: Buffer) => void) | null = null;
  #end: (() => void) | null = null;

  constructor(req: IncomingMessage) {
    this.#req = req;
  }

  get length(): string | undefined {
    return this.#req.headers['content-length'];
  }

  start(data: (chunk: Buffer) => void, end: () => void): void {
    this.#data = data;
    this.#end = end;
    this.#req.on('data', data);
    this.#req.on('end', end);
  }

  pause(): void {
    this.#req.pause();
  }

  resume(): void {
    this.#req.resume();
  }

  stop(): void {
    if (this.#data !== null) this.#req.off('data', this.#data);
    if (this.#end !== null) this.#req.off('end', this.#end);
    this.#data = null;
    this.#end = null;
  }
}

export class NodeDownstream implements Downstream {
  readonly method: string;
  readonly url: string;
  readonly headers: readonly string[];
  readonly body: Buffer | BodyStream | null;
  readonly device: string;
  readonly #req: IncomingMessage;
  readonly #res: ServerResponse;
  readonly #broken: (socket: IncomingMessage['socket']) => boolean;
  #framing: BodyFraming | null = null;
  /** The response head, until the first write hands it to node:http. */
  #head: { status: number; headers: string[] } | null = null;

  constructor(
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer | IncomingMessage | null,
    broken: (socket: IncomingMessage['socket']) => boolean,
  ) {
    this.#req = req;
    this.#res = res;
    this.#broken = broken;
    this.method = req.method ?? 'GET';
    this.url = req.url ?? '/';
    this.device = deviceOf(req.socket);
    this.headers = upstreamRequestHeaders(req, 'http');
    this.body = body === null || Buffer.isBuffer(body) ? body : new RequestBody(body);
  }

  sendError(status: number, message: string, extra: string[]): void {
    responseErrorSender(this.#res, this.url)(status, message, extra);
  }

  broken(): boolean {
    return this.#broken(this.#req.socket);
  }

  respond(status: number, headers: string[], framing: BodyFraming): void {
    this.#framing = framing;
    // Kept until the first write: writeHead fixes the head in node:http, and retract() must be able
    // to take it back.
    this.#head = { status, headers };
  }

  /** Hands the head given to respond() to node:http, once. */
  #writeHead(): void {
    const head = this.#head;
    if (head === null) return;
    this.#head = null;
    if (this.#framing === 'chunked') {
      head.headers.push('transfer-encoding', 'chunked');
      this.#res.writeHead(head.status, head.headers);
      // The body's bytes carry the upstream's chunk framing already: Node must not frame them again.
      this.#res.chunkedEncoding = false;
    } else {
      this.#res.writeHead(head.status, head.headers);
    }
  }

  retract(): boolean {
    if (this.#head === null) return false;
    this.#head = null;
    this.#framing = null;
    return true;
  }

  flushHead(): void {
    this.#writeHead();
    const res = this.#res;
    if (!res.headersSent && !res.writableEnded) res.flushHeaders();
  }

  write(bytes: Buffer): boolean {
    this.#writeHead();
    return this.#res.write(bytes);
  }

  /** node:http may hold any write (corked until the next tick, or queued): always taken as held. */
  holds(): boolean {
    return true;
  }

  onceDrain(resume: () => void): void {
    this.#res.once('drain', resume);
  }

  offDrain(resume: () => void): void {
    this.#res.off('drain', resume);
  }

  end(): void {
    this.#writeHead();
    this.#res.end();
  }

  breakOff(tail: string | null, atChunkStart: boolean, err: Error): void {
    this.#writeHead();
    const res = this.#res;
    // 'chunked': Node passes the upstream's framing through, so ollana's line must be a chunk of
    // its own; 'close': Node frames the body itself and the line is one more write.
    if (tail !== null && !res.writableEnded && this.#framing === 'chunked' && atChunkStart) {
      res.end(lastChunkWith(tail));
    } else if (tail !== null && !res.writableEnded && this.#framing === 'close') {
      res.end(tail);
    } else {
      res.destroy(err);
    }
  }

  finished(): void {
    if (!this.#req.complete) this.#req.resume(); // let an unread request body drain instead of stalling the socket
  }
}
