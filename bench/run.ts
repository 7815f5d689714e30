/**
 * `npm run bench` / `npm run bench:ci`: starts the Ollama emulator, the systems under test and
 * the load (all on loopback), runs the scenarios with systems alternating round by round, stops
 * everything it started, and writes report.md, report.json and charts. With --ci it also applies
 * the load gate and exits 1 when one hop falls below a ratio of direct.
 *
 * Exit status: 0 done (gate passed), 1 gate failed or the run broke, 2 usage error.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pinProcess, stopAll, stopChild } from './lib/children.ts';
import { summarizeProfiles, type ProfileSummary } from './lib/cpu-profile.ts';
import { startEmulator, type RunningEmulator } from './lib/emulator.ts';
import { busiest, evaluateGate, frontCounts, type FrontCounts } from './lib/gate.ts';
import {
  HELP,
  SCENARIO_IDS,
  parseBenchArgs,
  type BenchOptions,
  type ScenarioId,
  type SystemId,
} from './lib/options.ts';
import { scenarioCharts } from './lib/report/chart.ts';
import { renderMarkdown } from './lib/report/markdown.ts';
import { evaluateTargets } from './lib/report/targets.ts';
import type { GateCheck, RunReport, SystemStatus } from './lib/report/types.ts';
import { writeReport } from './lib/report/write.ts';
import type { ScenarioResult } from './lib/results.ts';
import { RunClock, cpuHalves, gitCommit } from './lib/run-meta.ts';
import { runBench } from './lib/runner.ts';
import { bodiesScenario } from './lib/scenarios/bodies.ts';
import { FOREIGN_LIMIT_PCT, type Scenario, type ScenarioContext } from './lib/scenarios/context.ts';
import { heyScenario } from './lib/scenarios/hey.ts';
import { rateScenario } from './lib/scenarios/rate.ts';
import { scalingScenario } from './lib/scenarios/scaling.ts';
import { streamsScenario } from './lib/scenarios/streams.ts';
import { warmUp } from './lib/scenarios/warmup.ts';
import { SYSTEMS, type SystemContext, type SystemUnderTest } from './lib/systems.ts';
import { ensureTools, type ToolName } from './lib/tools.ts';

const SCENARIOS: Readonly<Record<ScenarioId, Scenario>> = {
  rate: rateScenario,
  streams: streamsScenario,
  bodies: bodiesScenario,
  hey: heyScenario,
  scaling: scalingScenario,
};

/** Hard bound on a whole run: past it the bench stops everything and fails. */
const WATCHDOG_MS = { full: 45 * 60_000, ci: 4 * 60_000 };

/**
 * CPU placement, as a client machine and a server machine: the load generator (this process, hey)
 * on the first half of the CPUs; the emulator (standing in for Ollama) and the system under test
 * on the other half, where a real ollana shares the machine with Ollama. Direct then gets the same
 * server CPUs as a proxied path, so throughput and TTFB compare like for like, and a proxy's cost
 * shows as the time it takes from the model server next to it.
 */
function placement(options: BenchOptions): { load: string | null; server: string | null; all: string; text: string } {
  const h = cpuHalves(options.pin);
  return {
    load: h.first,
    server: h.second,
    all: h.all,
    text:
      h.unpinned ??
      `Pinned with taskset as two machines: load generator (bench process, hey) on CPU ${h.first}; emulator and the system under test on CPU ${h.second}`,
  };
}

async function main(options: BenchOptions, log: (msg: string) => void): Promise<number> {
  const clock = new RunClock();
  const place = placement(options);
  if (place.load !== null) pinProcess(process.pid, place.load);
  log(
    `bench: ${options.ci ? 'CI gate' : 'full run'}; scenarios ${options.scenarios.join(', ')}; systems ${options.systems.join(', ')}; ` +
      `${options.rounds} rounds; ${place.text}`,
  );

  const needed: ToolName[] = [];
  if (options.systems.includes('nginx')) needed.push('nginx');
  if (options.scenarios.includes('hey')) needed.push('hey');
  const tools = ensureTools(needed, options.install, log);

  const workDir = mkdtempSync(join(tmpdir(), 'ollana-bench-'));
  const profileDir = options.cpuProf ? join(workDir, 'profiles') : null;
  const problems: string[] = [];
  const statuses: SystemStatus[] = [];
  const running: SystemUnderTest[] = [];
  const scenarios: ScenarioResult[] = [];
  let emulator: RunningEmulator | null = null;
  let fatal: Error | null = null;
  /** The one-hop node's own count of what its fast front carried (CI gate), read before it stops. */
  let front: FrontCounts | null = null;

  try {
    emulator = await startEmulator(place.server);
    const emu = emulator;
    log(`bench: emulator at ${emu.url} (pid ${emu.child.pid})`);
    const sctx: SystemContext = { options, emulator: emu, tools, sutCpus: place.server, workDir, profileDir };

    for (const id of options.systems) {
      const def = SYSTEMS.get(id)!;
      const why = def.unavailable(sctx);
      if (why !== null) {
        statuses.push({ id, label: def.label, ran: false, reason: why });
        log(`bench: ${id}: not measured: ${why}`);
        continue;
      }
      try {
        const sys = await def.start(sctx, options.workers);
        running.push(sys);
        statuses.push({ id, label: sys.label, ran: true, reason: null });
        log(`bench: ${id}: ${sys.label} at ${sys.url}`);
      } catch (err) {
        const msg = `${id} failed to start: ${(err as Error).message}`;
        statuses.push({ id, label: def.label, ran: false, reason: msg });
        if (id === 'one-hop' || id === 'direct') throw new Error(msg);
        problems.push(msg);
        log(`bench: ${msg}`);
      }
    }

    log(`bench: warming up every system (${options.warmup} s of load each)`);
    await warmUp(running, options.warmup, log);

    const ctx: ScenarioContext = {
      options,
      emulator: emu,
      tools,
      systems: running,
      placement: place.text,
      loadCpus: place.load,
      log,
      retryBudget: { remainingMs: options.ci ? 25_000 : 240_000 },
      async withSystems(ids: readonly SystemId[], workers: number, pinned: boolean, fn) {
        const started: SystemUnderTest[] = [];
        const c2: SystemContext = { ...sctx, sutCpus: pinned ? place.server : null };
        try {
          for (const id of ids) {
            const existing = running.find((s) => s.id === id);
            if (id === 'direct' && existing) {
              started.push(existing);
              continue;
            }
            const sys = await SYSTEMS.get(id)!.start(c2, workers);
            started.push(sys);
          }
          await warmUp(
            started.filter((s) => s.id !== 'direct'),
            options.warmup,
            log,
          );
          return await fn(started);
        } finally {
          for (const s of started) {
            if (s.id === 'direct') continue;
            const p = await s.stop();
            if (p !== null) problems.push(p);
          }
        }
      },
      setLoadPlacement(pinned: boolean) {
        if (place.load === null || place.server === null) return;
        pinProcess(process.pid, pinned ? place.load : place.all);
        pinProcess(emu.child.pid, pinned ? place.server : place.all);
      },
    };

    for (const id of SCENARIO_IDS) {
      if (!options.scenarios.includes(id)) continue;
      const sc = SCENARIOS[id];
      const t0 = performance.now();
      log(`bench: scenario ${id}: ${sc.title}`);
      try {
        scenarios.push(await sc.run(ctx));
      } catch (err) {
        const msg = `scenario ${id} broke off: ${(err as Error).stack ?? String(err)}`;
        problems.push(msg);
        log(`bench: ${msg}`);
        scenarios.push({
          id,
          title: sc.title,
          method: '',
          cases: [],
          notes: [],
          skipped: `broke off: ${(err as Error).message}`,
        });
      }
      log(`bench: scenario ${id} took ${((performance.now() - t0) / 1000).toFixed(0)} s`);
    }
    const oneHop = running.find((x) => x.id === 'one-hop');
    if (options.ci && oneHop !== undefined) front = await frontCounts(oneHop.url);
  } catch (err) {
    fatal = err as Error;
    problems.push(`run broke off: ${fatal.message}`);
    log(`bench: ${fatal.message}`);
  } finally {
    for (const s of running) {
      const p = await s.stop().catch((e: Error) => e.message);
      if (p !== null) problems.push(p);
    }
    if (emulator !== null) await stopChild(emulator.child, 5_000);
    await stopAll();
  }

  const profiles: ProfileSummary[] = [];
  if (profileDir !== null) {
    for (const id of ['one-hop', 'one-hop-b'] as const) {
      for (const w of new Set([options.workers, ...options.scaling])) {
        const p = summarizeProfiles(`${id} --workers ${w}`, join(profileDir, `${id}-w${w}`));
        if (p !== null) profiles.push(p);
      }
    }
  }
  const gate: GateCheck[] | null = options.ci
    ? evaluateGate(scenarios, emulator?.settings.tokenIntervalMs ?? 20, front)
    : null;
  const report: RunReport = {
    schema: 1,
    ...clock.finish(),
    ollana: { root: options.ollanaRoot, commit: gitCommit(options.ollanaRoot), args: options.ollanaArgs },
    tools: Object.fromEntries(tools),
    options,
    placement: place.text,
    systems: statuses,
    scenarios,
    targets: evaluateTargets(scenarios, options.workers),
    gate,
    profiles,
    problems,
  };
  const charts = scenarioCharts(report);
  const files = writeReport(options.out, { json: report, markdown: renderMarkdown(report, charts), files: charts });
  if (profileDir === null) rmSync(workDir, { recursive: true, force: true });
  else log(`bench: CPU profiles kept in ${profileDir}`);

  log('');
  for (const t of report.targets) {
    if (t.status === 'n/a') continue;
    log(
      `target ${t.status === 'met' ? 'met   ' : 'MISSED'}  ${t.title}: ${t.measured?.toFixed(2)} ${t.unit} (goal ${t.target})`,
    );
  }
  log(`bench: report written: ${files.join(', ')} (${report.wallSeconds.toFixed(0)} s)`);

  if (gate !== null) {
    log('');
    for (const g of gate) {
      log(
        `${g.pass ? 'pass' : 'FAIL'}  ${g.name}: measured ${g.measured === null ? 'nothing' : g.measured.toFixed(3)}, threshold ${g.op} ${g.threshold}`,
      );
    }
    const failed = gate.filter((g) => !g.pass).length;
    if (failed > 0) {
      log(`bench:ci: one hop fell below its threshold against direct; see ${options.out}/report.md`);
      const busy = busiest(scenarios.flatMap((s) => s.cases));
      if (busy > FOREIGN_LIMIT_PCT) {
        log(
          `bench:ci: note: other processes used up to ${busy.toFixed(0)}% of a CPU during the measurements; ` +
            'on a machine this busy the failure may be noise: run npm run bench:ci again on a quiet machine',
        );
      }
    }
    log(`bench:ci: ${gate.length - failed} passed, ${failed} failed`);
    return failed > 0 || fatal !== null ? 1 : 0;
  }
  return fatal !== null ? 1 : 0;
}

runBench({
  name: 'bench',
  script: 'bench/run.ts',
  help: HELP,
  parse: parseBenchArgs,
  stop: stopAll,
  watchdogMs: (o) => (o.ci ? WATCHDOG_MS.ci : WATCHDOG_MS.full),
  run: main,
});
