/**
 * Keep-alive TCP connections from one proxy worker to one plain-HTTP upstream (the server node's
 * local Ollama). A request takes the most recently used idle connection (the others age out after
 * the keep-alive time), opens a new one below the limit, or waits in line for one; a connection
 * comes back only when its exchange ended cleanly. Idle connections that close, error or send
 * anything are dropped.
 *
 * Each connection gets its listeners once, when it is opened, and passes its events to the
 * exchange that holds it (an UpstreamUser), or drops itself when it is idle: handing a connection
 * from one request to the next adds and removes nothing and arms no timer. An idle connection's
 * deadline is checked when a request would take it and by a sweep that closes the ones nobody took.
 */
import { connect, type Socket } from 'node:net';
import { UpstreamError } from '../../errors.ts';

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

/** The exchange holding a connection, told of everything that happens on it. */
export interface UpstreamUser {
  /** The connection asked for (`reused`: it carried an earlier exchange), or why there is none. */
  upstreamReady(err: Error | null, socket: Socket | null, reused: boolean): void;
  /**
   * Bytes read, in the connection's own read buffer (valid until this returns). Returns true when
   * something still references them (a write queued for a slow client): the connection then
   * reads into a new buffer and leaves this one to its holder.
   */
  upstreamData(chunk: Buffer): boolean;
  /** The upstream ended or closed the connection. */
  upstreamEnded(): void;
  upstreamError(err: Error): void;
  upstreamTimeout(): void;
  upstreamDrain(): void;
}

interface Conn {
  user: UpstreamUser | null;
  /** While idle: when it must be let go (ms). */
  idleUntil: number;
  /** Where the next read goes. */
  buffer: Buffer;
}

const OWNER = Symbol('ollana.upstream');
type Owned = Socket & { [OWNER]: Conn };
const noop = (): void => undefined;
/** How often idle connections past their deadline are closed when nobody takes them. */
const SWEEP_MS = 1_000;
/**
 * Each connection reads into a buffer of its own (net's `onread`), reused from one read to the next,
 * rather than a new 64 KiB buffer per read: per streamed token that saves an allocation, a free and
 * Node's stream machinery. Each open connection holds its buffer, idle ones too; a read larger than
 * this takes several (the A/B and its costs: bench/README.md, "Tuning").
 */
export const READ_BUFFER = 32 * 1024;

export class UpstreamSockets {
  readonly #o: UpstreamSocketsOptions;
  readonly #idle: Owned[] = [];
  readonly #waiting: UpstreamUser[] = [];
  #open = 0;
  #destroyed: Error | null = null;
  #sweep: NodeJS.Timeout | null = null;

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
   * Hands a connection to `user`, at once when one is idle or may be opened, else when one comes
   * back. `fresh` skips idle connections (a retry after a reused one turned out closed). Returns a
   * function that gives up the place in line.
   */
  acquire(user: UpstreamUser, fresh = false): () => void {
    if (this.#destroyed !== null) {
      user.upstreamReady(this.#destroyed, null, false);
      return noop;
    }
    if (!fresh) {
      const idle = this.#popIdle();
      if (idle !== null) {
        idle[OWNER].user = user;
        user.upstreamReady(null, idle, true);
        return noop;
      }
    }
    if (this.#open < this.#o.max) {
      user.upstreamReady(null, this.#connect(user), false);
      return noop;
    }
    if (fresh && this.#idle.length > 0) {
      this.#idle.shift()!.destroy();
    }
    this.#waiting.push(user);
    return () => {
      const i = this.#waiting.indexOf(user);
      if (i >= 0) this.#waiting.splice(i, 1);
    };
  }

  /** The exchange stops hearing of the connection (it is about to release or destroy it). */
  disown(socket: Socket): void {
    (socket as Owned)[OWNER].user = null;
  }

  /**
   * Takes back a connection after its exchange; `reusable` only if the exchange ended cleanly.
   * `upstreamIdleMs`: how long the upstream said it keeps an idle connection; this side lets it go a
   * second earlier, so a request never goes out on a connection the upstream is closing.
   */
  release(socket: Socket, reusable: boolean, upstreamIdleMs: number | null = null): void {
    const owned = socket as Owned;
    owned[OWNER].user = null;
    if (!reusable || socket.destroyed || this.#destroyed !== null) {
      socket.destroy();
      return;
    }
    const next = this.#waiting.shift();
    if (next !== undefined) {
      owned[OWNER].user = next;
      next.upstreamReady(null, socket, true);
      return;
    }
    const idleMs =
      upstreamIdleMs === null ? this.#o.keepAliveMs : Math.min(this.#o.keepAliveMs, upstreamIdleMs - 1_000);
    if (idleMs <= 0) {
      socket.destroy();
      return;
    }
    owned[OWNER].idleUntil = Date.now() + idleMs;
    // A connection handed over from an exchange that had paused it for a slow client.
    socket.resume();
    this.#idle.push(owned);
    this.#sweep ??= setInterval(() => this.#closeExpired(), SWEEP_MS).unref();
  }

  /** Closes every connection and fails every request in line. */
  destroy(err: Error): void {
    this.#destroyed = err;
    if (this.#sweep !== null) clearInterval(this.#sweep);
    this.#sweep = null;
    for (const s of this.#idle.splice(0)) s.destroy();
    for (const user of this.#waiting.splice(0)) user.upstreamReady(err, null, false);
  }

  #popIdle(): Owned | null {
    const now = Date.now();
    for (let s = this.#idle.pop(); s !== undefined; s = this.#idle.pop()) {
      if (!s.destroyed && s.readable && s.writable && s[OWNER].idleUntil > now) return s;
      s.destroy();
    }
    return null;
  }

  #closeExpired(): void {
    const now = Date.now();
    for (let i = this.#idle.length - 1; i >= 0; i--) {
      const s = this.#idle[i]!;
      if (s[OWNER].idleUntil <= now) {
        this.#idle.splice(i, 1);
        s.destroy();
      }
    }
    if (this.#idle.length === 0 && this.#sweep !== null) {
      clearInterval(this.#sweep);
      this.#sweep = null;
    }
  }

  /** An idle connection that says or does anything is of no more use. */
  #dropIdle(socket: Owned): void {
    const i = this.#idle.indexOf(socket);
    if (i >= 0) this.#idle.splice(i, 1);
    socket.destroy();
  }

  #connect(user: UpstreamUser): Socket {
    this.#open += 1;
    const conn: Conn = { user, idleUntil: 0, buffer: Buffer.allocUnsafe(READ_BUFFER) };
    const socket = connect({
      host: this.#o.host,
      port: this.#o.port,
      noDelay: true,
      keepAlive: true,
      onread: {
        // Asked for the buffer of each next read, right after the callback below.
        buffer: () => conn.buffer,
        callback: (nread: number, buffer: Uint8Array) => {
          const bytes = (buffer as Buffer).subarray(0, nread);
          if (conn.user === null) this.#dropIdle(socket);
          else if (conn.user.upstreamData(bytes)) conn.buffer = Buffer.allocUnsafe(READ_BUFFER);
          return true;
        },
      },
    }) as Owned;
    socket[OWNER] = conn;
    socket.on('end', () => {
      if (conn.user !== null) conn.user.upstreamEnded();
      else this.#dropIdle(socket);
    });
    // An error on an idle or abandoned connection must not become an uncaught exception.
    socket.on('error', (err: Error) => conn.user?.upstreamError(err));
    socket.on('timeout', () => conn.user?.upstreamTimeout());
    socket.on('drain', () => conn.user?.upstreamDrain());
    const timer = setTimeout(() => {
      const err = new UpstreamError(
        'OLN_UPSTREAM_CONNECT_TIMEOUT',
        `connect timeout after ${this.#o.connectTimeoutMs} ms`,
      );
      socket.destroy(err);
    }, this.#o.connectTimeoutMs);
    socket.once('connect', () => clearTimeout(timer));
    socket.once('close', () => {
      clearTimeout(timer);
      this.#open -= 1;
      const held = conn.user;
      conn.user = null;
      if (held !== null) held.upstreamEnded();
      else {
        const i = this.#idle.indexOf(socket);
        if (i >= 0) this.#idle.splice(i, 1);
      }
      // A place opened up: the first request in line gets a new connection.
      if (this.#destroyed === null && this.#waiting.length > 0 && this.#open < this.#o.max) {
        const next = this.#waiting.shift()!;
        next.upstreamReady(null, this.#connect(next), false);
      }
    });
    return socket;
  }
}
