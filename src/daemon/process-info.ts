/**
 * What the pid file's users need to know about another process, and every OS difference of it in one
 * place: on Linux from /proc, elsewhere from `ps`.
 *
 * A pid alone does not name a process: the kernel hands the number out again once its process is gone.
 * A pid plus the process's start time does, so the pid file records both and a process counts as the
 * one that wrote it only if both match.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { systemCode } from '../errors.ts';

const HAS_PROC = existsSync('/proc/self/stat');
let bootId: string | undefined;

/** Fields of /proc/<pid>/stat after the command name, which is in parentheses and may hold spaces. */
function statFields(path: string): string[] | null {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  const close = text.lastIndexOf(')');
  return close < 0
    ? null
    : text
        .slice(close + 2)
        .trim()
        .split(' ');
}

/**
 * When `pid` started, as an opaque string that is equal only for the same process; null when there is
 * no such process or its start cannot be read. Linux: the boot id and field 22 of /proc/<pid>/stat
 * (clock ticks since boot; the boot id keeps a pid file kept across a reboot from matching by chance).
 * Elsewhere: `ps -o lstart=` (to the second, which together with the pid is as good).
 */
export function processStart(pid: number): string | null {
  if (HAS_PROC) {
    // Field 22 is the 20th after the command name (fields 1 and 2 are the pid and the name).
    const start = statFields(`/proc/${pid}/stat`)?.[19];
    if (start === undefined || !/^\d+$/.test(start)) return null;
    if (bootId === undefined) {
      try {
        bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      } catch {
        bootId = '';
      }
    }
    return `${bootId}/${start}`;
  }
  try {
    const out = execFileSync('ps', ['-o', 'lstart=', '-p', String(pid)], {
      encoding: 'utf8',
      timeout: 5_000,
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    return out.trim() === '' ? null : out.trim().replace(/\s+/g, ' ');
  } catch {
    return null;
  }
}

let clockTicks: number | undefined;

/**
 * When `pid` started, in ms since the epoch, to about a second (Linux counts from the boot time, which
 * /proc/stat gives in whole seconds); null when unknown. Only for pid files that hold no start string.
 */
export function processStartedAt(pid: number): number | null {
  if (HAS_PROC) {
    const ticks = Number(statFields(`/proc/${pid}/stat`)?.[19]);
    let btime: number;
    try {
      btime = Number(/^btime (\d+)$/m.exec(readFileSync('/proc/stat', 'utf8'))?.[1]);
    } catch {
      return null;
    }
    if (!Number.isFinite(ticks) || !Number.isFinite(btime)) return null;
    if (clockTicks === undefined) {
      try {
        clockTicks =
          Number(
            execFileSync('getconf', ['CLK_TCK'], {
              encoding: 'utf8',
              timeout: 5_000,
              stdio: ['ignore', 'pipe', 'ignore'],
            }).trim(),
          ) || 100;
      } catch {
        clockTicks = 100; // USER_HZ, the same on every common architecture
      }
    }
    return btime * 1000 + (ticks / clockTicks) * 1000;
  }
  const start = processStart(pid);
  const at = start === null ? Number.NaN : Date.parse(start);
  return Number.isFinite(at) ? at : null;
}

/**
 * Whether `pid` still runs. Not merely whether the number exists: a process whose threads have all
 * exited stays a zombie until its parent reaps it, and while the last threads of a node finish, the
 * main thread is already a zombie; only when every thread is gone are its sockets closed.
 */
export function processRuns(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if (systemCode(err) !== 'EPERM') return false; // ESRCH: no such process
  }
  if (!HAS_PROC) return true;
  let tasks: string[];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return false;
  }
  return tasks.some((tid) => {
    const state = statFields(`/proc/${pid}/task/${tid}/stat`)?.[0];
    return state !== undefined && state !== 'Z' && state !== 'X';
  });
}

/** The arguments after the program (node) of `pid`, or null where they cannot be read. */
export function processArgs(pid: number): string[] | null {
  if (!HAS_PROC) return null;
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').slice(1);
  } catch {
    return null;
  }
}
