/**
 * Bench settings: argv > environment (BENCH_*) > defaults, parsed by a pure function so a typo
 * fails before any process starts. The full run and the CI gate share the parser; `--ci` only
 * swaps the defaults for the short ones.
 */
import { parseArgs } from 'node:util';

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

export interface BenchOptions {
  readonly ci: boolean;
  readonly out: string;
  readonly rounds: number;
  /** Seconds per autocannon measurement. */
  readonly duration: number;
  /** Seconds of load per system before any measurement, so JIT and heap sizing reach steady state. */
  readonly warmup: number;
  /** ollana --workers and nginx worker_processes (the scaling scenario overrides it). */
  readonly workers: number;
  readonly scenarios: readonly ScenarioId[];
  readonly systems: readonly SystemId[];
  /** Pin load + emulator to one CPU and the system under test to the other (taskset). */
  readonly pin: boolean;
  /** Concurrency levels of the request-rate scenario. */
  readonly concurrency: readonly number[];
  /** Request kinds of the request-rate scenario. */
  readonly rateCases: readonly RateCaseId[];
  /** Stream counts of the fan-out scenario. */
  readonly streams: readonly number[];
  /** Worker counts of the scaling scenario. */
  readonly scaling: readonly number[];
  /** Size of each large body, bytes. */
  readonly bodyBytes: number;
  /** Install nginx and hey with apt-get when they are missing. */
  readonly install: boolean;
  /** Run ollana under `node --cpu-prof` and summarise the profiles in the report. */
  readonly cpuProf: boolean;
  /** Checkout whose bin/ollana.mjs is "one-hop" (default: this repository). */
  readonly ollanaRoot: string;
  /** Extra `ollana serve` flags for one-hop, e.g. "--upstream-connections 64". */
  readonly ollanaArgs: readonly string[];
  /** Extra node flags for one-hop, e.g. "--max-semi-space-size=2". */
  readonly ollanaNodeArgs: readonly string[];
  /** Checkout, extra flags and node flags of the optional one-hop-b system; null root = same as one-hop. */
  readonly ollanaBRoot: string | null;
  readonly ollanaBArgs: readonly string[];
  readonly ollanaBNodeArgs: readonly string[];
  readonly ollanaLogLevel: string;
  readonly help: boolean;
}

export type Env = Readonly<Record<string, string | undefined>>;

export const HELP = `Usage: node bench/run.ts [options]        (npm run bench / npm run bench:ci)

Runs the Ollama emulator, the systems under test and the load on loopback, stops all of it, and
writes report.md, report.json and chart.svg. Every option also has an environment variable.

  --ci                 short CI gate: one-hop vs direct, exits 1 when a ratio falls below its threshold
  --out DIR            report directory (BENCH_OUT; default bench/results/<timestamp>[-ci])
  --rounds N           rounds, systems alternating A B C A B C (BENCH_ROUNDS; default 3, CI 3)
  --duration S         seconds per request-rate measurement (BENCH_DURATION; default 3, CI 2.5)
  --warmup S           seconds of load per system before measuring (BENCH_WARMUP; default 10, CI 6): a
                       Node proxy needs ~10 s of load before its CPU per request settles (JIT, heap)
  --workers N          ollana --workers and nginx worker_processes (BENCH_WORKERS; default 2)
  --scenarios a,b      ${SCENARIO_IDS.join(', ')} (BENCH_SCENARIOS; default all, CI rate,streams)
  --systems a,b        ${SYSTEM_IDS.join(', ')} (BENCH_SYSTEMS; default direct,one-hop,two-hop,nginx;
                       naive and raw are reference Node proxies, see bench/README.md)
  --concurrency a,b    request-rate concurrency levels (BENCH_CONCURRENCY; default 1,32,256)
  --rate-cases a,b     request-rate requests: ${RATE_CASE_IDS.join(', ')} (BENCH_RATE_CASES; default all, CI generate)
  --streams a,b        concurrent streams per fan-out case (BENCH_STREAMS; default 200,500,1000)
  --scaling a,b        --workers values of the scaling scenario (BENCH_SCALING; default 1,2,4,8)
  --body-mib N         size of each large body in MiB (BENCH_BODY_MIB; default 1024)
  --no-pin             do not pin processes to CPUs (BENCH_PIN=0)
  --no-install         never apt-get install nginx or hey (BENCH_INSTALL=0)
  --cpu-prof           run ollana under node --cpu-prof; the report lists top self-time functions
                       (BENCH_CPU_PROF=1)
  --ollana-root DIR    checkout whose bin/ollana.mjs is one-hop (BENCH_OLLANA_ROOT; default this repo)
  --ollana-args "..."  extra ollana serve flags for one-hop (BENCH_OLLANA_ARGS)
  --ollana-node-args "..."  node flags for one-hop, e.g. --max-semi-space-size=2 (BENCH_OLLANA_NODE_ARGS)
  --ollana-b-root DIR  checkout of the one-hop-b system (BENCH_OLLANA_B_ROOT)
  --ollana-b-args "…"  extra flags of one-hop-b (BENCH_OLLANA_B_ARGS)
  --ollana-b-node-args "…"  node flags of one-hop-b (BENCH_OLLANA_B_NODE_ARGS); any --ollana-b-* adds one-hop-b
  --ollana-log-level L ollana --log-level (BENCH_OLLANA_LOG_LEVEL; default info: nothing per request)
  -h, --help           this text
`;

export class BenchUsageError extends Error {
  override readonly name = 'BenchUsageError';
}

function positive(name: string, raw: string, integer: boolean): number {
  const n = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new BenchUsageError(`${name} must be a positive ${integer ? 'integer' : 'number'}, got "${raw}"`);
  }
  return n;
}

function numberList(name: string, raw: string): number[] {
  const list = raw.split(',').map((s) => s.trim()).filter((s) => s !== '').map((s) => positive(name, s, true));
  if (list.length === 0) throw new BenchUsageError(`${name} needs at least one value`);
  return list;
}

function idList<T extends string>(name: string, raw: string, known: readonly T[]): T[] {
  const list = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (const id of list) {
    if (!(known as readonly string[]).includes(id)) throw new BenchUsageError(`${name}: unknown "${id}"; choose from ${known.join(', ')}`);
  }
  if (list.length === 0) throw new BenchUsageError(`${name} needs at least one value`);
  return list as T[];
}

/** Splits "--a 1 --b" into argv words; quotes are not needed for ollana's flags. */
function words(raw: string): string[] {
  return raw.split(/\s+/).filter((s) => s !== '');
}

function flagOn(raw: string | undefined): boolean | undefined {
  if (raw === undefined || raw === '') return undefined;
  return !['0', 'false', 'no', 'off'].includes(raw.toLowerCase());
}

/** argv (without node and script) and environment -> frozen options. Throws BenchUsageError. */
export function parseBenchArgs(argv: readonly string[], env: Env, repoRoot: string, now = new Date()): BenchOptions {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        ci: { type: 'boolean' },
        out: { type: 'string' },
        rounds: { type: 'string' },
        duration: { type: 'string' },
        warmup: { type: 'string' },
        workers: { type: 'string' },
        scenarios: { type: 'string' },
        systems: { type: 'string' },
        concurrency: { type: 'string' },
        'rate-cases': { type: 'string' },
        streams: { type: 'string' },
        scaling: { type: 'string' },
        'body-mib': { type: 'string' },
        'no-pin': { type: 'boolean' },
        'no-install': { type: 'boolean' },
        'cpu-prof': { type: 'boolean' },
        'ollana-root': { type: 'string' },
        'ollana-args': { type: 'string' },
        'ollana-b-root': { type: 'string' },
        'ollana-b-args': { type: 'string' },
        'ollana-node-args': { type: 'string' },
        'ollana-b-node-args': { type: 'string' },
        'ollana-log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new BenchUsageError(`${(err as Error).message}; see node bench/run.ts --help`);
  }
  const pick = (flag: string | undefined, envName: string): string | undefined => flag ?? (env[envName] || undefined);
  const ci = values.ci ?? flagOn(env.BENCH_CI) ?? false;
  const stamp = now.toISOString().replace(/[:.]/g, '-').slice(0, 19);

  const rounds = pick(values.rounds, 'BENCH_ROUNDS');
  const duration = pick(values.duration, 'BENCH_DURATION');
  const workers = pick(values.workers, 'BENCH_WORKERS');
  const warmup = pick(values.warmup, 'BENCH_WARMUP');
  const scenarios = pick(values.scenarios, 'BENCH_SCENARIOS');
  const systems = pick(values.systems, 'BENCH_SYSTEMS');
  const concurrency = pick(values.concurrency, 'BENCH_CONCURRENCY');
  const rateCases = pick(values['rate-cases'], 'BENCH_RATE_CASES');
  const streams = pick(values.streams, 'BENCH_STREAMS');
  const scaling = pick(values.scaling, 'BENCH_SCALING');
  const bodyMib = pick(values['body-mib'], 'BENCH_BODY_MIB');
  const bRoot = pick(values['ollana-b-root'], 'BENCH_OLLANA_B_ROOT') ?? null;
  const bArgs = words(pick(values['ollana-b-args'], 'BENCH_OLLANA_B_ARGS') ?? '');
  const bNodeArgs = words(pick(values['ollana-b-node-args'], 'BENCH_OLLANA_B_NODE_ARGS') ?? '');

  let systemList = systems !== undefined ? idList('--systems', systems, SYSTEM_IDS)
    : ci ? ['direct', 'one-hop'] as SystemId[] : ['direct', 'one-hop', 'two-hop', 'nginx'] as SystemId[];
  if (systems === undefined && (bRoot !== null || bArgs.length > 0 || bNodeArgs.length > 0)) systemList = [...systemList, 'one-hop-b'];

  const opts: BenchOptions = {
    ci,
    out: pick(values.out, 'BENCH_OUT') ?? `${repoRoot}/bench/results/${stamp}${ci ? '-ci' : ''}`,
    rounds: rounds !== undefined ? positive('--rounds', rounds, true) : 3,
    duration: duration !== undefined ? positive('--duration', duration, false) : ci ? 2.5 : 3,
    warmup: warmup !== undefined ? (warmup.trim() === '0' ? 0 : positive('--warmup', warmup, false)) : ci ? 6 : 10,
    workers: workers !== undefined ? positive('--workers', workers, true) : 2,
    scenarios: scenarios !== undefined ? idList('--scenarios', scenarios, SCENARIO_IDS)
      : ci ? ['rate', 'streams'] : [...SCENARIO_IDS],
    systems: systemList,
    pin: values['no-pin'] ? false : flagOn(env.BENCH_PIN) ?? true,
    concurrency: concurrency !== undefined ? numberList('--concurrency', concurrency) : ci ? [32] : [1, 32, 256],
    rateCases: rateCases !== undefined ? idList('--rate-cases', rateCases, RATE_CASE_IDS) : ci ? ['generate'] : [...RATE_CASE_IDS],
    streams: streams !== undefined ? numberList('--streams', streams) : ci ? [200] : [200, 500, 1000],
    scaling: scaling !== undefined ? numberList('--scaling', scaling) : [1, 2, 4, 8],
    bodyBytes: (bodyMib !== undefined ? positive('--body-mib', bodyMib, true) : 1024) * 1024 * 1024,
    install: values['no-install'] ? false : flagOn(env.BENCH_INSTALL) ?? true,
    cpuProf: values['cpu-prof'] ?? flagOn(env.BENCH_CPU_PROF) ?? false,
    ollanaRoot: pick(values['ollana-root'], 'BENCH_OLLANA_ROOT') ?? repoRoot,
    ollanaArgs: words(pick(values['ollana-args'], 'BENCH_OLLANA_ARGS') ?? ''),
    ollanaNodeArgs: words(pick(values['ollana-node-args'], 'BENCH_OLLANA_NODE_ARGS') ?? ''),
    ollanaBRoot: bRoot,
    ollanaBArgs: bArgs,
    ollanaBNodeArgs: bNodeArgs,
    ollanaLogLevel: pick(values['ollana-log-level'], 'BENCH_OLLANA_LOG_LEVEL') ?? 'info',
    help: values.help ?? false,
  };
  if (opts.ci && opts.systems.includes('one-hop') === false) {
    throw new BenchUsageError('--ci gates one-hop against direct: --systems must include one-hop');
  }
  return Object.freeze(opts);
}
