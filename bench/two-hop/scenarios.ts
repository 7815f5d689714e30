/**
 * What the two-hop benchmark measures, with the sample shapes of bench/lib (Sample, CaseResult) so
 * the alternation loop (A B A B, re-measuring rounds disturbed by other processes) and the report
 * tables are bench/lib's own:
 *
 *   cold   the first N streams after start, through a client node whose pool to the server node is
 *          empty (every upstream connection is a new TLS handshake) and through direct, once each
 *   rate   small non-streamed requests (/api/generate one-token answer, /api/tags) at each concurrency
 *   streams N concurrent streams, 100 tokens 20 ms apart, timed with the emulator's write stamps
 *   reconnect  the same on warm nodes whose pool to the server node was emptied first (resumed handshakes)
 *
 * Each two-hop sample also carries the TLS facts of its window: handshakes and resumptions the client
 * node counted (its /ollana/v1/status), connection attempts to the server port (nftables, in h1), and
 * the connections established there afterwards (ss).
 */
import { RATE_CASES } from '../lib/scenarios/rate.ts';
import { STREAM_BODY, STREAM_TIMING_METRICS } from '../lib/scenarios/streams.ts';
import { alternate, settle, MB } from '../lib/scenarios/context.ts';
import { ForeignLoad, UsageWindow, processTree, type Usage } from '../lib/proc-stats.ts';
import type { CaseResult, MetricSpec, Sample } from '../lib/results.ts';
import type { SystemUnderTest } from '../lib/systems.ts';
import type { RateCaseId } from '../lib/options.ts';
import type { ClientCounters } from './agent.ts';
import type { ServerSockets, TwoHopLan } from './lan.ts';

export interface Env {
  readonly two: TwoHopLan;
  readonly systems: readonly SystemUnderTest[];
  readonly rounds: number;
  readonly duration: number;
  readonly log: (msg: string) => void;
  readonly retryBudget: { remainingMs: number };
}

/** Columns shared by both load kinds: the two ollana processes apart, and the TLS facts. */
const TWO_HOP_COLUMNS: readonly MetricSpec[] = [
  { key: 'clientCpuPct', label: 'client node CPU', unit: '%', digits: 0, better: 'lower', compare: 'none' },
  { key: 'serverCpuPct', label: 'server node CPU', unit: '%', digits: 0, better: 'lower', compare: 'none' },
  {
    key: 'peakRssMB',
    label: 'peak RSS client+server',
    unit: 'MB',
    digits: 0,
    better: 'lower',
    compare: 'none',
    agg: 'max',
  },
  { key: 'tlsHandshakes', label: 'TLS handshakes', unit: '', digits: 0, better: 'lower', compare: 'none' },
  { key: 'tlsResumed', label: 'resumed', unit: '', digits: 0, better: 'higher', compare: 'none' },
];

export const RATE_METRICS: readonly MetricSpec[] = [
  { key: 'reqPerSec', label: 'req/s', unit: '', digits: 0, better: 'higher', compare: 'ratio' },
  { key: 'p50Ms', label: 'p50', unit: 'ms', digits: 2, better: 'lower', compare: 'delta' },
  { key: 'p99Ms', label: 'p99', unit: 'ms', digits: 2, better: 'lower', compare: 'delta' },
  { key: 'cpuUsPerReq', label: 'CPU/req client+server', unit: 'µs', digits: 0, better: 'lower', compare: 'none' },
  { key: 'clientCpuUsPerReq', label: 'client', unit: 'µs', digits: 0, better: 'lower', compare: 'none' },
  { key: 'serverCpuUsPerReq', label: 'server', unit: 'µs', digits: 0, better: 'lower', compare: 'none' },
  ...TWO_HOP_COLUMNS,
];

export const STREAM_METRICS: readonly MetricSpec[] = [
  ...STREAM_TIMING_METRICS,
  { key: 'cpuUsPerToken', label: 'CPU/token client+server', unit: 'µs', digits: 1, better: 'lower', compare: 'none' },
  { key: 'clientCpuUsPerToken', label: 'client', unit: 'µs', digits: 1, better: 'lower', compare: 'none' },
  { key: 'serverCpuUsPerToken', label: 'server', unit: 'µs', digits: 1, better: 'lower', compare: 'none' },
  ...TWO_HOP_COLUMNS,
];

interface TlsMark {
  readonly client: ClientCounters;
  readonly sockets: ServerSockets;
}

async function tlsMark(two: TwoHopLan): Promise<TlsMark> {
  const [client, sockets] = await Promise.all([two.agent.client(), two.serverSockets()]);
  return { client, sockets };
}

interface Window<T> {
  readonly result: T;
  /** per-unit costs are computed by the caller; here the raw window */
  readonly values: Record<string, number>;
  readonly client: Usage | null;
  readonly server: Usage | null;
}

/**
 * Runs `work` inside /proc windows of the two nodes and the emulator; for two hops, reads the TLS
 * counters just before and after (outside the CPU window: the status request is not load).
 */
async function window<T>(env: Env, sys: SystemUnderTest, work: () => Promise<T>): Promise<Window<T>> {
  const { two } = env;
  const hops = sys.id === 'two-hop';
  const before = hops ? await tlsMark(two) : null;
  // Every process of each node (a launcher that stayed as its parent would count too).
  const client = hops ? new UsageWindow(processTree(two.client.proc.pid!)) : null;
  const server = hops ? new UsageWindow(processTree(two.server.proc.pid!)) : null;
  const emu = new UsageWindow([two.emulator.pid!]);
  const foreign = new ForeignLoad(() => two.pids());
  const result = await work();
  const c = client?.end() ?? null;
  const s = server?.end() ?? null;
  const e = emu.end();
  const values: Record<string, number> = { foreignPct: 100 * foreign.end(), emuCpuMs: e.cpuMs };
  if (c !== null && s !== null) {
    Object.assign(values, {
      clientCpuMs: c.cpuMs,
      serverCpuMs: s.cpuMs,
      clientCpuPct: (100 * c.cpuMs) / c.wallMs,
      serverCpuPct: (100 * s.cpuMs) / s.wallMs,
      clientPeakRssMB: c.peakRssBytes / MB,
      serverPeakRssMB: s.peakRssBytes / MB,
      peakRssMB: (c.peakRssBytes + s.peakRssBytes) / MB,
    });
  }
  if (before !== null) {
    const after = await tlsMark(two);
    Object.assign(values, {
      tlsHandshakes: after.client.tlsHandshakes - before.client.tlsHandshakes,
      tlsResumed: after.client.tlsResumed - before.client.tlsResumed,
      serverConnections: after.sockets.established,
      ...(after.sockets.syns !== null && before.sockets.syns !== null
        ? { serverSyns: after.sockets.syns - before.sockets.syns }
        : {}),
    });
  }
  return { result, values, client: c, server: s };
}

function perUnit(values: Record<string, number>, units: number, suffix: 'Req' | 'Token'): void {
  const n = Math.max(1, units);
  values[`emuCpuUsPer${suffix}`] = (values.emuCpuMs! * 1000) / n;
  if (values.clientCpuMs === undefined) return;
  values[`clientCpuUsPer${suffix}`] = (values.clientCpuMs * 1000) / n;
  values[`serverCpuUsPer${suffix}`] = (values.serverCpuMs! * 1000) / n;
  values[`cpuUsPer${suffix}`] = ((values.clientCpuMs + values.serverCpuMs!) * 1000) / n;
}

type Measurement = Omit<Sample, 'system' | 'round'>;

async function rateSample(
  env: Env,
  sys: SystemUnderTest,
  name: RateCaseId,
  c: number,
  seconds: number,
): Promise<Measurement> {
  const rc = RATE_CASES.find((x) => x.name === name)!;
  const w = await window(env, sys, () =>
    env.two.agent.rate({ url: sys.url, request: rc.request, connections: c, seconds }),
  );
  await settle();
  const r = w.result;
  const values = {
    ...w.values,
    reqPerSec: r.reqPerSec,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    p999Ms: r.p999Ms,
    requests: r.ok,
  };
  perUnit(values, r.ok, 'Req');
  const bad = r.non2xx + r.errors;
  return {
    ok: bad === 0 && r.ok > 0,
    values,
    note: bad === 0 ? null : `${r.non2xx} non-2xx, ${r.errors} errors/timeouts of ${r.ok + bad}`,
  };
}

export interface StreamShape {
  readonly n: number;
  readonly tokens: number;
  readonly intervalMs: number;
  readonly ttftMs: number;
}

async function streamSample(env: Env, sys: SystemUnderTest, s: StreamShape): Promise<Measurement> {
  const timeoutMs = s.ttftMs + s.tokens * s.intervalMs + 30_000;
  const w = await window(env, sys, () =>
    env.two.agent.streams({ url: sys.url, n: s.n, body: STREAM_BODY, timeoutMs, intervalMs: s.intervalMs }),
  );
  // Closed connections (TIME_WAIT, the nodes' bookkeeping) settle before the next system runs.
  await settle(500);
  const r = w.result;
  const expected = s.n * s.tokens;
  const values: Record<string, number> = {
    ...w.values,
    onTimePct: (100 * r.onTime) / expected,
    ttfbP50Ms: r.ttfbP50Ms,
    ttfbP99Ms: r.ttfbP99Ms,
    delayP50Ms: r.delayP50Ms,
    delayP99Ms: r.delayP99Ms,
    delayP999Ms: r.delayP999Ms,
    delayMaxMs: r.delayMaxMs,
    tokens: r.tokens,
    streams: s.n,
    wallMs: r.wallMs,
  };
  perUnit(values, r.tokens, 'Token');
  const ok = r.failed === 0 && r.tokens === expected;
  return {
    ok,
    values,
    note: ok ? null : `${r.failed}/${s.n} streams failed (${r.failures.join('; ')}), ${r.tokens}/${expected} tokens`,
  };
}

function labels(env: Env): Partial<Record<SystemUnderTest['id'], string>> {
  return Object.fromEntries(env.systems.map((s) => [s.id, s.label]));
}

/** The first burst after start: once per system, two hops first (its pool is still empty). */
export async function coldCase(env: Env, s: StreamShape, workers: number): Promise<CaseResult> {
  const samples: Sample[] = [];
  const order = [...env.systems.filter((x) => x.id === 'two-hop'), ...env.systems.filter((x) => x.id !== 'two-hop')];
  for (const sys of order) {
    const m = await streamSample(env, sys, s);
    samples.push({ system: sys.id, round: 0, ...m });
    env.log(`  cold ${s.n} streams ${sys.id.padEnd(8)} ${brief(m.values)}${m.ok ? '' : `  FAILED: ${m.note}`}`);
  }
  return {
    id: `cold-${s.n}`,
    title: `first ${s.n} streams after start (cold pool)`,
    workers,
    metrics: STREAM_METRICS,
    samples,
    labels: labels(env),
  };
}

export async function rateCase(env: Env, name: RateCaseId, c: number, workers: number): Promise<CaseResult> {
  const rc = RATE_CASES.find((x) => x.name === name)!;
  const title = `${rc.request.method} ${rc.request.path} c=${c}`;
  env.log(`rate: ${title}`);
  const samples = await alternate(
    env,
    env.systems,
    env.rounds,
    title,
    (sys) => rateSample(env, sys, name, c, env.duration),
    async (sys) => {
      await env.two.agent.rate({ url: sys.url, request: rc.request, connections: c, seconds: 1 });
      await settle();
    },
  );
  return { id: `${name}-c${c}`, title, workers, metrics: RATE_METRICS, samples, labels: labels(env) };
}

export async function streamsCase(env: Env, s: StreamShape, workers: number): Promise<CaseResult> {
  env.log(`streams: ${s.n} concurrent`);
  const samples = await alternate(
    env,
    env.systems,
    env.rounds,
    `${s.n} streams`,
    (sys) => streamSample(env, sys, s),
    async (sys) => {
      await streamSample(env, sys, s);
    },
  );
  return {
    id: `streams-${s.n}`,
    title: `${s.n} streams`,
    workers,
    metrics: STREAM_METRICS,
    samples,
    labels: labels(env),
  };
}

/**
 * The same burst on warm nodes with an empty pool: before each two-hop sample every connection at the
 * server port is reset (`ss -K` in h1), so each stream's upstream connection is a new TLS handshake,
 * resumed from the session ticket the client node kept. Against the warm-pool streams case this is
 * what reconnecting costs.
 */
export async function reconnectCase(env: Env, s: StreamShape, workers: number): Promise<CaseResult> {
  env.log(`reconnect: ${s.n} streams, the client node's pool emptied before each two-hop sample`);
  const samples = await alternate(
    env,
    env.systems,
    env.rounds,
    `${s.n} streams after a reset`,
    async (sys) => {
      let left = 0;
      if (sys.id === 'two-hop') {
        left = await env.two.dropServerConnections();
        // The resets must reach the client node's pool before the burst does: a request written to a
        // pooled socket whose reset is not yet processed fails (502), which is not what this case measures.
        await settle(1_000);
      }
      const m = await streamSample(env, sys, s);
      return sys.id === 'two-hop' ? { ...m, values: { ...m.values, openAfterReset: left } } : m;
    },
    null,
  );
  return {
    id: `reconnect-${s.n}`,
    title: `${s.n} streams, pool emptied first`,
    workers,
    metrics: STREAM_METRICS,
    samples,
    labels: labels(env),
  };
}

/** Unrecorded load before the first measurement (JIT tiers, heap sizing; see bench/README.md). */
export async function warmUp(env: Env, seconds: number): Promise<void> {
  const rc = RATE_CASES.find((x) => x.name === 'generate')!;
  for (const sys of env.systems) {
    const s = sys.id === 'direct' ? Math.min(2, seconds) : seconds;
    env.log(`warm-up: ${sys.id}, ${s} s of POST /api/generate at c=32`);
    await env.two.agent.rate({ url: sys.url, request: rc.request, connections: 32, seconds: s });
    await settle();
  }
}

function brief(v: Readonly<Record<string, number>>): string {
  const keys = [
    'ttfbP99Ms',
    'delayP99Ms',
    'onTimePct',
    'cpuUsPerToken',
    'tlsHandshakes',
    'tlsResumed',
    'serverSyns',
    'foreignPct',
  ];
  return keys
    .filter((k) => v[k] !== undefined)
    .map((k) => `${k}=${v[k]!.toPrecision(3)}`)
    .join(' ');
}
