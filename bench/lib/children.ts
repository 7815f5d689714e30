/**
 * Child processes of the bench: start (optionally pinned with taskset), wait until ready, stop.
 * Every child is registered so that an exception, Ctrl-C or a plain exit of the bench kills what
 * is still running: a forgotten emulator or nginx would skew the next run and hold its ports.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';

export interface Child {
  readonly name: string;
  readonly pid: number;
  readonly proc: ChildProcess;
  /** Resolves with the exit code (or 128 + signal number) once the process is gone. */
  readonly exited: Promise<number>;
  /** Last stdout and stderr lines, for error messages. */
  tail(): string;
  /** Calls `fn` for every stdout line from now on; returns the unsubscribe function. */
  onLine(fn: (line: string) => void): () => void;
}

export interface SpawnOptions {
  /** taskset CPU list ("0", "1", "0,1"); null = not pinned. */
  readonly cpus: string | null;
  readonly env?: Readonly<Record<string, string | undefined>>;
  readonly cwd?: string;
}

const live = new Set<Child>();
let hooked = false;

function hookExit(): void {
  if (hooked) return;
  hooked = true;
  // 'exit' handlers must be synchronous: SIGKILL is the only thing left to do there.
  process.on('exit', () => {
    for (const c of live) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  });
}

const TAIL_LINES = 30;

let tasksetOk: boolean | null = null;

/** True when taskset exists and this machine has at least two CPUs to split. */
export function canPin(): boolean {
  if (tasksetOk === null) tasksetOk = spawnSync('taskset', ['--version'], { stdio: 'ignore' }).status === 0;
  return tasksetOk;
}

/** Pins an already running process, all its threads, to `cpus` (used for the bench itself). */
export function pinProcess(pid: number, cpus: string): boolean {
  return spawnSync('taskset', ['-a', '-p', '-c', cpus, String(pid)], { stdio: 'ignore' }).status === 0;
}

export function startChild(name: string, command: string, args: readonly string[], opts: SpawnOptions): Child {
  hookExit();
  const [cmd, argv] =
    opts.cpus !== null && canPin() ? ['taskset', ['-c', opts.cpus, command, ...args]] : [command, [...args]];
  // taskset execs the command, so the pid is the pinned program's own.
  const proc = spawn(cmd, argv, {
    cwd: opts.cwd,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  if (proc.pid === undefined) throw new Error(`cannot start ${name} (${command}): spawn failed`);
  const lines: string[] = [];
  const listeners = new Set<(line: string) => void>();
  const keep =
    (prefix: string) =>
    (line: string): void => {
      lines.push(prefix + line);
      if (lines.length > TAIL_LINES) lines.shift();
    };
  const out = createInterface({ input: proc.stdout! });
  out.on('line', keep(''));
  out.on('line', (line) => {
    for (const fn of listeners) fn(line);
  });
  createInterface({ input: proc.stderr! }).on('line', keep('stderr: '));

  const exited = new Promise<number>((resolve) => {
    proc.once('exit', (code, signal) => {
      live.delete(child);
      resolve(code ?? 128 + (signal === 'SIGKILL' ? 9 : signal === 'SIGTERM' ? 15 : 1));
    });
    proc.once('error', () => {
      live.delete(child);
      resolve(127);
    });
  });
  const child: Child = {
    name,
    pid: proc.pid,
    proc,
    exited,
    tail: () => lines.join('\n'),
    onLine: (fn) => {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
  };
  live.add(child);
  return child;
}

/**
 * Resolves with the first stdout line for which `parse` returns a value; rejects when the child
 * exits first or nothing comes within `timeoutMs`, quoting the child's last output.
 */
export function waitForLine<T>(
  child: Child,
  parse: (line: string) => T | undefined,
  timeoutMs: number,
  what: string,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      done();
      reject(new Error(`${child.name}: no ${what} within ${timeoutMs} ms\n${child.tail()}`));
    }, timeoutMs);
    const off = child.onLine((line) => {
      const value = parse(line);
      if (value !== undefined) {
        done();
        resolve(value);
      }
    });
    void child.exited.then((code) => {
      done();
      reject(new Error(`${child.name} exited (${code}) before ${what}\n${child.tail()}`));
    });
    function done(): void {
      clearTimeout(timer);
      off();
    }
  });
}

/**
 * Polls `probe` every 100 ms until it resolves true; bounded by `timeoutMs` and by the child's
 * exit. Used where readiness shows only on the network (a health endpoint).
 */
export async function waitUntil(
  child: Child,
  probe: () => Promise<boolean>,
  timeoutMs: number,
  what: string,
): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  let gone = false;
  void child.exited.then(() => {
    gone = true;
  });
  while (performance.now() < deadline) {
    if (gone) throw new Error(`${child.name} exited before ${what}\n${child.tail()}`);
    if (await probe().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${child.name}: no ${what} within ${timeoutMs} ms\n${child.tail()}`);
}

/** SIGTERM (or `signal`), then SIGKILL after `graceMs`. Resolves with the exit code. */
export async function stopChild(child: Child, graceMs = 15_000, signal: NodeJS.Signals = 'SIGTERM'): Promise<number> {
  if (!live.has(child)) return child.exited;
  try {
    process.kill(child.pid, signal);
  } catch {
    /* gone */
  }
  const timer = setTimeout(() => {
    try {
      process.kill(child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, graceMs);
  try {
    return await child.exited;
  } finally {
    clearTimeout(timer);
  }
}

/** Pids of the children still running (for the foreign-load check). */
export function liveChildPids(): number[] {
  return [...live].map((c) => c.pid);
}

/** Stops every child still running, in parallel (used by the bench's finally and signal handlers). */
export async function stopAll(): Promise<void> {
  await Promise.all([...live].map((c) => stopChild(c, 5_000)));
}
