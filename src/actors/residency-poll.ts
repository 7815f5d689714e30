/**
 * Which models one server node has loaded (its GET /api/ps), read by a client node on a short
 * interval, so that requests go to a server where their model is warm (route/placement.ts).
 *
 * Why polling rather than a digest in the server's announce: /api/ps is the server's Ollama's own
 * answer (a model loaded by a request that did not come through ollana, or unloaded when its
 * keep_alive ran out, shows at the next poll), it needs no change to the signed LAN datagram that
 * every node version must agree on, and one small GET per second on the kept pinned connection costs
 * the server nothing measurable. The proxy workers also read /api/ps of a server themselves right
 * after a request of theirs that can change it (route/residency.ts), so the interval only bounds how
 * stale the picture is for changes no request of this node caused.
 */
import { unrefTimer, type Clock, type TimerHandle } from '../clock.ts';

/** How often a server's loaded models are read. */
export const PS_INTERVAL_MS = 1_000;
/** After failed reads the wait doubles, up to this. */
const PS_MAX_INTERVAL_MS = 16_000;

export class ResidencyPoll {
  readonly #clock: Clock;
  readonly #read: () => Promise<string[]>;
  readonly #onChange: () => void;
  #timer: TimerHandle | null = null;
  #failures = 0;
  #stopped = false;
  /** Models loaded at the last successful read, sorted; empty until one succeeded. */
  loaded: string[] = [];
  /**
   * When the read that found `loaded` as it is started (ms since the epoch, Date.now()); 0: never.
   * It moves only when the list changes, so an unchanged list does not republish the route table.
   */
  at = 0;

  /** `read` fetches the server's /api/ps model names; `onChange` is told when the list changed. */
  constructor(clock: Clock, read: () => Promise<string[]>, onChange: () => void) {
    this.#clock = clock;
    this.#read = read;
    this.#onChange = onChange;
    this.#schedule(0);
  }

  stop(): void {
    this.#stopped = true;
    if (this.#timer !== null) this.#clock.clearTimeout(this.#timer);
    this.#timer = null;
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = null;
      void this.#poll();
    }, ms);
    unrefTimer(this.#timer);
  }

  async #poll(): Promise<void> {
    const started = Date.now();
    try {
      const names = [...new Set(await this.#read())].sort();
      this.#failures = 0;
      if (this.#stopped) return;
      const changed = names.length !== this.loaded.length || names.some((n, i) => n !== this.loaded[i]);
      if (!changed) return;
      this.loaded = names;
      this.at = started;
      this.#onChange();
    } catch {
      // The model list fetch of the same server logs why a server cannot be read; this stays quiet.
      this.#failures += 1;
    } finally {
      this.#schedule(Math.min(PS_MAX_INTERVAL_MS, PS_INTERVAL_MS * 2 ** this.#failures));
    }
  }
}
