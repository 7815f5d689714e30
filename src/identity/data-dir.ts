/**
 * The data directory holds this node's private key and its allow list, so it is the user's alone:
 * created 0700, and an existing one (made by an older ollana, or by hand) tightened to 0700.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { OllanaError, errorMessage, systemCode } from '../errors.ts';

function why(err: unknown): string {
  const code = systemCode(err);
  if (code === 'EACCES' || code === 'EPERM') return 'permission denied';
  if (code === 'ENOSPC') return 'the disk is full';
  if (code === 'EROFS') return 'the file system is read-only';
  return errorMessage(err);
}

/** OLN_DIR_UNWRITABLE for `what` (a file or the directory itself), with the usual way out. */
export function dirError(what: string, action: 'read' | 'write' | 'use', err: unknown): OllanaError {
  return new OllanaError('OLN_DIR_UNWRITABLE',
    `cannot ${action} ${what}: ${why(err)}; fix its permissions, or choose another data directory with --data-dir or OLLANA_HOME`,
    { cause: err, details: { path: what } });
}

export function ensurePrivateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  } catch (err) {
    throw dirError(`the data directory ${dir}`, 'use', err);
  }
}
