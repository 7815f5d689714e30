/**
 * The server node's fast front: the first reader of every connection a server node's proxy worker
 * accepts (after the TLS handshake and the trust gate, on the LAN port). Requests for the local
 * Ollama are parsed by Node's own HTTP parser and relayed without node:http's request and response
 * objects (connection.ts), which is most of what a proxy worker spends per request and per streamed
 * token (bench/README.md, "Tuning"). Anything else (ollana's own paths, browsers' CORS, HTTP/1.0,
 * `Expect`, a refused Host, a client node's requests) is handed to node:http with its bytes, so every
 * rule of the node:http path holds for it unchanged.
 *
 * The front also keeps node:http's clocks for its connections: one sweep a second (as node:http's
 * connectionsCheckingInterval) applies the header timeout and the keep-alive timeout, on the
 * injected clock (tests drive it with a fake one).
 */
import type { Socket } from 'node:net';
import { type Clock, systemClock, type TimerHandle, unrefTimer } from '../../clock.ts';
import type { ConnectionGuard } from '../listen/connection-guard.ts';
import type { RelayOptions } from '../relay/relay-contract.ts';
import type { StatsCollector } from '../stats.ts';
import { FastConnection, type FrontContext } from './connection.ts';

export interface FrontSettings {
  readonly maxHeaderBytes: number;
  readonly smallBody: number;
  readonly headersTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly requestBodyTimeoutMs: number;
  readonly hostCheck: boolean;
}

export class FastFront {
  readonly #connections = new Set<FastConnection>();
  readonly #ctx: FrontContext;
  readonly #sweepMs: number;
  readonly #clock: Clock;
  #timer: TimerHandle | null = null;

  /**
   * @param target the relay to the local Ollama now, or null while this node is not a server node
   *   with one local Ollama (then every connection goes to node:http at once)
   */
  constructor(
    settings: FrontSettings,
    guard: ConnectionGuard,
    stats: StatsCollector,
    target: () => RelayOptions | null,
    draining: () => boolean,
    clock: Clock = systemClock,
  ) {
    this.#clock = clock;
    this.#ctx = {
      ...settings,
      guard,
      stats,
      target,
      draining,
      clock,
      closed: (c) => {
        this.#connections.delete(c);
      },
    };
    this.#sweepMs = Math.max(100, Math.min(1_000, Math.floor(settings.headersTimeoutMs / 4) || 1_000));
  }

  /** Takes a new connection; `handOff` gives it to node:http (now, or at one of its requests). */
  adopt(socket: Socket, handOff: () => void): void {
    if (this.#ctx.target() === null) {
      handOff();
      return;
    }
    this.#connections.add(new FastConnection(socket, this.#ctx, handOff));
    if (this.#timer === null) {
      this.#timer = this.#clock.setInterval(() => this.#sweep(), this.#sweepMs);
      unrefTimer(this.#timer);
    }
  }

  #sweep(): void {
    if (this.#connections.size === 0) {
      this.#clock.clearInterval(this.#timer);
      this.#timer = null;
      return;
    }
    const now = this.#clock.now();
    for (const c of this.#connections) c.check(now);
  }

  /** Connections the front holds now. */
  get size(): number {
    return this.#connections.size;
  }

  /** Closes the connections with no request in progress (drain, or room at the connection limit). */
  closeIdle(): void {
    for (const c of this.#connections) if (c.idle) c.close();
  }

  /** Closes the connections whose request body has sent nothing for `minMs` (room at the connection limit). */
  closeStalled(minMs: number): void {
    const now = this.#clock.now();
    for (const c of this.#connections) if (c.stalledFor(now, minMs)) c.close();
  }

  /** Closes every connection, ending the requests in progress (the end of a drain). */
  closeAll(): void {
    for (const c of this.#connections) c.close();
  }

  stop(): void {
    if (this.#timer !== null) this.#clock.clearInterval(this.#timer);
    this.#timer = null;
  }
}
