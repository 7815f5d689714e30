/**
 * The load bench's options (`npm run bench`, `npm run bench:ci`), declared for the shared parser
 * (./cli.ts: flag > BENCH_* > default). The full run and the CI gate share them; `--ci` only swaps
 * the defaults for the short ones.
 */
import {
  BenchUsageError,
  bool,
  byCi,
  helpText,
  ids,
  integers,
  parseOptions,
  positive,
  text,
  words,
  type Env,
  type OptionSpec,
  type Parsed,
} from './cli.ts';
import { REPO_ROOT } from './run-meta.ts';

/**
 * Scenarios run in this order on the same processes (scaling starts its own). The 1 GiB transfers
 * come after every request-load scenario: a process keeps the RSS a large transfer left, and the
 * peak-RSS target reads the request-load scenarios' peaks.
 */
export const SCENARIO_IDS = ['rate', 'streams', 'hey', 'bodies', 'scaling'] as const;
export type ScenarioId = (typeof SCENARIO_IDS)[number];

export const RATE_CASE_IDS = ['tags', 'generate', 'embed'] as const;
export type RateCaseId = (typeof RATE_CASE_IDS)[number];

/**
 * `one-hop-b` is a second ollana, started from BENCH_OLLANA_B_ROOT and/or with BENCH_OLLANA_B_ARGS,
 * so a tuning change is measured against the current code in the same run, alternating.
 * `naive` is a minimal Node proxy (lib/naive-proxy.ts): what node:http + undici cost, for attribution;
 * `raw` a byte relay on net sockets (lib/raw-proxy.ts): what Node can reach below them.
 */
export const SYSTEM_IDS = ['direct', 'one-hop', 'one-hop-b', 'two-hop', 'nginx', 'naive', 'raw'] as const;
export type SystemId = (typeof SYSTEM_IDS)[number];

const none = (): string[] => [];

/** Every option: flag, BENCH_ variable, help, parser and default. */
export const BENCH_OPTIONS = {
  ci: {
    flag: 'ci',
    boolean: 'on',
    env: 'CI',
    help: 'short CI gate: one-hop vs direct, exits 1 when a ratio falls below its threshold',
    parse: bool,
    fallback: () => false,
  },
  out: {
    flag: 'out',
    arg: 'DIR',
    env: 'OUT',
    help: 'report directory',
    shows: 'default bench/results/<timestamp>[-ci]',
    parse: text,
    fallback: (d) => `${REPO_ROOT}/bench/results/${d.stamp}${d.ci ? '-ci' : ''}`,
  },
  rounds: {
    flag: 'rounds',
    arg: 'N',
    env: 'ROUNDS',
    help: 'rounds, systems alternating A B C A B C',
    shows: 'default 3, CI 3',
    parse: positive(),
    fallback: () => 3,
  },
  /** Seconds per autocannon measurement. */
  duration: {
    flag: 'duration',
    arg: 'S',
    env: 'DURATION',
    help: 'seconds per request-rate measurement',
    shows: 'default 3, CI 2.5',
    parse: positive({ integer: false }),
    fallback: byCi(3, 2.5),
  },
  /** Seconds of load per system before any measurement, so JIT and heap sizing reach steady state. */
  warmup: {
    flag: 'warmup',
    arg: 'S',
    env: 'WARMUP',
    help: 'seconds of load per system before measuring: a Node proxy\nneeds ~10 s of load before its CPU per request settles (JIT, heap)',
    shows: 'default 10, CI 6',
    parse: positive({ integer: false, zero: true }),
    fallback: byCi(10, 6),
  },
  /** ollana --workers and nginx worker_processes (the scaling scenario overrides it). */
  workers: {
    flag: 'workers',
    arg: 'N',
    env: 'WORKERS',
    help: 'ollana --workers and nginx worker_processes',
    shows: 'default 2',
    parse: positive(),
    fallback: () => 2,
  },
  scenarios: {
    flag: 'scenarios',
    arg: 'a,b',
    env: 'SCENARIOS',
    help: SCENARIO_IDS.join(', '),
    shows: 'default all, CI rate,streams',
    parse: ids(SCENARIO_IDS),
    fallback: byCi<ScenarioId[]>([...SCENARIO_IDS], ['rate', 'streams']),
  },
  systems: {
    flag: 'systems',
    arg: 'a,b',
    env: 'SYSTEMS',
    help: `${SYSTEM_IDS.join(', ')};\nnaive and raw are reference Node proxies, see bench/README.md`,
    shows: 'default direct,one-hop,two-hop,nginx, CI direct,one-hop; any --ollana-b-* adds one-hop-b',
    parse: ids(SYSTEM_IDS),
    fallback: byCi<SystemId[]>(['direct', 'one-hop', 'two-hop', 'nginx'], ['direct', 'one-hop']),
  },
  /** Pin load + emulator to one CPU and the system under test to the other (taskset). */
  pin: {
    flag: 'no-pin',
    boolean: 'off',
    env: 'PIN',
    help: 'do not pin processes to CPUs',
    parse: bool,
    fallback: () => true,
  },
  concurrency: {
    flag: 'concurrency',
    arg: 'a,b',
    env: 'CONCURRENCY',
    help: 'request-rate concurrency levels',
    shows: 'default 1,32,256, CI 32',
    parse: integers(),
    fallback: byCi([1, 32, 256], [32]),
  },
  rateCases: {
    flag: 'rate-cases',
    arg: 'a,b',
    env: 'RATE_CASES',
    help: `request-rate requests: ${RATE_CASE_IDS.join(', ')}`,
    shows: 'default all, CI generate',
    parse: ids(RATE_CASE_IDS),
    fallback: byCi<RateCaseId[]>([...RATE_CASE_IDS], ['generate']),
  },
  streams: {
    flag: 'streams',
    arg: 'a,b',
    env: 'STREAMS',
    help: 'concurrent streams per fan-out case',
    shows: 'default 200,500,1000, CI 200',
    parse: integers(),
    fallback: byCi([200, 500, 1000], [200]),
  },
  scaling: {
    flag: 'scaling',
    arg: 'a,b',
    env: 'SCALING',
    help: '--workers values of the scaling scenario',
    shows: 'default 1,2,4,8',
    parse: integers(),
    fallback: () => [1, 2, 4, 8],
  },
  /** Size of each large body, bytes. */
  bodyBytes: {
    flag: 'body-mib',
    arg: 'N',
    env: 'BODY_MIB',
    help: 'size of each large body in MiB',
    shows: 'default 1024',
    parse: (raw, source) => positive()(raw, source) * 1024 * 1024,
    fallback: () => 1024 * 1024 * 1024,
  },
  install: {
    flag: 'no-install',
    boolean: 'off',
    env: 'INSTALL',
    help: 'never apt-get install nginx or hey',
    parse: bool,
    fallback: () => true,
  },
  cpuProf: {
    flag: 'cpu-prof',
    boolean: 'on',
    env: 'CPU_PROF',
    help: 'run ollana under node --cpu-prof; the report lists top\nself-time functions',
    parse: bool,
    fallback: () => false,
  },
  ollanaRoot: {
    flag: 'ollana-root',
    arg: 'DIR',
    env: 'OLLANA_ROOT',
    help: 'checkout whose bin/ollana.mjs is one-hop',
    shows: 'default this repo',
    parse: text,
    fallback: () => REPO_ROOT,
  },
  ollanaArgs: {
    flag: 'ollana-args',
    arg: '"..."',
    env: 'OLLANA_ARGS',
    help: 'extra ollana serve flags for one-hop',
    parse: words,
    fallback: none,
  },
  ollanaNodeArgs: {
    flag: 'ollana-node-args',
    arg: '"..."',
    env: 'OLLANA_NODE_ARGS',
    help: 'node flags for one-hop, e.g. --max-semi-space-size=2',
    parse: words,
    fallback: none,
  },
  /** Checkout, extra flags and node flags of the optional one-hop-b system; null root = same as one-hop. */
  ollanaBRoot: {
    flag: 'ollana-b-root',
    arg: 'DIR',
    env: 'OLLANA_B_ROOT',
    help: 'checkout of the one-hop-b system',
    parse: text,
    fallback: (): string | null => null,
  },
  ollanaBArgs: {
    flag: 'ollana-b-args',
    arg: '"..."',
    env: 'OLLANA_B_ARGS',
    help: 'extra flags of one-hop-b',
    parse: words,
    fallback: none,
  },
  ollanaBNodeArgs: {
    flag: 'ollana-b-node-args',
    arg: '"..."',
    env: 'OLLANA_B_NODE_ARGS',
    help: 'node flags of one-hop-b',
    parse: words,
    fallback: none,
  },
  ollanaLogLevel: {
    flag: 'ollana-log-level',
    arg: 'L',
    env: 'OLLANA_LOG_LEVEL',
    help: 'ollana --log-level',
    shows: 'default info: nothing per request',
    parse: text,
    fallback: () => 'info',
  },
} satisfies Record<string, OptionSpec<unknown>>;

export type BenchOptions = Parsed<typeof BENCH_OPTIONS>;

export const HELP = helpText(
  `Usage: node bench/run.ts [options]        (npm run bench / npm run bench:ci)

Runs the Ollama emulator, the systems under test and the load on loopback, stops all of it, and
writes report.md, report.json and chart.svg. Every option also has an environment variable.`,
  BENCH_OPTIONS,
  'BENCH_',
);

/** argv (without node and script) and environment -> frozen options. Throws BenchUsageError. */
export function parseBenchArgs(
  argv: readonly string[],
  env: Env,
  now = new Date(),
): { options: BenchOptions; help: boolean } {
  const { options, given, help } = parseOptions(BENCH_OPTIONS, argv, env, 'BENCH_', { now });
  const o = options.ollanaBRoot !== null || options.ollanaBArgs.length > 0 || options.ollanaBNodeArgs.length > 0;
  const systems = !given.has('systems') && o ? [...options.systems, 'one-hop-b' as const] : options.systems;
  if (options.ci && !systems.includes('one-hop'))
    throw new BenchUsageError('--ci gates one-hop against direct: --systems must include one-hop');
  return { options: Object.freeze({ ...options, systems }), help };
}
