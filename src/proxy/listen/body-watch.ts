/**
 * An idle timeout on request bodies node:http reads (a client node's listener, and the requests a
 * server node's fast front hands to node:http). Node times request headers, not bodies: a client
 * that sends one byte of its body every few seconds would hold its connection, and the upstream
 * request it opened, for as long as it likes. Here a body that has sent nothing for
 * requestBodyTimeoutMs, while ollana was ready to read it, is timed out; one that waits on ollana
 * (paused by backpressure from a slow upstream, or data not read yet) is not.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

const SWEEP_EVERY_MS = 1_000;

interface Body {
  readonly res: ServerResponse;
  bytes: number;
  since: number;
}

/** Whether the request announced a body (Content-Length other than 0, or Transfer-Encoding). */
export function declaresBody(req: IncomingMessage): boolean {
  const length = req.headers['content-length'];
  return length !== undefined ? length !== '0' : req.headers['transfer-encoding'] !== undefined;
}

/** Whether ollana, not the client, is why no body bytes are read now. */
function waitingOnUs(req: IncomingMessage): boolean {
  const socket = req.socket as Socket | null;
  return req.readableLength > 0 || req.isPaused() || socket === null || socket.isPaused();
}

export class BodyWatch {
  readonly #timeoutMs: number;
  readonly #onTimeout: (req: IncomingMessage, res: ServerResponse, idleMs: number) => void;
  readonly #bodies = new Map<IncomingMessage, Body>();
  #timer: NodeJS.Timeout | null = null;

  /** @param onTimeout answers (or cuts) the request whose body sent nothing for timeoutMs; 0 = no limit */
  constructor(timeoutMs: number, onTimeout: (req: IncomingMessage, res: ServerResponse, idleMs: number) => void) {
    this.#timeoutMs = timeoutMs;
    this.#onTimeout = onTimeout;
  }

  attach(server: Server): void {
    server.on('request', (req: IncomingMessage, res: ServerResponse) => {
      if (req.complete || !declaresBody(req)) return;
      this.#bodies.set(req, { res, bytes: req.socket.bytesRead, since: Date.now() });
      const done = (): void => {
        this.#bodies.delete(req);
      };
      req.once('end', done);
      req.once('close', done);
      this.#timer ??= setInterval(() => this.#sweep(), SWEEP_EVERY_MS).unref();
    });
  }

  #sweep(): void {
    if (this.#bodies.size === 0) {
      clearInterval(this.#timer!);
      this.#timer = null;
      return;
    }
    const now = Date.now();
    for (const [req, body] of this.#bodies) {
      const bytes = req.socket?.bytesRead ?? body.bytes;
      if (bytes !== body.bytes || waitingOnUs(req)) {
        body.bytes = bytes;
        body.since = now;
      } else if (this.#timeoutMs > 0 && now - body.since >= this.#timeoutMs) {
        this.#bodies.delete(req);
        this.#onTimeout(req, body.res, now - body.since);
      }
    }
  }

  /** Cuts the requests whose body has sent nothing for at least `minMs` (room at the connection limit). */
  closeStalled(minMs: number): number {
    const now = Date.now();
    let closed = 0;
    for (const [req, body] of this.#bodies) {
      if (now - body.since < minMs || waitingOnUs(req) || (req.socket?.bytesRead ?? body.bytes) !== body.bytes)
        continue;
      this.#bodies.delete(req);
      req.socket?.destroy();
      closed += 1;
    }
    return closed;
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
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
