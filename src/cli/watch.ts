/**
 * `ollana status --watch`: draws a text, then every interval clears the terminal and draws it again,
 * until Ctrl-C (SIGINT) or SIGTERM, which end it with status 0. A round that fails shows why and the
 * next one tries again.
 */
import { setTimeout as delay } from 'node:timers/promises';
import { errorMessage } from '../errors.ts';

/** Cursor home, then clear the screen: the next draw replaces the last in place. */
export const CLEAR = '\x1b[H\x1b[2J';

export async function watchInPlace(intervalMs: number, first: string, next: () => Promise<string>): Promise<number> {
  const stop = new AbortController();
  const end = (): void => stop.abort();
  process.once('SIGINT', end);
  process.once('SIGTERM', end);
  const every = intervalMs % 1000 === 0 ? `${intervalMs / 1000} s` : `${intervalMs} ms`;
  let text = first;
  try {
    while (!stop.signal.aborted) {
      process.stdout.write(`${CLEAR}${new Date().toISOString()}  every ${every}, Ctrl-C to stop\n\n${text}`);
      await delay(intervalMs, undefined, { signal: stop.signal }).catch(() => undefined);
      if (stop.signal.aborted) break;
      text = await next().catch((err: unknown) => `no answer: ${errorMessage(err)}\n`);
    }
  } finally {
    process.off('SIGINT', end);
    process.off('SIGTERM', end);
  }
  return 0;
}
