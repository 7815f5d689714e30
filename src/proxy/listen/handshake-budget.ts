/**
 * The connections of one worker still in their handshake (TLS not done; on a plain listener, not one
 * byte read), oldest first: they may hold only a share of the connection cap, and are the first
 * closed to make room (connection-guard.ts admits and refuses).
 */
import type { Socket } from 'node:net';
import type { Kind } from './guard-replies.ts';
import type { RefusalLog } from './refusal-log.ts';

/**
 * Share of --max-connections that connections still in their handshake (TLS not done; on a plain
 * listener, not one byte sent) may hold. A flood of connections that never send a ClientHello then
 * churns within this share while the rest of the cap stays for clients that talk.
 */
const HANDSHAKE_SHARE = 4;
/** The handshake budget of one worker is never below this. */
const MIN_HANDSHAKE_BUDGET = 16;

export class HandshakeBudget {
  /** Each with its idempotent release from the cap. */
  readonly #waiting = new Map<Socket, () => void>();
  /** How many this worker holds at most (a share of the node's cap, split over the workers). */
  readonly #budget: number;
  /** --max-connections, for the log line. */
  readonly #max: number;
  readonly #refusals: RefusalLog<Kind>;
  /** Whether the listener speaks TLS: established then means handshake done (established()), else a byte read. */
  #tls = false;

  constructor(maxConnections: number, workers: number, refusals: RefusalLog<Kind>) {
    this.#max = maxConnections;
    this.#refusals = refusals;
    this.#budget =
      maxConnections > 0
        ? Math.max(MIN_HANDSHAKE_BUDGET, Math.floor(maxConnections / HANDSHAKE_SHARE / workers))
        : Number.POSITIVE_INFINITY;
  }

  set tls(tls: boolean) {
    this.#tls = tls;
  }

  /** Whether the budget is full, once the connections that turned out established are forgotten. */
  full(): boolean {
    return this.#waiting.size >= this.#budget && this.#pruneEstablished() >= this.#budget;
  }

  /** An admitted connection starts its handshake; `release` frees its place in the cap (idempotent). */
  track(socket: Socket, release: () => void): void {
    this.#waiting.set(socket, release);
  }

  /**
   * A connection finished its TLS handshake or closed: it no longer counts against the budget and is
   * not closed to make room for others' handshakes.
   */
  established(socket: Socket): void {
    this.#waiting.delete(socket);
  }

  /**
   * On a plain listener, forgets the connections that have sent a byte (they are established; no
   * event says so, so they are found here, each once). Returns how many remain in their handshake.
   */
  #pruneEstablished(): number {
    if (!this.#tls) for (const socket of this.#waiting.keys()) if (socket.bytesRead > 0) this.#waiting.delete(socket);
    return this.#waiting.size;
  }

  /**
   * Closes one connection still in its handshake to make room for `arriving`: the oldest that sent
   * nothing at all (no ClientHello, no request byte), else the oldest. On a plain listener a
   * connection that sent a byte is established, and is dropped from the list on the way. Returns
   * whether one was closed (its place in the cap is free at once).
   */
  evict(arriving: Socket): boolean {
    let victim: Socket | null = null;
    for (const socket of this.#waiting.keys()) {
      if (socket.bytesRead === 0) {
        victim = socket;
        break;
      }
      if (!this.#tls) this.#waiting.delete(socket);
      else victim ??= socket;
    }
    if (victim === null) return false;
    const release = this.#waiting.get(victim)!;
    this.#waiting.delete(victim);
    release();
    victim.destroy();
    const from = arriving.remoteAddress ?? 'unknown';
    const budget = this.#budget;
    this.#refusals.note(
      'handshake-evicted',
      { remote: victim.remoteAddress ?? 'unknown', arriving: from, budget },
      `closed a connection from ${victim.remoteAddress ?? 'unknown'} that had not completed its ${this.#tls ? 'TLS handshake' : 'first request'} ` +
        `to make room for one from ${from}: this worker lets ${budget} connections wait in their handshake ` +
        `(1/${HANDSHAKE_SHARE} of --max-connections ${this.#max}, split over the workers)`,
    );
    return true;
  }
}
