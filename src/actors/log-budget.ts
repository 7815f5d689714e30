/**
 * At most `perWindow` lines of one kind at their level per window; the rest at debug, then one line
 * saying how many were left out. Lines whose number a LAN host decides (a node seen, gone, failing)
 * go through one, so a flood of made-up nodes cannot flood the log.
 */
import type { Logger } from '../log.ts';

export class LogBudget {
  readonly #log: Logger;
  readonly #perWindow: number;
  readonly #windowMs: number;
  readonly #what: string;
  #windowAt = -Infinity;
  #logged = 0;
  #skipped = 0;

  /** `what` names the lines in the summary, e.g. "server node lines (found, gone)". */
  constructor(log: Logger, what: string, perWindow = 16, windowMs = 60_000) {
    this.#log = log;
    this.#what = what;
    this.#perWindow = perWindow;
    this.#windowMs = windowMs;
  }

  /** Logs at `level` while the budget lasts, else at debug; `now` is the caller's clock's time. */
  line(level: 'info' | 'warn', fields: Record<string, unknown>, msg: string, now: number): void {
    if (now - this.#windowAt >= this.#windowMs) {
      if (this.#skipped > 0) {
        this.#log.info(
          { skipped: this.#skipped },
          `${this.#skipped} more ${this.#what} in the last ${Math.round(this.#windowMs / 1000)} s, at debug level only`,
        );
      }
      this.#windowAt = now;
      this.#logged = 0;
      this.#skipped = 0;
    }
    if (this.#logged < this.#perWindow) {
      this.#logged++;
      this.#log[level](fields, msg);
    } else {
      this.#skipped++;
      this.#log.debug(fields, msg);
    }
  }
}
