/**
 * Starting the pieces of a cluster benchmark inside the hosts of a virtual LAN (testkit/netns.ts):
 * Ollama emulators, ollana nodes and the in-host probes of ./probes. Everything is started through
 * Host.spawn, so it runs inside a namespace and Lan.close() ends it; the data directories made here
 * are removed by {@link removeHomes} (run.ts calls it in a finally and from its signal handlers).
 *
 * Nothing here sends a packet from this process: LAN addresses are only used inside the hosts.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Host, HostProcess } from '../../testkit/netns.ts';

export const NODE = process.execPath;
/** This checkout's ollana entry point (the default of run.ts --ollana). */
export const MAIN = fileURLToPath(new URL('../../bin/ollana.mjs', import.meta.url));
let ollanaMain = MAIN;

/** Benchmarks another ollana checkout's bin/ollana.mjs instead of this one's. */
export function setOllanaMain(path: string): void {
  ollanaMain = path;
}
export const EMULATOR = fileURLToPath(new URL('../../testkit/ollama-emulator.ts', import.meta.url));
export const PROBES = {
  firstSuccess: fileURLToPath(new URL('./probes/first-success.ts', import.meta.url)),
  statusWatch: fileURLToPath(new URL('./probes/status-watch.ts', import.meta.url)),
  loadLoop: fileURLToPath(new URL('./probes/load-loop.ts', import.meta.url)),
};

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const homes = new Set<string>();

/** Removes every data directory made by {@link startNode}. Synchronous: usable from 'exit'. */
export function removeHomes(): void {
  for (const h of homes) rmSync(h, { recursive: true, force: true });
  homes.clear();
}

/** How a process is started beyond its command: pinned to CPUs (taskset execs it: same pid). */
export interface Placement {
  /** taskset CPU list ("0", "1-3"); null or missing = not pinned */
  readonly cpus?: string | null;
}

/** `host.spawn` of `cmd args`, under `taskset -c cpus` when given. */
export function spawnPinned(
  host: Host,
  cmd: string,
  args: readonly string[],
  place: Placement = {},
  env?: Record<string, string | undefined>,
): HostProcess {
  const opts = env === undefined ? undefined : { env };
  return place.cpus == null
    ? host.spawn(cmd, args, opts)
    : host.spawn('taskset', ['-c', place.cpus, cmd, ...args], opts);
}

export interface EmulatorSettings extends Placement {
  /** the emulator's entry point (default: the test fixture; bench/lib/emulator-main.ts for long load) */
  readonly entry?: string;
  /** emulator flags after `--port 11434` (default: 3 tokens 2 ms apart, no time to first token) */
  readonly args?: readonly string[];
}

/** An Ollama emulator on the host's port 11434 (127.0.0.1 unless `args` say `--host`). */
export async function startEmulator(host: Host, settings: EmulatorSettings = {}): Promise<HostProcess> {
  const p = spawnPinned(
    host,
    NODE,
    [
      settings.entry ?? EMULATOR,
      '--port',
      '11434',
      ...(settings.args ?? ['--tokens', '3', '--token-interval-ms', '2', '--ttft-ms', '0']),
    ],
    settings,
  );
  await p.waitForLine((t) => t.includes('"url"'), 20_000);
  return p;
}

export interface OllanaNode {
  readonly host: Host;
  readonly proc: HostProcess;
  readonly home: string;
  /** Date.now() just before the spawn. */
  readonly spawnedAt: number;
}

const trustLanCache = new Map<string, readonly string[]>();

/** ['--trust-lan'] when the ollana under test knows the flag (roots from before trust do not). */
function trustLanFlag(): readonly string[] {
  let flags = trustLanCache.get(ollanaMain);
  if (flags === undefined) {
    const help = spawnSync(NODE, [ollanaMain, 'serve', '--help'], { encoding: 'utf8', timeout: 20_000 });
    flags = [
      ...(/--trust-lan/.test(help.stdout ?? '') ? ['--trust-lan'] : []),
      // The emulator runs every request at once (no slot limit): so does the fair-share scheduler here.
      ...(/--slots/.test(help.stdout ?? '') ? ['--slots', '1024'] : []),
    ];
    trustLanCache.set(ollanaMain, flags);
  }
  return flags;
}

export interface NodeSettings extends Placement {
  /** --workers (default 1) */
  readonly workers?: number;
  /** more `ollana serve` flags, e.g. ['--mode', 'client'] */
  readonly args?: readonly string[];
}

/**
 * `ollana serve --workers 1 --heartbeat <hb>` with a fresh OLLANA_HOME (or `reuseHome`: the same node
 * id again) and OLLANA_DISCOVERY unset (auto mode: a server node where an emulator answers, else a
 * client node). Does not wait.
 */
export function spawnNode(host: Host, heartbeat: string, reuseHome?: string, settings: NodeSettings = {}): OllanaNode {
  const home = reuseHome ?? mkdtempSync(join(tmpdir(), 'ollana-bench-cluster-'));
  homes.add(home);
  const spawnedAt = Date.now();
  // --trust-lan: timing of discovery and failover, not of pairing (an old root without it would refuse it).
  const proc = spawnPinned(
    host,
    NODE,
    [
      ollanaMain,
      'serve',
      '--workers',
      String(settings.workers ?? 1),
      '--heartbeat',
      heartbeat,
      ...trustLanFlag(),
      ...(settings.args ?? []),
    ],
    settings,
    { OLLANA_HOME: home, OLLANA_LOG: 'info', OLLANA_DISCOVERY: undefined },
  );
  return { host, proc, home, spawnedAt };
}

/** {@link spawnNode}, then waits (bounded) for its "listening on" line. */
export async function startNode(
  host: Host,
  heartbeat: string,
  reuseHome?: string,
  settings: NodeSettings = {},
): Promise<OllanaNode> {
  const n = spawnNode(host, heartbeat, reuseHome, settings);
  await n.proc.waitForLine((t) => t.includes('listening on'), 30_000);
  return n;
}

export interface LogLine {
  readonly time: number;
  readonly msg: string;
  /** pino's level: a label ("info") or a number (30) */
  readonly level?: string | number;
  readonly [k: string]: unknown;
}

const LEVELS: Readonly<Record<string, number>> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60 };

/** A log line's level as pino's number (info = 30 when missing). */
export function levelOf(l: LogLine): number {
  return typeof l.level === 'number' ? l.level : (LEVELS[l.level ?? 'info'] ?? 30);
}

/** The JSON log lines a process printed so far (anything else is skipped). */
export function logLines(p: HostProcess): LogLine[] {
  const out: LogLine[] = [];
  for (const l of p.lines) {
    if (!l.text.startsWith('{')) continue;
    try {
      const j = JSON.parse(l.text) as Partial<LogLine>;
      if (typeof j.msg === 'string' && typeof j.time === 'number') out.push(j as LogLine);
    } catch {
      /* not a log line */
    }
  }
  return out;
}

/** `time` of the first log line whose msg matches, at or after `after` (ms epoch); null if none. */
export function logTime(p: HostProcess, pred: (msg: string) => boolean, after = 0): number | null {
  for (const l of logLines(p)) if (l.time >= after && pred(l.msg)) return l.time;
  return null;
}

/** The node (device) id a node logged with its "listening on" line. */
export function nodeIdOf(n: OllanaNode): string | null {
  const l = logLines(n.proc).find((x) => x.msg.includes('listening on'));
  const id = l?.deviceId ?? l?.nodeId;
  return typeof id === 'string' ? id : null;
}

/** The JSON objects a probe printed on stdout so far. */
export function jsonLines<T>(p: HostProcess, since = 0): T[] {
  const out: T[] = [];
  for (const l of p.lines.slice(since)) {
    if (l.stream !== 'stdout' || !l.text.startsWith('{')) continue;
    try {
      out.push(JSON.parse(l.text) as T);
    } catch {
      /* partial line */
    }
  }
  return out;
}

export interface StatusSnap {
  readonly t: number;
  readonly upstreams?: readonly { id: string; url: string }[];
  readonly leader?: string;
  readonly term?: number;
  readonly error?: string;
  readonly ready?: boolean;
}

/** The status-watch probe on the client host (polls every `intervalMs`, prints changes). */
export class StatusWatch {
  readonly proc: HostProcess;

  constructor(host: Host, intervalMs = 50, deadlineMs = 120_000) {
    this.proc = host.spawn(NODE, [
      PROBES.statusWatch,
      '--interval-ms',
      String(intervalMs),
      '--deadline-ms',
      String(deadlineMs),
    ]);
  }

  snaps(): StatusSnap[] {
    return jsonLines<StatusSnap>(this.proc).filter((s) => s.ready !== true);
  }

  /** Resolves with the first snapshot (past or future) satisfying `ok`; rejects after `timeoutMs`. */
  async until(what: string, ok: (s: StatusSnap) => boolean, timeoutMs: number): Promise<StatusSnap> {
    const line = await this.proc
      .waitForLine((text, stream) => {
        if (stream !== 'stdout' || !text.startsWith('{')) return false;
        try {
          const s = JSON.parse(text) as StatusSnap;
          return s.ready !== true && s.error === undefined && ok(s);
        } catch {
          return false;
        }
      }, timeoutMs)
      .catch((err: Error) => {
        throw new Error(`waiting for ${what}: ${err.message}`);
      });
    return JSON.parse(line) as StatusSnap;
  }
}

export const hasUpstream = (s: StatusSnap, id: string): boolean => (s.upstreams ?? []).some((u) => u.id === id);

/** Last lines of a process's output, for error messages and the report's excerpts. */
export function tail(p: HostProcess, n = 30): string {
  return p.lines
    .slice(-n)
    .map((l) => l.text)
    .join('\n');
}
