/**
 * Keep-alive TCP connections from one proxy worker to one plain-HTTP upstream (the server node's
 * local Ollama). A request takes the most recently used idle connection (the others age out after
 * the keep-alive time), opens a new one below the limit, or waits in line for one; a connection
 * comes back only when its exchange ended cleanly. Idle connections that close, error or send
 * anything are dropped.
 */
import { connect, type Socket } from 'node:net';

export interface UpstreamSocketsOptions {
  readonly host: string;
  readonly port: number;
  /** The Host header requests to it carry (host:port as in its URL). */
  readonly hostHeader: string;
  /** Most connections open at once (connecting, busy and idle). */
  readonly max: number;
  readonly keepAliveMs: number;
  readonly connectTimeoutMs: number;
}

/** A connection handed to a request; `reused` when it carried an earlier exchange. */
export type Take = (err: Error | null, socket: Socket | null, reused: boolean) => void;

const noop = (): void => undefined;

export class UpstreamSockets {
  readonly #o: UpstreamSocketsOptions;
  readonly #idle: Socket[] = [];
  readonly #waiting: Take[] = [];
  #open = 0;
  #destroyed: Error | null = null;
  readonly #onIdleEvent = new WeakMap<Socket, () => void>();

  constructor(options: UpstreamSocketsOptions) {
    this.#o = options;
  }

  get hostHeader(): string {
    return this.#o.hostHeader;
  }

  get open(): number {
    return this.#open;
  }

  get idle(): number {
    return this.#idle.length;
  }

  /**
   * Hands a connection to `take`, at once when one is idle or may be opened, else when one comes
   * back. `fresh` skips idle connections (a retry after a reused one turned out closed). Returns a
   * function that gives up the place in line.
   */
  acquire(take: Take, fresh = false): () => void {
    if (this.#destroyed !== null) {
      take(this.#destroyed, null, false);
      return noop;
    }
    if (!fresh) {
      const idle = this.#popIdle();
      if (idle !== null) {
        take(null, idle, true);
        return noop;
      }
    }
    if (this.#open < this.#o.max) {
      take(null, this.#connect(), false);
      return noop;
    }
    if (fresh && this.#idle.length > 0) {
      this.#idle.shift()!.destroy();
    }
    this.#waiting.push(take);
    return () => {
      const i = this.#waiting.indexOf(take);
      if (i >= 0) this.#waiting.splice(i, 1);
    };
  }

  /**
   * Takes back a connection after its exchange; `reusable` only if the exchange ended cleanly.
   * `upstreamIdleMs`: how long the upstream said it keeps an idle connection; this side lets it go a
   * second earlier, so a request never goes out on a connection the upstream is closing.
   */
  release(socket: Socket, reusable: boolean, upstreamIdleMs: number | null = null): void {
    if (!reusable || socket.destroyed || this.#destroyed !== null) {
      socket.destroy();
      return;
    }
    const next = this.#waiting.shift();
    if (next !== undefined) {
      next(null, socket, true);
      return;
    }
    const drop = (): void => {
      const i = this.#idle.indexOf(socket);
      if (i >= 0) this.#idle.splice(i, 1);
      socket.destroy();
    };
    this.#onIdleEvent.set(socket, drop);
    socket.on('data', drop); // an idle connection has nothing to say
    socket.on('end', drop);
    socket.on('timeout', drop);
    const idleMs = upstreamIdleMs === null ? this.#o.keepAliveMs : Math.min(this.#o.keepAliveMs, upstreamIdleMs - 1_000);
    if (idleMs <= 0) {
      drop();
      return;
    }
    socket.setTimeout(idleMs);
    socket.resume();
    this.#idle.push(socket);
  }

  /** Closes every connection and fails every request in line. */
  destroy(err: Error): void {
    this.#destroyed = err;
    for (const s of this.#idle.splice(0)) s.destroy();
    for (const take of this.#waiting.splice(0)) take(err, null, false);
  }

  #popIdle(): Socket | null {
    for (let s = this.#idle.pop(); s !== undefined; s = this.#idle.pop()) {
      const drop = this.#onIdleEvent.get(s)!;
      s.off('data', drop);
      s.off('end', drop);
      s.off('timeout', drop);
      s.setTimeout(0);
      if (!s.destroyed && s.readable && s.writable) return s;
      s.destroy();
    }
    return null;
  }

  #connect(): Socket {
    this.#open += 1;
    const socket = connect({ host: this.#o.host, port: this.#o.port, noDelay: true, keepAlive: true });
    // The exchange listens for errors while it holds the connection; this one keeps an error on an
    // idle or abandoned connection from becoming an uncaught exception.
    socket.on('error', noop);
    const timer = setTimeout(() => {
      const err = Object.assign(new Error(`connect timeout after ${this.#o.connectTimeoutMs} ms`), { code: 'UND_ERR_CONNECT_TIMEOUT' });
      socket.destroy(err);
    }, this.#o.connectTimeoutMs);
    socket.once('connect', () => clearTimeout(timer));
    socket.once('close', () => {
      clearTimeout(timer);
      this.#open -= 1;
      // A place opened up: the first request in line gets a new connection.
      if (this.#destroyed === null && this.#waiting.length > 0 && this.#open < this.#o.max) {
        this.#waiting.shift()!(null, this.#connect(), false);
      }
    });
    return socket;
  }
}
