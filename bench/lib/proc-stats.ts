/**
 * What a system under test costs, read from /proc: CPU time (utime + stime of the whole process,
 * which for a multi-threaded ollana already sums every thread, live and exited) and memory (VmRSS
 * now, VmHWM = peak). For nginx the cost is its master plus workers, so a meter takes a list of
 * pids. Peaks are reset per measurement by writing 5 to /proc/PID/clear_refs (Linux >= 4.0),
 * and a 100 ms RSS sampler backs that up where the reset is not allowed.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let clockTicks: number | null = null;

/** USER_HZ: the unit of utime/stime in /proc/PID/stat (100 on every common Linux build). */
export function clkTck(): number {
  if (clockTicks === null) {
    try {
      clockTicks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clockTicks = 100;
    }
  }
  return clockTicks;
}

/** utime + stime of a process in ms (plus its reaped children's with `withChildren`), or null when gone. */
export function cpuMs(pid: number, withChildren = false): number | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return null;
  }
  // The command name (field 2) may contain spaces and parentheses: fields are counted after the
  // last ')'. utime, stime, cutime, cstime are fields 14-17, i.e. 12-15 after the state field.
  const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
  let ticks = Number(rest[11]) + Number(rest[12]);
  if (withChildren) ticks += Number(rest[13]) + Number(rest[14]);
  return (ticks * 1000) / clkTck();
}

/**
 * Process time of the whole machine (all CPUs), ms: user + nice + system. Interrupt and softirq
 * time is left out: loopback traffic of the bench itself lands there, attributed to no process.
 */
export function machineBusyMs(): number {
  const line = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0]!;
  const f = line.trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal ...
  return ((f[0]! + f[1]! + f[2]!) * 1000) / clkTck();
}

/**
 * CPU that processes other than the bench and its children used during a window, as a share of
 * one CPU: another job on the machine (a test suite, a build) that would skew the measurement.
 * The bench's own share is itself plus its reaped children (cutime) plus its live children's trees.
 */
export class ForeignLoad {
  readonly #ours: () => readonly number[];
  readonly #t0 = performance.now();
  readonly #machine0 = machineBusyMs();
  readonly #own0: number;

  constructor(liveChildren: () => readonly number[]) {
    this.#ours = liveChildren;
    this.#own0 = this.#own();
  }

  #own(): number {
    let sum = cpuMs(process.pid, true) ?? 0;
    for (const root of this.#ours()) for (const p of processTree(root)) sum += cpuMs(p) ?? 0;
    return sum;
  }

  /** Foreign CPU as a fraction of one CPU over the window (clamped at 0: tick rounding). */
  end(): number {
    const wall = performance.now() - this.#t0;
    const foreign = machineBusyMs() - this.#machine0 - (this.#own() - this.#own0);
    return wall > 0 ? Math.max(0, foreign / wall) : 0;
  }
}

export interface Memory {
  readonly rssBytes: number;
  readonly hwmBytes: number;
}

export function memory(pid: number): Memory | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/status`, 'latin1');
  } catch {
    return null;
  }
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(text);
    return m ? Number(m[1]) * 1024 : 0;
  };
  return { rssBytes: kb('VmRSS'), hwmBytes: kb('VmHWM') };
}

/** Resets VmHWM to the current RSS; false when the kernel or permissions do not allow it. */
export function resetPeak(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** `pid` and all its descendants (nginx master -> workers), from /proc/PID/task/TID/children. */
export function processTree(pid: number): number[] {
  const out: number[] = [];
  const visit = (p: number): void => {
    out.push(p);
    let tasks: string[];
    try {
      tasks = readdirSync(`/proc/${p}/task`);
    } catch {
      return;
    }
    for (const tid of tasks) {
      let kids = '';
      try {
        kids = readFileSync(`/proc/${p}/task/${tid}/children`, 'latin1');
      } catch {
        /* no such file */
      }
      for (const k of kids.split(' ')) if (k.trim() !== '') visit(Number(k));
    }
  };
  visit(pid);
  return out;
}

export interface Usage {
  /** CPU ms consumed by all the pids during the measurement. */
  readonly cpuMs: number;
  /** Summed peak RSS over the measurement (sum of per-process peaks: an upper bound for several processes). */
  readonly peakRssBytes: number;
  /** Summed RSS when the measurement began. */
  readonly startRssBytes: number;
  readonly wallMs: number;
}

/** One measurement window over a fixed set of pids. */
export class UsageWindow {
  readonly #pids: readonly number[];
  readonly #cpu0: number;
  readonly #t0 = performance.now();
  readonly #startRss: number;
  readonly #timer: NodeJS.Timeout;
  #sampledPeak = 0;
  #hwmReset = true;

  constructor(pids: readonly number[]) {
    this.#pids = pids;
    for (const p of pids) this.#hwmReset = resetPeak(p) && this.#hwmReset;
    this.#startRss = this.#rss();
    this.#sampledPeak = this.#startRss;
    this.#cpu0 = this.#cpu();
    this.#timer = setInterval(() => {
      this.#sampledPeak = Math.max(this.#sampledPeak, this.#rss());
    }, 100);
    this.#timer.unref();
  }

  #cpu(): number {
    let sum = 0;
    for (const p of this.#pids) sum += cpuMs(p) ?? 0;
    return sum;
  }

  #rss(): number {
    let sum = 0;
    for (const p of this.#pids) sum += memory(p)?.rssBytes ?? 0;
    return sum;
  }

  end(): Usage {
    clearInterval(this.#timer);
    let hwm = 0;
    for (const p of this.#pids) hwm += memory(p)?.hwmBytes ?? 0;
    const peak = this.#hwmReset ? Math.max(hwm, this.#sampledPeak) : Math.max(this.#sampledPeak, this.#rss());
    return {
      cpuMs: this.#cpu() - this.#cpu0,
      peakRssBytes: peak,
      startRssBytes: this.#startRss,
      wallMs: performance.now() - this.#t0,
    };
  }
}
