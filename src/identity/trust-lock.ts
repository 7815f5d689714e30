/**
 * One exclusive lock around every read-modify-write of devices.json and pending.json, so that two
 * `ollana device allow` at once, or a command and the running node, never lose each other's update.
 *
 * The lock is an SQLite exclusive transaction on `<data dir>/trust.lock` (node:sqlite, built into
 * Node): SQLite holds it with the operating system's file locks (fcntl on Linux and macOS, LockFileEx
 * on Windows), which the kernel releases when the holder exits or is killed. A lock file made with
 * O_EXCL would outlive a SIGKILL and need a stale-lock takeover (pid plus start time), whose own race
 * (two processes taking over the same stale lock) has no clean answer without a kernel lock. Nothing
 * is ever stored in the database: the transaction is rolled back, and with the journal in memory no
 * journal file is written, so taking the lock writes nothing to disk after the first time.
 */
import { closeSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { OllanaError, errorMessage } from '../errors.ts';
import { dirError, ensurePrivateDir } from './data-dir.ts';

export const LOCK_FILE = 'trust.lock';

/** How long an `ollana device` command waits for the lock; holders keep it for a millisecond or so. */
export const CLI_LOCK_WAIT_MS = 10_000;

function isBusy(err: unknown): boolean {
  return typeof err === 'object' && err !== null && 'errcode' in err && (err.errcode === 5 || err.errcode === 6);
}

/**
 * Runs `fn` holding the data directory's trust lock, waiting at most `waitMs` for it. `fn` must be
 * synchronous: the lock is this process's, and nothing else here may run while it is held. Throws
 * OLN_DATA_DIR_BUSY when the wait runs out, OLN_DIR_UNWRITABLE when the lock file cannot be made.
 */
export function withTrustLock<T>(dataDir: string, waitMs: number, fn: () => T): T {
  ensurePrivateDir(dataDir);
  const file = join(dataDir, LOCK_FILE);
  try {
    // Made here rather than by SQLite so that a failure carries its errno (ENOSPC, EROFS, EACCES).
    closeSync(openSync(file, 'a', 0o600));
  } catch (err) {
    throw dirError(file, 'write', err);
  }
  let opened: DatabaseSync | undefined;
  try {
    opened = new DatabaseSync(file, { timeout: waitMs });
    opened.exec('PRAGMA journal_mode = MEMORY');
    opened.exec('BEGIN EXCLUSIVE');
  } catch (err) {
    opened?.close();
    if (isBusy(err)) {
      throw new OllanaError(
        'OLN_DATA_DIR_BUSY',
        `another ollana process has held ${file} for more than ${waitMs} ms while changing devices.json or pending.json; ` +
          'try again, and if it keeps happening, look for a stuck `ollana device` command (ps) and end it',
        { cause: err, details: { file } },
      );
    }
    throw new OllanaError(
      'OLN_DIR_UNWRITABLE',
      `cannot lock ${file}: ${errorMessage(err)}; ` +
        'make sure the data directory is on a local, writable file system, or choose another with --data-dir or OLLANA_HOME',
      { cause: err, details: { path: file } },
    );
  }
  const db = opened;
  try {
    return fn();
  } finally {
    try {
      db.exec('ROLLBACK');
    } finally {
      db.close();
    }
  }
}
