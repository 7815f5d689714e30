/**
 * Writing the data directory's files so that a reader (a running node, another `ollana device`
 * command) never sees half a file: write a temporary file beside the target, flush it, then rename
 * or link it into place, both atomic within one directory. Throws the raw system error; callers say
 * which file and what to do.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, linkSync, renameSync, rmSync, writeFileSync } from 'node:fs';

function writeTemp(file: string, text: string, mode: number): string {
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    writeFileSync(tmp, text, { mode, flush: true });
    chmodSync(tmp, mode); // the umask may have taken bits away; the mode is part of the contract
  } catch (err) {
    rmSync(tmp, { force: true });
    throw err;
  }
  return tmp;
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
}

/**
 * Creates `file` with `text` only if it does not exist yet, in one step (link fails on an existing
 * target where rename would replace it). Returns false when another process got there first.
 */
export function createFileExclusive(file: string, text: string, mode: number): boolean {
  const tmp = writeTemp(file, text, mode);
  try {
    linkSync(tmp, file);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    rmSync(tmp, { force: true });
  }
}
