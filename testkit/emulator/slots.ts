/**
 * One runner's slots (OLLAMA_NUM_PARALLEL), as the weighted semaphore in ollama
 * llm/llama_server.go hands them out: at most `limit` held, the rest wait in FIFO order without
 * bound, and a waiter that gives up leaves the line at once.
 */

export interface SlotTicket {
  /** Resolves once this ticket holds a slot; rejects with `reason` if cancelled first. */
  readonly ready: Promise<void>;
  /** Frees the slot, or leaves the line; returns true when it was still waiting. Idempotent. */
  cancel(reason: Error): boolean;
}

export class SlotLine {
  /** Infinity: no limit. */
  readonly limit: number;
  #active = 0;
  readonly #waiters: Array<() => void> = [];

  constructor(limit: number) {
    this.limit = limit;
  }

  /** Slots held. */
  get active(): number {
    return this.#active;
  }

  /** Tickets waiting for a slot. */
  get waiting(): number {
    return this.#waiters.length;
  }

  take(): SlotTicket {
    let state: 'waiting' | 'holding' | 'done' = 'waiting';
    let fail: (err: Error) => void = () => {};
    let waiter: (() => void) | undefined;
    const ready = new Promise<void>((resolve, reject) => {
      fail = reject;
      const grant = (): void => {
        state = 'holding';
        this.#active++;
        resolve();
      };
      if (this.#active < this.limit && this.#waiters.length === 0) grant();
      else {
        waiter = grant;
        this.#waiters.push(grant);
      }
    });
    return {
      ready,
      cancel: (reason) => {
        if (state === 'done') return false;
        const was = state;
        state = 'done';
        if (was === 'holding') {
          this.#active--;
          this.#waiters.shift()?.();
          return false;
        }
        this.#waiters.splice(this.#waiters.indexOf(waiter!), 1);
        fail(reason);
        return true;
      },
    };
  }
}
