/**
 * Streaming fan-out: N /api/generate streams started together, a token every 20 ms, 100 tokens
 * each (the emulator's settings). What a proxy adds here is time to first byte (new connections,
 * upstream pool growth) and per-token delivery delay (event-loop turns, copies, Nagle).
 */
import { runStreams } from '../load/streams.ts';
import type { MetricSpec, ScenarioResult } from '../results.ts';
import { percentileSorted } from '../stats.ts';
import type { SystemUnderTest } from '../systems.ts';
import { MB, alternate, measure, settle, type Scenario, type ScenarioContext } from './context.ts';

/** Delivery timing of streamed tokens, shared by the one-hop and the two-hop benchmark. */
export const STREAM_TIMING_METRICS: readonly MetricSpec[] = [
  { key: 'ttfbP50Ms', label: 'TTFB p50', unit: 'ms', digits: 2, better: 'lower', compare: 'delta' },
  { key: 'ttfbP99Ms', label: 'TTFB p99', unit: 'ms', digits: 2, better: 'lower', compare: 'delta' },
  { key: 'delayP50Ms', label: 'token delay p50', unit: 'ms', digits: 3, better: 'lower', compare: 'delta' },
  { key: 'delayP99Ms', label: 'token delay p99', unit: 'ms', digits: 3, better: 'lower', compare: 'delta' },
  { key: 'onTimePct', label: 'on time', unit: '%', digits: 2, better: 'higher', compare: 'ratio' },
];

export const STREAM_METRICS: readonly MetricSpec[] = [
  ...STREAM_TIMING_METRICS,
  { key: 'cpuUsPerToken', label: 'CPU/token', unit: 'µs', digits: 2, better: 'lower', compare: 'ratio' },
  { key: 'peakRssMB', label: 'peak RSS', unit: 'MB', digits: 1, better: 'lower', compare: 'none', agg: 'max' },
];

/** How many values of an ascending array are <= limit (binary search). */
export function countAtMost(sorted: Float64Array, limit: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (sorted[mid]! <= limit) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export const STREAM_BODY = JSON.stringify({ model: 'llama3.2', prompt: 'Why is the sky blue?' });

export async function streamSample(ctx: ScenarioContext, sys: SystemUnderTest, n: number) {
  const { settings } = ctx.emulator;
  const expectedMs = settings.ttftMs + settings.tokens * settings.tokenIntervalMs;
  const m = await measure(sys, ctx.emulator, () => runStreams(sys.url, n, STREAM_BODY, expectedMs + 30_000));
  // Closed connections (TIME_WAIT, the proxy's bookkeeping) settle before the next system runs.
  await settle(500);
  const r = m.result;
  const expectedTokens = n * settings.tokens;
  // On time = arrived before the emulator wrote the next token; a token that never came is late.
  const onTime = countAtMost(r.delayMs, settings.tokenIntervalMs);
  const values: Record<string, number> = {
    onTimePct: (100 * onTime) / expectedTokens,
    ttfbP50Ms: percentileSorted(r.ttfbMs, 50),
    ttfbP99Ms: percentileSorted(r.ttfbMs, 99),
    delayP50Ms: percentileSorted(r.delayMs, 50),
    delayP99Ms: percentileSorted(r.delayMs, 99),
    delayP999Ms: percentileSorted(r.delayMs, 99.9),
    delayMaxMs: r.delayMs.length > 0 ? r.delayMs[r.delayMs.length - 1]! : Number.NaN,
    tokens: r.tokens,
    wallMs: r.wallMs,
    emuCpuUsPerToken: (m.emulator.cpuMs * 1000) / Math.max(1, r.tokens),
    foreignPct: m.foreignPct,
  };
  if (m.sut !== null) {
    values.cpuUsPerToken = (m.sut.cpuMs * 1000) / Math.max(1, r.tokens);
    values.peakRssMB = m.sut.peakRssBytes / MB;
  }
  const ok = r.failed === 0 && r.tokens === expectedTokens;
  return {
    ok,
    values,
    note: ok
      ? null
      : `${r.failed}/${n} streams failed (${r.failures.join('; ')}), ${r.tokens}/${expectedTokens} tokens`,
  };
}

export const streamsScenario: Scenario = {
  id: 'streams',
  title: 'Streaming fan-out: concurrent /api/generate streams',
  async run(ctx): Promise<ScenarioResult> {
    const { options } = ctx;
    const s = ctx.emulator.settings;
    const result: ScenarioResult = {
      id: 'streams',
      title: this.title,
      method:
        `N streams started in one tick, each on a new connection; ${s.tokens} tokens each, one every ` +
        `${s.tokenIntervalMs} ms, first at once. Token delay = client receive time − the emulator's write stamp in the token ` +
        '(same clock), over every token of every stream; on time = share of tokens that arrived within one token interval of ' +
        'being written; TTFB = request start to first body byte. "added" = system − direct ' +
        `in the same round. One unrecorded warm-up round per system, then ${options.rounds} rounds. ` +
        `CPU/token = the system's utime+stime ÷ tokens delivered. ${ctx.placement}.`,
      cases: [],
      notes: [],
      skipped: null,
    };
    for (const n of options.streams) {
      ctx.log(`streams: ${n} concurrent`);
      const samples = await alternate(
        ctx,
        ctx.systems,
        options.rounds,
        `${n} streams`,
        (sys) => streamSample(ctx, sys, n),
        async (sys) => {
          await runStreams(sys.url, n, STREAM_BODY, 60_000);
          await settle(500);
        },
      );
      result.cases.push({
        id: `streams-${n}`,
        title: `${n} streams`,
        workers: options.workers,
        metrics: STREAM_METRICS,
        samples,
        labels: Object.fromEntries(ctx.systems.map((x) => [x.id, x.label])),
      });
    }
    return result;
  },
};
