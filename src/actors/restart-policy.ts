/**
 * The one restart rule of ollana's threads: the singleton actors (actor-thread.ts) and each proxy
 * worker slot (proxy-pool.ts) keep one RestartPolicy per thread and ask it, at each death, whether and
 * when to start the thread again.
 */
import { systemClock, type Clock } from '../clock.ts';

export interface RestartLimits {
  /** the first retry waits this long; each further one in a row twice as long */
  readonly baseMs: number;
  /** no retry waits longer (also the pace of retries while the process is out of file descriptors) */
  readonly maxMs: number;
  /** a thread that ran this long before it died had recovered: its death starts the count afresh */
  readonly stableAfterMs: number;
  /** retries in a row after deaths within stableAfterMs of a start; the next such death gives up */
  readonly maxRetries: number;
}

export const RESTART_LIMITS: RestartLimits = Object.freeze({
  baseMs: 100,
  maxMs: 5_000,
  stableAfterMs: 10_000,
  maxRetries: 5,
});

export type RestartDecision =
  | { readonly restart: true; readonly delayMs: number; readonly failures: number }
  | { readonly restart: false; readonly failures: number };

/**
 * A death counts as a failure at start-up when it comes less than `stableAfterMs` (10 s) after the
 * thread was started, whether the thread had said it was ready or not; a thread that ran longer
 * recovered, and its death is the first of a new count. The n-th failure in a row is retried after
 * min(maxMs, baseMs * 2^(n-1)): 100, 200, 400, 800, 1600 ms. The failure after `maxRetries` (5)
 * retries, the 6th death in a row each within 10 s of its start, gives up: the caller escalates with
 * OLN_WORKER_FAILED instead of restarting into the same wall. Of the two rules it replaces (actor
 * threads counted every quick death; proxy workers only those before 'ready'), this is the stricter:
 * a worker that gets ready and then dies within seconds, again and again, is a crash loop too.
 *
 * A thread that could not start for lack of file descriptors is not a failure of the thread but the
 * machine's state: callers retry it every `maxMs` (starvedDelayMs) without calling died().
 */
export class RestartPolicy {
  readonly #clock: Clock;
  readonly #limits: RestartLimits;
  #startedAt = 0;
  #failures = 0;

  constructor(clock: Clock = systemClock, limits: RestartLimits = RESTART_LIMITS) {
    this.#clock = clock;
    this.#limits = limits;
  }

  /** Failures at start-up in a row so far. */
  get failures(): number {
    return this.#failures;
  }

  /** How long to wait before trying a thread that could not start for lack of file descriptors. */
  get starvedDelayMs(): number {
    return this.#limits.maxMs;
  }

  /** The thread was (re)started now. */
  started(): void {
    this.#startedAt = this.#clock.now();
  }

  /** The thread died now: restart it after delayMs, or give up. */
  died(): RestartDecision {
    if (this.#clock.now() - this.#startedAt >= this.#limits.stableAfterMs) this.#failures = 0;
    this.#failures += 1;
    if (this.#failures > this.#limits.maxRetries) return { restart: false, failures: this.#failures };
    return {
      restart: true,
      delayMs: Math.min(this.#limits.maxMs, this.#limits.baseMs * 2 ** (this.#failures - 1)),
      failures: this.#failures,
    };
  }
}
