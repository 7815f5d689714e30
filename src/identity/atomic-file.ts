/**
 * Writing the data directory's files so that a reader (a running node, another `ollana device`
 * command) never sees half a file, and a crash at any moment leaves either the old file or the new
 * one: write a temporary file beside the target and flush it, rename or link it into place (both
 * atomic within one directory), then flush the directory so the rename itself survives a power cut.
 * Throws the raw system error; callers say which file and what to do.
 */
import { randomBytes } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  fsyncSync,
  linkSync,
  openSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { systemCode } from '../errors.ts';

/** The files written here; a temporary one is `<name>.<pid>.<8 hex>.tmp`. */
const TEMP_NAME = /^(cert\.pem|key\.pem|devices\.json|pending\.json)\.(\d+)\.[0-9a-f]{8}\.tmp$/;

/**
 * Test hook: with OLLANA_DEBUG_HOOKS=1 and OLLANA_DEBUG_KILL_AT=`<file name>:<step>`, the process
 * kills itself (SIGKILL) at that step of writing that file, as a crash or `kill -9` would, so tests
 * can check what every such moment leaves behind. Steps: `temp-written`, `in-place`.
 */
export function killPoint(file: string, step: string): void {
  if (process.env.OLLANA_DEBUG_HOOKS === '1' && process.env.OLLANA_DEBUG_KILL_AT === `${basename(file)}:${step}`) {
    process.kill(process.pid, 'SIGKILL');
  }
}

function writeTemp(file: string, text: string, mode: number): string {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, text, { mode, flush: true });
    chmodSync(tmp, mode); // the umask may have taken bits away; the mode is part of the contract
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  killPoint(file, 'temp-written');
  return tmp;
}

/** Flushes a directory's entries (a rename into it) to disk; a no-op where directories cannot be opened. */
function syncDir(dir: string): void {
  let fd: number;
  try {
    fd = openSync(dir, 'r');
  } catch {
    return; // Windows cannot open a directory; its renames are journaled by NTFS
  }
  try {
    fsyncSync(fd);
  } catch (err) {
    if (!['EINVAL', 'EISDIR', 'EPERM', 'EBADF'].includes(systemCode(err) ?? '')) throw err;
  } finally {
    closeSync(fd);
  }
}

/** Replaces `file` with `text` (mode `mode`) in one step. */
export function writeFileAtomic(file: string, text: string, mode: number): void {
  const tmp = writeTemp(file, text, mode);
  try {
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  killPoint(file, 'in-place');
  syncDir(dirname(file));
}

/**
 * Creates `file` with `text` only if it does not exist yet, in one step (link fails on an existing
 * target where rename would replace it). Returns false when another process got there first.
 */
export function createFileExclusive(file: string, text: string, mode: number): boolean {
  const tmp = writeTemp(file, text, mode);
  try {
    linkSync(tmp, file);
  } catch (err) {
    if (systemCode(err) === 'EEXIST') return false;
    throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
  killPoint(file, 'in-place');
  syncDir(dirname(file));
  return true;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return systemCode(err) === 'EPERM'; // someone else's process: alive, and not ours to judge
  }
}

/**
 * Removes the temporary files in `dir` that a killed writer left (ours only, by name, and only when
 * the process that made one is gone, so another ollana's write in progress is left alone). Returns
 * their names, for the caller to say once what it found.
 */
export function removeStaleTemps(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    const m = TEMP_NAME.exec(name);
    if (m === null) continue;
    const pid = Number(m[2]);
    if (pid !== process.pid && alive(pid)) continue;
    try {
      rmSync(join(dir, name), { force: true });
      removed.push(name);
    } catch {
      /* a read-only directory: left for a later start */
    }
  }
  return removed;
}
