/**
 * The supervisor's periodic tasks (Ollama health, load refresh, file descriptor check): each runs
 * `ms` after the previous run finished, on the injected clock, until stop(). A task that throws is
 * logged and runs again.
 */
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import { unref } from './supervisor-deps.ts';

export class Periodic {
  readonly #clock: Clock;
  readonly #log: Logger;
  #timers: unknown[] = [];
  #stopped = false;

  constructor(clock: Clock, log: Logger) {
    this.#clock = clock;
    this.#log = log;
  }

  every(ms: number, fn: () => Promise<void> | void): void {
    const loop = (): void => {
      const t = this.#clock.setTimeout(() => {
        void Promise.resolve(fn())
          .catch((err: unknown) => this.#log.error({ err }, 'periodic task failed'))
          .finally(() => {
            if (!this.#stopped) loop();
          });
      }, ms);
      unref(t);
      this.#timers.push(t);
      if (this.#timers.length > 16) this.#timers = this.#timers.slice(-8);
    };
    loop();
  }

  stop(): void {
    this.#stopped = true;
    for (const t of this.#timers) this.#clock.clearTimeout(t);
  }
}
