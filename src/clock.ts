/**
 * The one clock every timed part of ollana takes as a dependency (discovery, election, pending
 * replies, the proxy pool, the supervisor, the front), so tests drive time with
 * test/helpers/fake-clock.ts instead of waiting for it.
 */

/** An opaque timer handle, as returned by {@link Clock.setTimeout} and {@link Clock.setInterval}. */
export type TimerHandle = unknown;

export interface Clock {
  /** Milliseconds since the epoch, as Date.now(). */
  now(): number;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(handle: TimerHandle): void;
  setInterval(fn: () => void, ms: number): TimerHandle;
  clearInterval(handle: TimerHandle): void;
}

/** Real time. Timers are unref'd by their owners where they must not keep a thread alive. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
  setInterval: (fn, ms) => setInterval(fn, ms),
  clearInterval: (handle) => clearInterval(handle as NodeJS.Timeout),
};

/** Lets a real timer not keep its thread alive (a fake clock's handle has nothing to unref). */
export function unrefTimer(handle: TimerHandle): void {
  if (typeof handle === 'object' && handle !== null && 'unref' in handle && typeof handle.unref === 'function')
    handle.unref();
}
