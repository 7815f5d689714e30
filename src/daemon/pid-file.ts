/**
 * The pid file: one decimal pid and a newline. Taking it detects a live ollana (refuse), a stale file
 * left by a crash (replace), and an unwritable place (say which and what to do).
 */
import { mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { OllanaError, systemCode } from '../errors.ts';

export function readPid(file: string): number | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return null;
    throw unwritable(file, err, 'read');
  }
  const pid = Number(text.trim());
  return Number.isInteger(pid) && pid > 0 ? pid : null;
}

/** Whether `pid` is a live ollana process (not merely a live process that reused the number). */
export function isOllanaProcess(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    return systemCode(err) === 'EPERM'; // alive but not ours to signal: assume it is a real ollana
  }
  try {
    // The script node runs must be ollana's: src/main.ts, dist/main.js, bin/ollana.mjs, or an `ollana` link on the
    // PATH. Not "ollana" anywhere in the command line: a folder named ollana holds other programs too.
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(1);
    return args.some((a) => /(^|\/)src\/main\.ts$|(^|\/)dist\/main\.js$|(^|\/)bin\/ollana\.mjs$|(^|\/)ollana$/.test(a));
  } catch {
    return true; // no /proc (not Linux): a live pid is the best evidence there is
  }
}

function unwritable(file: string, err: unknown, action: 'write' | 'read'): OllanaError {
  const code = systemCode(err);
  const why = code === 'ENOSPC' ? 'the disk is full'
    : code === 'EACCES' || code === 'EPERM' ? 'permission denied'
    : code === 'EROFS' ? 'the file system is read-only'
    : code === 'ENOTDIR' ? 'a part of the path is a file, not a directory'
    : (err as Error).message;
  return new OllanaError('OLN_DIR_UNWRITABLE',
    `cannot ${action} the pid file ${file}: ${why}; free the space or fix the permissions, or choose another place with --pid-file`,
    { cause: err, details: { file } });
}

/**
 * Takes the pid file for this process. Throws OLN_ALREADY_RUNNING when a live ollana holds it.
 * Returns a release function that removes the file only if it is still ours.
 */
export function takePidFile(file: string, pid = process.pid): { release: () => void; replacedStale: number | null } {
  const existing = readPid(file);
  if (existing !== null && existing !== pid && isOllanaProcess(existing)) {
    throw new OllanaError('OLN_ALREADY_RUNNING',
      `ollana is already running (pid ${existing}, pid file ${file}); stop it with \`ollana stop\`, ` +
      'or give this one its own --pid-file and --listen',
      { details: { pid: existing, file } });
  }
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    // Write beside it and rename: a reader never sees a half-written pid, and a full disk fails here,
    // before anything depends on the file.
    const tmp = `${file}.${pid}.tmp`;
    writeFileSync(tmp, `${pid}\n`, { mode: 0o644 });
    renameSync(tmp, file);
  } catch (err) {
    try {
      rmSync(`${file}.${pid}.tmp`, { force: true });
    } catch {
      // The write's own error is the one worth reporting.
    }
    throw unwritable(file, err, 'write');
  }
  return {
    replacedStale: existing !== null && existing !== pid ? existing : null,
    release: () => {
      try {
        if (readPid(file) === pid) rmSync(file, { force: true });
      } catch {
        // Nothing left to do on the way out; the next start treats the file as stale.
      }
    },
  };
}
