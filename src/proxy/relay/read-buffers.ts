/**
 * Keeps a proxy worker's memory flat while it relays large bodies (a 1 GiB blob upload, a large
 * download).
 *
 * Every socket read is a new buffer (up to 64 KiB) outside the JavaScript heap, dead as soon as it
 * is written on. V8 frees dead buffers only when it collects their small heap objects, and it starts
 * a collection for the sake of outside memory only after some 64 MB more of it, so a large transfer
 * piles up read buffers waiting for a full collection. Here a young-generation collection (a
 * scavenge, well under a millisecond with few survivors) runs after every SCAVENGE_EVERY bytes
 * relayed, which frees them in small batches, and V8 no longer runs a full collection every few tens
 * of MB (figures: bench/README.md, "Memory" and "Tuning").
 *
 * The collection is V8's `gc()` function, taken from a context of its own with --expose-gc set just
 * for that moment (the flag is put back at once; nothing else in the thread sees a `gc`). Where that
 * is not available, relaying works as before.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Bytes relayed between two collections. */
export const SCAVENGE_EVERY = 8 * 1024 * 1024;

type Gc = (options: { type: 'minor'; execution: 'sync' }) => void;

function takeGc(): Gc | null {
  try {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('typeof gc === "function" ? gc : null') as Gc | null;
    return typeof gc === 'function' ? gc : null;
  } catch {
    return null;
  } finally {
    setFlagsFromString('--no-expose-gc');
  }
}

let gc: Gc | null | undefined;
let since = 0;

/** Counts body bytes that went through this thread; frees the dead read buffers every SCAVENGE_EVERY. */
export function relayed(bytes: number): void {
  since += bytes;
  if (since < SCAVENGE_EVERY) return;
  since = 0;
  if (gc === undefined) gc = takeGc();
  gc?.({ type: 'minor', execution: 'sync' });
}
