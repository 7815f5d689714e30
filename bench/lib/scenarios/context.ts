/**
 * What every scenario gets, and the alternation loop they share: each round measures every system
 * once, in the same order (A B C A B C ...), so a drift of the machine (thermal, another tenant)
 * hits all systems alike instead of whichever ran last.
 */
import type { RunningEmulator } from '../emulator.ts';
import type { BenchOptions, ScenarioId, SystemId } from '../options.ts';
import { liveChildPids } from '../children.ts';
import { ForeignLoad, UsageWindow, type Usage } from '../proc-stats.ts';
import type { Sample, ScenarioResult } from '../results.ts';
import type { SystemUnderTest } from '../systems.ts';
import type { ToolName, ToolState } from '../tools.ts';

export interface ScenarioContext {
  readonly options: BenchOptions;
  readonly emulator: RunningEmulator;
  readonly tools: ReadonlyMap<ToolName, ToolState>;
  /** Running systems at options.workers, in alternation order. */
  readonly systems: readonly SystemUnderTest[];
  /** How processes are placed on CPUs, in words, for the report. */
  readonly placement: string;
  /** taskset list of the load generator, or null when not pinned. */
  readonly loadCpus: string | null;
  log(msg: string): void;
  /**
   * Starts the given systems at `workers`, with or without pinning, runs `fn`, stops them. Used by
   * the scaling scenario; direct is passed through as is.
   */
  withSystems<T>(
    ids: readonly SystemId[],
    workers: number,
    pinned: boolean,
    fn: (systems: readonly SystemUnderTest[]) => Promise<T>,
  ): Promise<T>;
  /**
   * Time left for re-measuring rounds disturbed by other processes, shared by the whole run so a
   * busy machine cannot stretch it without bound (CI must stay under 2 minutes).
   */
  readonly retryBudget: { remainingMs: number };
  /** Un-pins (false) or re-pins (true) the bench process and the emulator. */
  setLoadPlacement(pinned: boolean): void;
}

export interface Scenario {
  readonly id: ScenarioId;
  readonly title: string;
  run(ctx: ScenarioContext): Promise<ScenarioResult>;
}

/** A measurement's resource use: the system's own processes, and the emulator's for context. */
export interface Measured<T> {
  readonly result: T;
  readonly sut: Usage | null;
  readonly emulator: Usage;
  /** CPU used by processes that are not ours, in percent of one CPU (see ForeignLoad). */
  readonly foreignPct: number;
}

/** Runs `work` inside /proc usage windows of the system (if it has processes) and the emulator. */
export async function measure<T>(
  sys: SystemUnderTest,
  emu: RunningEmulator,
  work: () => Promise<T>,
): Promise<Measured<T>> {
  const pids = sys.pids();
  const sutWin = pids.length > 0 ? new UsageWindow(pids) : null;
  const emuWin = new UsageWindow([emu.child.pid]);
  const foreign = new ForeignLoad(liveChildPids);
  const result = await work();
  return { result, sut: sutWin?.end() ?? null, emulator: emuWin.end(), foreignPct: 100 * foreign.end() };
}

/**
 * A measurement during which other processes used more than this share of a CPU (another job on
 * a shared machine) is repeated, at most MAX_RETRIES times; the report shows the foreign load.
 */
export const FOREIGN_LIMIT_PCT = 25;
const MAX_RETRIES = 2;
const QUIET_WAIT_MS = 10_000;

/**
 * Warm-up (unrecorded, once per system) then `rounds` rounds of every system in turn.
 * `one` returns the sample values for a system and round.
 */
export async function alternate(
  ctx: Pick<ScenarioContext, 'log' | 'retryBudget'>,
  systems: readonly SystemUnderTest[],
  rounds: number,
  what: string,
  one: (sys: SystemUnderTest, round: number) => Promise<Omit<Sample, 'system' | 'round'>>,
  warmup: ((sys: SystemUnderTest) => Promise<void>) | null,
): Promise<Sample[]> {
  if (warmup !== null) {
    for (const sys of systems) await warmup(sys);
  }
  const samples: Sample[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const sys of systems) {
      let s = await one(sys, r);
      for (
        let retry = 1;
        retry <= MAX_RETRIES && (s.values.foreignPct ?? 0) > FOREIGN_LIMIT_PCT && ctx.retryBudget.remainingMs > 0;
        retry++
      ) {
        const t0 = performance.now();
        ctx.log(
          `  ${what} round ${r + 1}/${rounds} ${sys.id}: other processes used ${s.values.foreignPct!.toFixed(0)}% of a CPU; ` +
            'waiting for a quieter moment and measuring again',
        );
        await waitForQuiet();
        const again = await one(sys, r);
        // Keep the least disturbed of the attempts.
        if ((again.values.foreignPct ?? 0) < (s.values.foreignPct ?? 0)) s = again;
        ctx.retryBudget.remainingMs -= performance.now() - t0;
      }
      samples.push({ system: sys.id, round: r, ...s });
      ctx.log(
        `  ${what} round ${r + 1}/${rounds} ${sys.id.padEnd(9)} ${describe(s.values)}${s.ok ? '' : `  FAILED: ${s.note ?? ''}`}`,
      );
    }
  }
  return samples;
}

/** Waits (at most QUIET_WAIT_MS) until other processes use less than FOREIGN_LIMIT_PCT over 1 s. */
async function waitForQuiet(): Promise<void> {
  const deadline = performance.now() + QUIET_WAIT_MS;
  while (performance.now() < deadline) {
    const w = new ForeignLoad(liveChildPids);
    await new Promise((r) => setTimeout(r, 1_000));
    if (100 * w.end() < FOREIGN_LIMIT_PCT) return;
  }
}

function describe(values: Readonly<Record<string, number>>): string {
  const shown = [
    'reqPerSec',
    'p99Ms',
    'onTimePct',
    'ttfbP99Ms',
    'delayP99Ms',
    'mibPerSec',
    'cpuUsPerReq',
    'cpuUsPerToken',
    'rssGrowthMB',
    'peakRssMB',
    'foreignPct',
  ];
  return Object.entries(values)
    .filter(([k]) => shown.includes(k))
    .map(([k, v]) => `${k}=${Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3)}`)
    .join(' ');
}

export const MB = 1024 * 1024;

/** Pause between measurements so closed sockets and timers of one do not land in the next. */
export function settle(ms = 250): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
