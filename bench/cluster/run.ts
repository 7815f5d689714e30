/**
 * Cluster benchmark: how fast a client node finds a server, notices a dead one, and how long
 * requests stall when a server dies (scenarios.ts describes each measurement). Runs ollana nodes,
 * Ollama emulators and small probes (./probes) inside network namespaces on one virtual LAN per run
 * (testkit/netns.ts), so it needs root, `ip` and `unshare`. Every packet stays inside the
 * namespaces it creates; the probes talk only to their own host's loopback.
 *
 *   node bench/cluster/run.ts [options]    (--help lists them, each also a BENCH_CLUSTER_* variable)
 *
 * Writes report.md and report.json to DIR (default bench/results/cluster-<timestamp>/) and prints a
 * short table. The defaults (5 runs at 1000ms) take about 4 minutes on a 2-CPU machine; a run at
 * 300ms takes about 30 s. Exit status: 0 done, 1 a measurement failed (the report says which),
 * 2 usage error or the machine cannot run it.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { NS_PREFIX, netnsSkipReason } from '../../testkit/netns.ts';
import {
  BenchUsageError,
  bool,
  existingFile,
  helpText,
  ids,
  parseOptions,
  path,
  positive,
  type OptionSpec,
  type Parsed,
} from '../lib/cli.ts';
import { writeReport } from '../lib/report/write.ts';
import { REPO_ROOT, RunClock, gitCommit } from '../lib/run-meta.ts';
import { runBench } from '../lib/runner.ts';
import { MAIN, removeHomes, setOllanaMain } from './harness.ts';
import { consoleTable, markdown, summarize, type Measurement, type ReportMeta } from './report.ts';
import {
  RunCluster,
  SCENARIO_IDS,
  detect,
  discover,
  failover,
  type ScenarioEnv,
  type ScenarioId,
  type ScenarioResult,
} from './scenarios.ts';

/** Bound on one scenario (set-up, measurement, teardown); past it the whole bench stops. */
const SCENARIO_LIMIT_MS = 120_000;

/** The scenarios, by id (scenarios.ts describes each measurement). */
const SCENARIOS: Readonly<Record<ScenarioId, (c: RunCluster, env: ScenarioEnv) => Promise<ScenarioResult>>> = {
  discover: discover,
  'detect-kill': (c, env) => detect(c, env, 'kill'),
  'detect-cut': (c, env) => detect(c, env, 'cut'),
  bye: (c, env) => detect(c, env, 'bye'),
  'failover-kill': (c, env) => failover(c, env, 'kill'),
  'failover-cut': (c, env) => failover(c, env, 'cut'),
};

/** One --heartbeat value: 1000ms, 1s; 50ms..60s. */
function heartbeat(text: string, source: string): { text: string; ms: number } {
  const m = /^(\d+(?:\.\d+)?)(ms|s)?$/.exec(text.trim());
  if (!m) throw new BenchUsageError(`${source} must look like 1000ms or 1s, got "${text}"`);
  const ms = Number(m[1]) * (m[2] === 's' ? 1000 : 1);
  if (!(ms >= 50 && ms <= 60_000)) throw new BenchUsageError(`${source} must be 50ms..60s, got "${text}"`);
  return { text, ms };
}

/** Every option: flag, BENCH_CLUSTER_ variable, help, parser and default. */
const OPTIONS = {
  runs: {
    flag: 'runs',
    arg: 'N',
    env: 'RUNS',
    help: 'runs per heartbeat setting',
    shows: 'default 5',
    parse: positive({ min: 1, max: 100 }),
    fallback: () => 5,
  },
  heartbeats: {
    flag: 'heartbeat',
    arg: 'D',
    env: 'HEARTBEAT',
    repeat: true,
    shows: 'default 1000ms',
    help: 'ollana --heartbeat, e.g. 1000ms (the product default) or 300ms;\nrepeat it or give a comma list to compare settings (runs interleave)',
    parse: (raw: string, source: string) =>
      [
        ...new Set(
          raw
            .split(',')
            .map((h) => h.trim())
            .filter(Boolean),
        ),
      ].map((h) => heartbeat(h, source)),
    fallback: () => [{ text: '1000ms', ms: 1000 }],
  },
  scenarios: {
    flag: 'scenarios',
    arg: 'a,b',
    env: 'SCENARIOS',
    help: `subset of: ${SCENARIO_IDS.join(', ')}`,
    shows: 'default: all',
    parse: ids(SCENARIO_IDS),
    fallback: () => [...SCENARIO_IDS],
  },
  out: {
    flag: 'out',
    arg: 'DIR',
    env: 'OUT',
    help: 'report directory',
    shows: 'default bench/results/cluster-<timestamp>',
    parse: path,
    fallback: (d) => `${REPO_ROOT}/bench/results/cluster-${d.stamp}`,
  },
  ollana: {
    flag: 'ollana',
    arg: 'FILE',
    env: 'OLLANA',
    help: "the ollana entry point to run, e.g. another worktree's\nbin/ollana.mjs to compare versions",
    shows: "default: this checkout's bin/ollana.mjs",
    parse: existingFile,
    fallback: () => MAIN,
  },
  lanes: {
    flag: 'lanes',
    arg: 'N',
    env: 'LANES',
    help: 'concurrent request loops in the failover scenarios',
    shows: 'default 1: one client doing back-to-back requests',
    parse: positive({ min: 1, max: 64 }),
    fallback: () => 1,
  },
  verbose: {
    flag: 'verbose',
    short: 'v',
    boolean: 'on',
    env: 'VERBOSE',
    help: 'print the phases of each scenario',
    parse: bool,
    fallback: () => false,
  },
} satisfies Record<string, OptionSpec<unknown>>;
type Options = Parsed<typeof OPTIONS>;

const HELP = helpText(
  'Usage: node bench/cluster/run.ts [options]        (npm run bench:cluster)',
  OPTIONS,
  'BENCH_CLUSTER_',
  `Needs root, iproute2 and util-linux (network namespaces). About 45 s per run at
1000ms and 30 s at 300ms on a 2-CPU machine (most of it is node start-up).`,
);

const OVERTIME = 'scenario took longer than';

/** One scenario, bounded by SCENARIO_LIMIT_MS; never throws. */
async function measure(cluster: RunCluster, scenario: ScenarioId, env: ScenarioEnv): Promise<Measurement> {
  const t = Date.now();
  let result: ScenarioResult | null = null;
  let error: string | null = null;
  let watchdog: NodeJS.Timeout | undefined;
  try {
    result = await Promise.race([
      SCENARIOS[scenario](cluster, env),
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
    run: env.run,
    heartbeat: env.heartbeat,
    heartbeatMs: env.heartbeatMs,
    scenario,
    startedAt: new Date(t).toISOString(),
    wallMs: Date.now() - t,
    result,
    error,
    warnings: cluster.warnings(t),
  };
}

function oneLine(r: ScenarioResult): string {
  const o = r as unknown as Record<string, unknown>;
  return Object.entries(o)
    .filter(([k, v]) => k !== 'scenario' && typeof v !== 'object')
    .map(([k, v]) => `${k}=${typeof v === 'number' && !Number.isInteger(v) ? v.toFixed(0) : String(v)}`)
    .join(' ');
}

function otherNamespaces(): number {
  try {
    const out = execFileSync('ip', ['netns', 'list'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: 5_000,
    });
    return out.split('\n').filter((l) => l.startsWith(NS_PREFIX)).length;
  } catch {
    return 0;
  }
}

async function main(opts: Options, log: (msg: string) => void): Promise<number> {
  mkdirSync(opts.out, { recursive: true });
  setOllanaMain(opts.ollana);
  const clock = new RunClock();
  const others = otherNamespaces();
  log(
    `cluster bench: ${opts.runs} run(s) x heartbeat ${opts.heartbeats.map((h) => h.text).join(', ')} x ${opts.scenarios.join(', ')}`,
  );
  log(`report: ${opts.out}`);
  if (opts.ollana !== MAIN) log(`ollana: ${opts.ollana}`);
  if (others > 0)
    log(
      `note: ${others} network namespaces of other runs exist; the machine is shared (load ${clock.loadBefore.map((x) => x.toFixed(1)).join(' ')})`,
    );

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
          log(
            `[run ${run} ${hb.text} ${scenario} ${(m.wallMs / 1000).toFixed(1)} s] ${m.result !== null ? oneLine(m.result) : `FAILED: ${m.error!.split('\n').slice(0, 3).join(' / ')}`}`,
          );
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

  const { startedAt, finishedAt, wallSeconds, machine } = clock.finish();
  const meta: ReportMeta = {
    command: `node bench/cluster/run.ts ${process.argv.slice(2).join(' ')}`.trim(),
    startedAt,
    finishedAt,
    wallS: wallSeconds,
    runs: opts.runs,
    lanes: opts.lanes,
    heartbeats: opts.heartbeats.map((h) => h.text),
    scenarios: opts.scenarios,
    machine,
    commit: opts.ollana === MAIN ? gitCommit() : `not this checkout: ${opts.ollana}`,
    ollana: opts.ollana,
    otherNamespacesAtStart: others,
    aborted,
  };
  const sums = summarize(measurements, meta.heartbeats, opts.scenarios);
  writeReport(opts.out, { json: { meta, summary: sums, measurements }, markdown: markdown(meta, measurements, sums) });
  log('');
  log(consoleTable(sums));
  log('');
  log(`took ${meta.wallS.toFixed(0)} s; report: ${opts.out}/report.md`);
  const failed = measurements.filter((m) => m.error !== null).length;
  if (failed > 0) log(`${failed} measurement(s) failed: see the report`);
  return failed > 0 || aborted !== null ? 1 : 0;
}

runBench({
  name: 'bench/cluster',
  script: 'bench/cluster/run.ts',
  help: HELP,
  parse: (argv, env) => parseOptions(OPTIONS, argv, env, 'BENCH_CLUSTER_'),
  cannotRun: () => netnsSkipReason({ nft: false }),
  // Data directories go on every way out; the LANs are removed by netns.ts's own exit/signal hooks.
  cleanup: removeHomes,
  run: main,
});
