/**
 * A deadline for keep-alive connections idle between requests that bytes alone do not move.
 *
 * Node closes an idle keep-alive connection with a socket timeout (keepAliveTimeout plus a second),
 * and every byte that arrives restarts that timeout. Its parser skips empty lines (CRLF) before a
 * request line without starting a request, so the header timeout, which counts from a request's
 * first byte, never starts either: a client sending "\r\n" every few seconds holds the connection
 * forever. Here a connection that has had no request for keepAliveTimeout + 1 s + the header timeout
 * since its last answer is closed, whatever it sent meanwhile: a request begun before the keep-alive
 * deadline still has its whole header time, so only clients that never send one are cut.
 */
import type { Server } from 'node:http';
import type { Socket } from 'node:net';

/** Node's keepAliveTimeoutBuffer: its socket timeout is keepAliveTimeout plus this. */
const NODE_KEEP_ALIVE_BUFFER_MS = 1_000;
const SWEEP_EVERY_MS = 1_000;

interface Idle {
  /** Requests so far on the connection (their headers complete). */
  requests: number;
  /** The count seen when it was last found idle, and since when (0: busy at the last sweep). */
  requestsThen: number;
  idleSince: number;
  /** bytesRead then: whether it sent anything while idle. */
  bytesThen: number;
}

export class IdleWatch {
  readonly #deadlineMs: number;
  /** Called for a connection past the deadline that sent bytes while idle; it must close it. */
  readonly #onTrickle: (socket: Socket, idleMs: number) => void;
  readonly #sockets = new Map<Socket, Idle>();
  #timer: NodeJS.Timeout | null = null;

  constructor(
    keepAliveTimeoutMs: number,
    headersTimeoutMs: number,
    onTrickle: (socket: Socket, idleMs: number) => void,
  ) {
    this.#deadlineMs = keepAliveTimeoutMs + NODE_KEEP_ALIVE_BUFFER_MS + headersTimeoutMs;
    this.#onTrickle = onTrickle;
  }

  /** Follows the connections of `server` from their first request. */
  attach(server: Server): void {
    server.on('request', (req) => {
      const socket = req.socket as Socket;
      let idle = this.#sockets.get(socket);
      if (idle === undefined) {
        idle = { requests: 0, requestsThen: 0, idleSince: 0, bytesThen: 0 };
        this.#sockets.set(socket, idle);
        socket.once('close', () => this.#sockets.delete(socket));
      }
      idle.requests += 1;
    });
    this.#timer = setInterval(() => this.#sweep(), SWEEP_EVERY_MS).unref();
  }

  #sweep(): void {
    const now = Date.now();
    for (const [socket, idle] of this.#sockets) {
      // Node keeps the response under way on the socket: set from a request's complete headers until
      // its answer is written. While it is, the connection is busy, however long the answer takes.
      if ((socket as { _httpMessage?: unknown })._httpMessage != null) {
        idle.idleSince = 0;
        continue;
      }
      if (idle.idleSince === 0 || idle.requests !== idle.requestsThen) {
        idle.idleSince = now;
        idle.requestsThen = idle.requests;
        idle.bytesThen = socket.bytesRead;
        continue;
      }
      if (now - idle.idleSince < this.#deadlineMs) continue;
      this.#sockets.delete(socket);
      // Silent ones are Node's own keep-alive timeout's to close; this is only a backstop.
      if (socket.bytesRead > idle.bytesThen) this.#onTrickle(socket, now - idle.idleSince);
      else socket.destroy();
    }
  }

  stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
  }
}
