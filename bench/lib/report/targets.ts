/**
 * The issue's one-hop targets, evaluated from a run. Each names the numbers it used, so a reader
 * can trace a verdict back to the tables; a target whose inputs were not measured is "n/a".
 */
import type { CaseResult, ScenarioResult } from '../results.ts';
import { summarize } from '../results.ts';
import { spread } from '../stats.ts';
import type { TargetResult } from './types.ts';

function findCase(scenarios: readonly ScenarioResult[], id: string): CaseResult | undefined {
  for (const s of scenarios) for (const c of s.cases) if (c.id === id) return c;
  return undefined;
}

function metricOf(c: CaseResult, key: string) {
  return c.metrics.find((m) => m.key === key)!;
}

/** Paired (per round) comparison of one-hop to a baseline, median over rounds. */
function vs(c: CaseResult | undefined, key: string, base: 'direct' | 'nginx'): number | null {
  if (c === undefined) return null;
  return summarize(c, 'one-hop', metricOf(c, key)).vs[base]?.median ?? null;
}

function value(c: CaseResult | undefined, system: 'one-hop' | 'nginx', key: string): number | null {
  if (c === undefined) return null;
  return summarize(c, system, metricOf(c, key)).value?.median ?? null;
}

function verdict(measured: number | null, ok: (v: number) => boolean): 'met' | 'missed' | 'n/a' {
  return measured === null || !Number.isFinite(measured) ? 'n/a' : ok(measured) ? 'met' : 'missed';
}

export function evaluateTargets(scenarios: readonly ScenarioResult[], workers: number): TargetResult[] {
  const out: TargetResult[] = [];
  const rate = scenarios.find((s) => s.id === 'rate');

  // 1. CPU per small request, one-hop ÷ nginx, over every request-rate case.
  const cpuRatios = (rate?.cases ?? [])
    .map((c) => ({ id: c.title, r: vs(c, 'cpuUsPerReq', 'nginx') }))
    .filter((x): x is { id: string; r: number } => x.r !== null);
  const cpuMed = spread(cpuRatios.map((x) => x.r));
  out.push({
    id: 'cpu-per-request',
    title: 'CPU per small request',
    target: '≤ 1.5 × nginx (naive undici proxy: 2.7 ×)',
    measured: cpuMed?.median ?? null,
    unit: '× nginx',
    nginx: null,
    status: verdict(cpuMed?.median ?? null, (v) => v <= 1.5),
    detail:
      cpuRatios.length === 0
        ? 'needs the rate scenario with one-hop and nginx'
        : `median over ${cpuRatios.length} request-rate cases; per case: ${cpuRatios.map((x) => `${x.id} ${x.r.toFixed(2)}`).join(', ')}`,
  });

  // 2-4. 200 streams started at once.
  const s200 = findCase(scenarios, 'streams-200');
  const ttfb = vs(s200, 'ttfbP99Ms', 'direct');
  out.push({
    id: 'streams-ttfb',
    title: 'added TTFB p99, 200 streams at once',
    target: '≤ 5 ms (naive Node proxy +50 ms; nginx +3.5 ms)',
    measured: ttfb,
    unit: 'ms',
    nginx:
      s200 === undefined ? null : (summarize(s200, 'nginx', metricOf(s200, 'ttfbP99Ms')).vs.direct?.median ?? null),
    status: verdict(ttfb, (v) => v <= 5),
    detail:
      s200 === undefined ? 'needs the streams scenario with 200 streams' : 'one-hop − direct, paired per round, median',
  });
  const delay = vs(s200, 'delayP99Ms', 'direct');
  out.push({
    id: 'streams-delay',
    title: 'added per-token delivery p99, 200 streams',
    target: '≤ 1 ms (naive +12 ms)',
    measured: delay,
    unit: 'ms',
    nginx:
      s200 === undefined ? null : (summarize(s200, 'nginx', metricOf(s200, 'delayP99Ms')).vs.direct?.median ?? null),
    status: verdict(delay, (v) => v <= 1),
    detail:
      s200 === undefined ? 'needs the streams scenario with 200 streams' : 'one-hop − direct, paired per round, median',
  });
  const tokCpu = vs(s200, 'cpuUsPerToken', 'nginx');
  out.push({
    id: 'cpu-per-token',
    title: 'CPU per streamed token, 200 streams',
    target: '≤ 1.5 × nginx',
    measured: tokCpu,
    unit: '× nginx',
    nginx: value(s200, 'nginx', 'cpuUsPerToken'),
    status: verdict(tokCpu, (v) => v <= 1.5),
    detail:
      tokCpu === null
        ? 'needs the streams scenario with 200 streams, one-hop and nginx'
        : `one-hop ${value(s200, 'one-hop', 'cpuUsPerToken')!.toFixed(2)} µs/token, nginx ${value(s200, 'nginx', 'cpuUsPerToken')!.toFixed(2)} µs/token`,
  });

  // 5. Peak RSS with --workers 2, over the request-rate, streaming and hey scenarios.
  const peakCases = scenarios
    .filter((s) => s.id === 'rate' || s.id === 'streams' || s.id === 'hey')
    .flatMap((s) => s.cases);
  const peaks = peakCases
    .map((c) => ({ id: c.title, v: value(c, 'one-hop', 'peakRssMB') }))
    .filter((x): x is { id: string; v: number } => x.v !== null);
  const worst = peaks.reduce<{ id: string; v: number } | null>((a, b) => (a === null || b.v > a.v ? b : a), null);
  out.push({
    id: 'rss-peak',
    title: 'peak RSS with --workers 2',
    target: '< 80 MB',
    measured: workers === 2 ? (worst?.v ?? null) : null,
    unit: 'MB',
    nginx: null,
    status: workers === 2 ? verdict(worst?.v ?? null, (v) => v < 80) : 'n/a',
    detail:
      workers !== 2
        ? `this run used --workers ${workers}; the target is stated for 2`
        : worst === null
          ? 'needs the rate or streams scenario'
          : `highest peak, in "${worst.id}" (VmHWM of the ollana process)`,
  });

  // 6. Flat memory under large bodies.
  for (const dir of ['upload', 'download'] as const) {
    const c = findCase(scenarios, `bodies-${dir}`);
    const growth = value(c, 'one-hop', 'rssGrowthMB');
    out.push({
      id: `rss-${dir}`,
      title: `RSS growth during a large ${dir}`,
      target: '< 50 MB',
      measured: growth,
      unit: 'MB',
      nginx: value(c, 'nginx', 'rssGrowthMB'),
      status: verdict(growth, (v) => v < 50),
      detail:
        c === undefined
          ? 'needs the bodies scenario'
          : `${c.title}: peak RSS during the transfer − RSS before, worst round`,
    });
  }
  return out;
}
