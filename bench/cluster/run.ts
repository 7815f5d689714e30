/**
 * Cluster benchmark: how fast a client node finds a server, notices a dead one, and how long
 * requests stall when a server dies (scenarios.ts describes each measurement). Runs ollana nodes,
 * Ollama emulators and small probes (./probes) inside network namespaces on one virtual LAN per run
 * (testkit/netns.ts), so it needs root, `ip` and `unshare`. Every packet stays inside the
 * namespaces it creates; the probes talk only to their own host's loopback.
 *
 *   node bench/cluster/run.ts [--runs 5] [--heartbeat 1000ms] [--heartbeat 300ms] [--out DIR]
 *                             [--scenarios discover,detect-kill,...] [--lanes 1] [--ollana FILE] [-v]
 *
 * Writes report.md and report.json to DIR (default bench/results/cluster-<timestamp>/) and prints a
 * short table. The defaults (5 runs at 1000ms) take about 4 minutes on a 2-CPU machine; a run at
 * 300ms takes about 30 s. Exit status: 0 done, 1 a measurement failed (the report says which),
 * 2 usage error or the machine cannot run it.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { availableParallelism, loadavg, release } from 'node:os';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { NS_PREFIX, netnsSkipReason } from '../../testkit/netns.ts';
import { MAIN, removeHomes, setOllanaMain } from './harness.ts';
import { consoleTable, summarize, writeReport, type Measurement, type ReportMeta } from './report.ts';
import { RunCluster, SCENARIO_IDS, detect, discover, failover, type ScenarioEnv, type ScenarioId, type ScenarioResult } from './scenarios.ts';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url)).replace(/\/$/, '');
/** Bound on one scenario (set-up, measurement, teardown); past it the whole bench stops. */
const SCENARIO_LIMIT_MS = 120_000;

const HELP = `Usage: node bench/cluster/run.ts [options]

  --runs N            runs per heartbeat setting (default 5)
  --heartbeat D       ollana --heartbeat, e.g. 1000ms (default, the product default) or 300ms;
                      repeat it or give a comma list to compare settings (runs interleave)
  --scenarios a,b     subset of: ${SCENARIO_IDS.join(', ')} (default: all)
  --out DIR           report directory (default bench/results/cluster-<timestamp>)
  --ollana FILE       the ollana entry point to run (default: this checkout's bin/ollana.mjs),
                      e.g. another worktree's bin/ollana.mjs to compare versions
  --lanes N           concurrent request loops in the failover scenarios (default 1: one
                      client doing back-to-back requests)
  -v, --verbose       print the phases of each scenario
  -h, --help          this help

Needs root, iproute2 and util-linux (network namespaces). About 45 s per run at
1000ms and 30 s at 300ms on a 2-CPU machine (most of it is node start-up).
`;

class UsageError extends Error {}

function durationMs(text: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text.trim());
  if (!m) throw new UsageError(`--heartbeat must look like 1000ms or 1s, got "${text}"`);
  const v = Number(m[1]) * (m[2] === 's' ? 1000 : 1);
  if (!(v >= 50 && v <= 60_000)) throw new UsageError(`--heartbeat must be 50ms..60s, got "${text}"`);
  return v;
}

interface Options {
  runs: number;
  heartbeats: { text: string; ms: number }[];
  scenarios: ScenarioId[];
  out: string;
  ollana: string;
  lanes: number;
  verbose: boolean;
}

function parse(argv: string[]): Options | null {
  const { values } = parseArgs({
    args: argv, strict: true,
    options: {
      runs: { type: 'string' }, heartbeat: { type: 'string', multiple: true }, scenarios: { type: 'string' },
      out: { type: 'string' }, ollana: { type: 'string' }, lanes: { type: 'string' },
      verbose: { type: 'boolean', short: 'v' }, help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) return null;
  const runs = Number(values.runs ?? '5');
  if (!Number.isInteger(runs) || runs < 1 || runs > 100) throw new UsageError(`--runs must be 1..100, got "${values.runs}"`);
  const hbTexts = (values.heartbeat ?? ['1000ms']).flatMap((h) => h.split(',')).map((h) => h.trim()).filter(Boolean);
  const heartbeats = [...new Set(hbTexts)].map((text) => ({ text, ms: durationMs(text) }));
  const scenarios = (values.scenarios?.split(',').map((s) => s.trim()).filter(Boolean) ?? [...SCENARIO_IDS]) as ScenarioId[];
  for (const s of scenarios) if (!SCENARIO_IDS.includes(s)) throw new UsageError(`unknown scenario "${s}"; known: ${SCENARIO_IDS.join(', ')}`);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d{3}Z$/, 'Z');
  const out = resolve(values.out ?? `${REPO_ROOT}/bench/results/cluster-${stamp}`);
  const ollana = resolve(values.ollana ?? MAIN);
  if (!existsSync(ollana)) throw new UsageError(`--ollana ${ollana} does not exist`);
  const lanes = Number(values.lanes ?? '1');
  if (!Number.isInteger(lanes) || lanes < 1 || lanes > 64) throw new UsageError(`--lanes must be 1..64, got "${values.lanes}"`);
  return { verbose: values.verbose ?? false, lanes, runs, heartbeats, scenarios, out, ollana };
}

function runScenario(c: RunCluster, id: ScenarioId, env: ScenarioEnv): Promise<ScenarioResult> {
  switch (id) {
    case 'discover': return discover(c, env);
    case 'detect-kill': return detect(c, env, 'kill');
    case 'detect-cut': return detect(c, env, 'cut');
    case 'bye': return detect(c, env, 'bye');
    case 'failover-kill': return failover(c, env, 'kill');
    case 'failover-cut': return failover(c, env, 'cut');
    default: {
      const never: never = id;
      throw new Error(`unknown scenario ${String(never)}`);
    }
  }
}

const OVERTIME = 'scenario took longer than';

/** One scenario, bounded by SCENARIO_LIMIT_MS; never throws. */
async function measure(cluster: RunCluster, scenario: ScenarioId, env: ScenarioEnv): Promise<Measurement> {
  const t = Date.now();
  let result: ScenarioResult | null = null;
  let error: string | null = null;
  let watchdog: NodeJS.Timeout | undefined;
  try {
    result = await Promise.race([
      runScenario(cluster, scenario, env),
      new Promise<never>((_, reject) => {
        watchdog = setTimeout(() => reject(new Error(`${OVERTIME} ${SCENARIO_LIMIT_MS} ms`)), SCENARIO_LIMIT_MS);
      }),
    ]);
  } catch (err) {
    error = (err as Error).stack ?? String(err);
  } finally {
    clearTimeout(watchdog);
  }
  return {
    run: env.run, heartbeat: env.heartbeat, heartbeatMs: env.heartbeatMs, scenario,
    startedAt: new Date(t).toISOString(), wallMs: Date.now() - t, result, error, warnings: cluster.warnings(t),
  };
}

function oneLine(r: ScenarioResult): string {
  const o = r as unknown as Record<string, unknown>;
  return Object.entries(o).filter(([k, v]) => k !== 'scenario' && typeof v !== 'object')
    .map(([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(0) : String(v)}`).join(' ');
}

function gitCommit(): string | null {
  try {
    const head = execFileSync('git', ['-C', REPO_ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['-C', REPO_ROOT, 'status', '--porcelain', '--', 'src'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    return dirty === '' ? head : `${head} + uncommitted src changes`;
  } catch {
    return null;
  }
}

function otherNamespaces(): number {
  try {
    const out = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000 });
    return out.split('\n').filter((l) => l.startsWith(NS_PREFIX)).length;
  } catch {
    return 0;
  }
}

async function main(): Promise<number> {
  let opts: Options | null;
  try {
    opts = parse(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench/cluster: ${(err as Error).message}\n`);
    return 2;
  }
  if (opts === null) {
    process.stdout.write(HELP);
    return 0;
  }
  const skip = netnsSkipReason({ nft: false });
  if (skip !== undefined) {
    process.stderr.write(`bench/cluster: cannot run here: ${skip}\n`);
    return 2;
  }
  mkdirSync(opts.out, { recursive: true });
  setOllanaMain(opts.ollana);
  const log = (msg: string): void => { process.stdout.write(`${msg}\n`); };
  const startedAt = new Date();
  const loadBefore = loadavg();
  const others = otherNamespaces();
  log(`cluster bench: ${opts.runs} run(s) x heartbeat ${opts.heartbeats.map((h) => h.text).join(', ')} x ${opts.scenarios.join(', ')}`);
  log(`report: ${opts.out}`);
  if (opts.ollana !== MAIN) log(`ollana: ${opts.ollana}`);
  if (others > 0) log(`note: ${others} network namespaces of other runs exist; the machine is shared (load ${loadBefore.map((x) => x.toFixed(1)).join(' ')})`);

  const measurements: Measurement[] = [];
  let aborted: string | null = null;
  outer: for (let run = 0; run < opts.runs; run++) {
    for (const hb of opts.heartbeats) {
      const base = { heartbeat: hb.text, heartbeatMs: hb.ms, run, log, verbose: opts.verbose, lanes: opts.lanes };
      const cluster = new RunCluster({ ...base, index: 0 });
      try {
        for (const [index, scenario] of opts.scenarios.entries()) {
          const m = await measure(cluster, scenario, { ...base, index });
          measurements.push(m);
          log(`[run ${run} ${hb.text} ${scenario} ${(m.wallMs / 1000).toFixed(1)} s] ${m.result !== null ? oneLine(m.result) : `FAILED: ${m.error!.split('\n').slice(0, 3).join(' / ')}`}`);
          if (m.error?.includes(OVERTIME)) {
            aborted = `run ${run} ${hb.text} ${scenario} exceeded ${SCENARIO_LIMIT_MS} ms: stopped there`;
            break outer;
          }
          // A failed scenario may leave the cluster in any state: the next one starts on a fresh LAN.
          if (m.error !== null) await cluster.close();
        }
      } finally {
        await cluster.close();
      }
    }
  }
  if (aborted !== null) log(aborted);

  const finishedAt = new Date();
  const meta: ReportMeta = {
    command: `node bench/cluster/run.ts ${process.argv.slice(2).join(' ')}`.trim(),
    startedAt: startedAt.toISOString(), finishedAt: finishedAt.toISOString(),
    wallS: (finishedAt.getTime() - startedAt.getTime()) / 1000,
    runs: opts.runs, lanes: opts.lanes, heartbeats: opts.heartbeats.map((h) => h.text), scenarios: opts.scenarios,
    machine: { cpus: availableParallelism(), loadBefore, loadAfter: loadavg(), kernel: release(), node: process.version },
    commit: opts.ollana === MAIN ? gitCommit() : `not this checkout: ${opts.ollana}`, ollana: opts.ollana, otherNamespacesAtStart: others,
    aborted,
  };
  const sums = summarize(measurements, meta.heartbeats, opts.scenarios);
  writeReport(opts.out, meta, measurements, sums);
  log('');
  log(consoleTable(sums));
  log('');
  log(`took ${meta.wallS.toFixed(0)} s; report: ${opts.out}/report.md`);
  const failed = measurements.filter((m) => m.error !== null).length;
  if (failed > 0) log(`${failed} measurement(s) failed: see the report`);
  return failed > 0 || aborted !== null ? 1 : 0;
}

// Data directories go on every way out; the LANs are removed by netns.ts's own exit/signal hooks.
process.on('exit', removeHomes);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    removeHomes();
    process.exit(128 + (sig === 'SIGINT' ? 2 : sig === 'SIGTERM' ? 15 : 1));
  });
}

main().then(
  (code) => { removeHomes(); process.exit(code); },
  (err: unknown) => {
    process.stderr.write(`bench/cluster: ${(err as Error).stack ?? String(err)}\n`);
    removeHomes();
    process.exit(1);
  },
);
