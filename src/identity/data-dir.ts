/**
 * The data directory holds this node's private key and its allow list, so it is the user's alone:
 * created 0700, and an existing one (made by an older ollana, or by hand) tightened to 0700.
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { OllanaError, errorMessage, systemCode } from '../errors.ts';

const ELSEWHERE = 'choose another data directory with --data-dir or OLLANA_HOME';

/** What went wrong and what to do about it, in the words that fit the errno. */
function whyAndFix(err: unknown): string {
  switch (systemCode(err)) {
    case 'EACCES':
    case 'EPERM':
      return `permission denied; fix its permissions (the user running ollana must be able to write it), or ${ELSEWHERE}`;
    case 'ENOSPC':
    case 'EDQUOT':
      return `the disk is full; free some space there, or ${ELSEWHERE}`;
    case 'EROFS':
      return `the file system is read-only; remount it read-write, or ${ELSEWHERE}`;
    default:
      return `${errorMessage(err)}; ${ELSEWHERE}`;
  }
}

/** OLN_DIR_UNWRITABLE for `what` (a file or the directory itself), with the way out that fits the cause. */
export function dirError(what: string, action: 'read' | 'write' | 'use', err: unknown): OllanaError {
  return new OllanaError('OLN_DIR_UNWRITABLE', `cannot ${action} ${what}: ${whyAndFix(err)}`, {
    cause: err,
    details: { path: what },
  });
}

export function ensurePrivateDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    chmodSync(dir, 0o700);
  } catch (err) {
    throw dirError(`the data directory ${dir}`, 'use', err);
  }
}
