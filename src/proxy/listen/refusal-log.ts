/**
 * One log line per kind of refusal, not one per refused request or connection: the first refusal of
 * a kind is logged at once, the next ones in the same window are only counted, and the window's end
 * logs how many there were. A flood of bad requests or connections then costs a few lines a minute
 * and still says how big it was.
 */
import type { Logger } from '../../log.ts';

export interface RefusalKind {
  readonly level: 'info' | 'warn' | 'error';
  /** Plural noun phrase for the summary line: "malformed requests refused with 400". */
  readonly what: string;
}

interface Window {
  /** refusals counted since the window opened, past the one that was logged */
  suppressed: number;
  /** fields of the latest suppressed refusal, shown in the summary */
  last: Record<string, unknown> | null;
  timer: NodeJS.Timeout;
}

export class RefusalLog<K extends string> {
  readonly #log: Logger;
  readonly #kinds: Readonly<Record<K, RefusalKind>>;
  readonly #windowMs: number;
  readonly #open = new Map<K, Window>();

  constructor(log: Logger, kinds: Readonly<Record<K, RefusalKind>>, windowMs = 10_000) {
    this.#log = log;
    this.#kinds = kinds;
    this.#windowMs = windowMs;
  }

  /** Logs `msg` with `fields` unless a refusal of this kind was logged less than a window ago. */
  note(kind: K, fields: Record<string, unknown>, msg: string): void {
    const open = this.#open.get(kind);
    if (open !== undefined) {
      open.suppressed += 1;
      open.last = fields;
      return;
    }
    this.#log[this.#kinds[kind].level]({ refusal: kind, ...fields }, msg);
    this.#openWindow(kind);
  }

  #openWindow(kind: K): void {
    // Unref'd: a pending summary must not keep a draining worker alive.
    const timer = setTimeout(() => this.#closeWindow(kind), this.#windowMs).unref();
    this.#open.set(kind, { suppressed: 0, last: null, timer });
  }

  #closeWindow(kind: K): void {
    const open = this.#open.get(kind);
    if (open === undefined) return;
    this.#open.delete(kind);
    if (open.suppressed === 0) return;
    this.#summary(kind, open);
    // Still under way: the next summary comes one window later, not on the next refusal.
    this.#openWindow(kind);
  }

  #summary(kind: K, open: Window): void {
    const { level, what } = this.#kinds[kind];
    this.#log[level](
      { refusal: kind, count: open.suppressed, last: open.last },
      `${open.suppressed} more ${what} in the last ${this.#windowMs / 1000} s`,
    );
  }

  /** Logs the pending summaries now and closes every window (on drain). */
  flush(): void {
    for (const [kind, open] of [...this.#open]) {
      clearTimeout(open.timer);
      this.#open.delete(kind);
      if (open.suppressed > 0) this.#summary(kind, open);
    }
  }
}
