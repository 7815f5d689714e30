/**
 * What every report says about its run: the commit of the ollana that ran, the machine, the clock,
 * and how the run was split over the CPUs as two machines.
 */
import { execFileSync } from 'node:child_process';
import { availableParallelism, cpus, loadavg, release, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { canPin } from './children.ts';

export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');

/** HEAD of the checkout at `root` (short), marked when its src/ has uncommitted changes; null without git. */
export function gitCommit(root: string = REPO_ROOT): string | null {
  try {
    const git = (...args: string[]): string =>
      execFileSync('git', ['-C', root, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const head = git('rev-parse', '--short', 'HEAD');
    return git('status', '--porcelain', '--', 'src') === '' ? head : `${head} + uncommitted src changes`;
  } catch {
    return null;
  }
}

export interface Machine {
  readonly cpuModel: string;
  readonly cpus: number;
  readonly memGiB: number;
  readonly kernel: string;
  readonly node: string;
  readonly loadBefore: readonly number[];
  readonly loadAfter: readonly number[];
}

/** The run's wall clock and the machine around it: started at construction, read by finish(). */
export class RunClock {
  readonly started = new Date();
  readonly loadBefore = loadavg();

  finish(): { startedAt: string; finishedAt: string; wallSeconds: number; machine: Machine } {
    const finished = new Date();
    return {
      startedAt: this.started.toISOString(),
      finishedAt: finished.toISOString(),
      wallSeconds: (finished.getTime() - this.started.getTime()) / 1000,
      machine: {
        cpuModel: cpus()[0]?.model ?? '?',
        cpus: cpus().length,
        memGiB: Math.round(totalmem() / 2 ** 30),
        kernel: release(),
        node: process.version,
        loadBefore: this.loadBefore,
        loadAfter: loadavg(),
      },
    };
  }
}

/** CPU lists (taskset) of two "machines" on one box, or null each with the reason they are not pinned. */
export interface CpuHalves {
  readonly first: string | null;
  readonly second: string | null;
  /** Every CPU this process may use, e.g. "0-1". */
  readonly all: string;
  /** Why nothing is pinned, or null when pinned. */
  readonly unpinned: string | null;
}

/**
 * The first half of the CPUs and the rest. Call before the bench pins itself: availableParallelism()
 * honours this process's affinity.
 */
export function cpuHalves(pin: boolean): CpuHalves {
  const n = availableParallelism();
  const all = `0-${n - 1}`;
  if (!pin) return { first: null, second: null, all, unpinned: 'No CPU pinning (--no-pin)' };
  if (n < 2 || !canPin())
    return { first: null, second: null, all, unpinned: `No CPU pinning (${n < 2 ? 'one CPU' : 'taskset missing'})` };
  const half = Math.floor(n / 2);
  return {
    first: half === 1 ? '0' : `0-${half - 1}`,
    second: n - half === 1 ? String(half) : `${half}-${n - 1}`,
    all,
    unpinned: null,
  };
}
