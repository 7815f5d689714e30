/**
 * Running out of file descriptors (EMFILE: this process's open-file limit; ENFILE: the system's).
 * Every socket, thread and file read takes one, and a flood of client connections can use them all;
 * then upstream connects, thread starts and even reads of /proc fail. None of that is a bug to crash
 * or give up on: the node refuses what it cannot serve, says once what happened and what to do, and
 * carries on when descriptors are free again.
 */
import { readFileSync } from 'node:fs';

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

/** What happened and what to do, for log lines and error messages. */
export function outOfFilesAdvice(): string {
  return `this process is out of file descriptors${LIMIT === null ? '' : ` (the limit is ${LIMIT})`}; ` +
    'raise the open-file limit (ulimit -n, or LimitNOFILE= for a systemd service) or lower --max-connections';
}

/** Resident set size in bytes, or 0 when unreadable: out of descriptors, process.memoryUsage.rss() throws. */
export function rssBytes(): number {
  try {
    return process.memoryUsage.rss();
  } catch {
    return 0;
  }
}
