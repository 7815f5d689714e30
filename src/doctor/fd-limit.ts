/** Check: the open-file limit a node would start with. */
import { type CheckResult, result } from './types.ts';

/** Below this a busy node (connections in and out, one per stream) can run out. */
export const FD_LIMIT_WANTED = 4096;

export interface FdLimit {
  /** null: unlimited */
  readonly soft: number | null;
  readonly hard: number | null;
}

/** Parses the "Max open files" line of /proc/<pid>/limits; null when absent. */
export function parseLimits(text: string): FdLimit | null {
  const m = /^Max open files\s+(\S+)\s+(\S+)/m.exec(text);
  if (m === null) return null;
  const num = (s: string): number | null => (s === 'unlimited' ? null : Number(s));
  return { soft: num(m[1]!), hard: num(m[2]!) };
}

export function checkFdLimit(limit: FdLimit | null): CheckResult<'fd-limit'> {
  if (limit === null)
    return result('fd-limit', 'skip', 'open-file limit: not checked on this platform', {
      checked: false,
      soft: null,
      hard: null,
    });
  const { soft, hard } = limit;
  if (soft === null || soft >= FD_LIMIT_WANTED) {
    return result('fd-limit', 'ok', `open-file limit ${soft ?? 'unlimited'}`, { checked: true, soft, hard });
  }
  const raise =
    hard === null || hard >= FD_LIMIT_WANTED
      ? `raise it with \`ulimit -n ${FD_LIMIT_WANTED}\` before \`ollana serve\` (LimitNOFILE=${FD_LIMIT_WANTED} for a systemd service)`
      : `the hard limit is ${hard} too: raise it in /etc/security/limits.conf (or LimitNOFILE= for a systemd service)`;
  return result(
    'fd-limit',
    'warn',
    `open-file limit ${soft}, under ${FD_LIMIT_WANTED}: a busy node can run out of descriptors; ${raise}`,
    { checked: true, soft, hard },
  );
}
