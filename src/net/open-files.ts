/**
 * Running out of file descriptors (EMFILE: this process's open-file limit; ENFILE: the system's).
 * Every socket, thread and file read takes one, and a flood of client connections can use them all;
 * then upstream connects, thread starts and even reads of /proc fail. None of that is a bug to crash
 * or give up on: the node refuses what it cannot serve, says once what happened and what to do, and
 * carries on when descriptors are free again.
 */
import { closeSync, openSync, readFileSync } from 'node:fs';
import type { Logger } from '../log.ts';

/** The soft open-file limit, read when this module loads (a thread's start), while a descriptor is free. */
const LIMIT = softLimit();

function softLimit(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(readFileSync('/proc/self/limits', 'utf8'));
    return m === null ? null : Number(m[1]);
  } catch {
    return null; // not Linux, or already out of descriptors
  }
}

/** How Node words it where no code is kept: "Worker initialization failure: EMFILE", "...: too many open files." */
const WORDING = /\bE[MN]FILE\b|too many open files/i;

/** Whether `err`, or an error it was caused by, is running out of file descriptors. */
export function outOfFiles(err: unknown): boolean {
  let e = err;
  for (let depth = 0; depth < 4 && typeof e === 'object' && e !== null; depth++) {
    const { code, message } = e as { code?: unknown; message?: unknown };
    if (code === 'EMFILE' || code === 'ENFILE') return true;
    if (typeof message === 'string' && WORDING.test(message)) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

const WHAT = (): string => `this process is out of file descriptors${LIMIT === null ? '' : ` (the limit is ${LIMIT})`}`;
const TO_DO = 'raise the open-file limit (ulimit -n, or LimitNOFILE= for a systemd service) or lower --max-connections';

/** What happened and what to do, for log lines and error messages. */
export function outOfFilesAdvice(): string {
  return `${WHAT()}; ${TO_DO}`;
}

/**
 * Notices running out of descriptors where nothing fails loudly: a connection the kernel queued but
 * the process cannot accept is closed by libuv unanswered, without an error reaching JavaScript.
 * check() opens /dev/null, the cheapest descriptor there is: one line when that first fails, one when
 * it works again.
 */
export class FdWatch {
  readonly #log: Logger;
  #out = false;

  constructor(log: Logger) {
    this.#log = log;
  }

  check(): void {
    let fd: number;
    try {
      fd = openSync('/dev/null', 'r');
    } catch (err) {
      if (this.#out || !outOfFiles(err)) return;
      this.#out = true;
      this.#log.error(
        { code: (err as { code?: string }).code },
        `${WHAT()}: new client connections are closed unanswered, and requests that need a new upstream connection get 503; ${TO_DO}`,
      );
      return;
    }
    closeSync(fd);
    if (!this.#out) return;
    this.#out = false;
    this.#log.info('file descriptors are available again: new client connections are accepted');
  }
}

/** Resident set size in bytes, or 0 when unreadable: out of descriptors, process.memoryUsage.rss() throws. */
export function rssBytes(): number {
  try {
    return process.memoryUsage.rss();
  } catch {
    return 0;
  }
}
