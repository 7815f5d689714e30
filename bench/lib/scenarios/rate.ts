/**
 * Request rate: small non-streamed requests that the emulator answers at once, at several
 * concurrency levels. Here the proxy's own cost per request is all there is to see.
 */
import { runRate, type RateRequest } from '../load/rate.ts';
import type { RateCaseId } from '../options.ts';
import type { MetricSpec, ScenarioResult } from '../results.ts';
import type { SystemUnderTest } from '../systems.ts';
import { MB, alternate, measure, settle, type Scenario, type ScenarioContext } from './context.ts';

export interface RateCase {
  readonly name: RateCaseId;
  readonly request: RateRequest;
}

/** Each answers at once: the emulator's ttft is 0 and the generate asks for a single token. */
export const RATE_CASES: readonly RateCase[] = [
  { name: 'tags', request: { path: '/api/tags', method: 'GET' } },
  {
    name: 'generate',
    request: {
      path: '/api/generate',
      method: 'POST',
      body: JSON.stringify({
        model: 'llama3.2',
        prompt: 'Why is the sky blue?',
        stream: false,
        options: { emulator_tokens: 1 },
      }),
    },
  },
  {
    name: 'embed',
    request: {
      path: '/api/embed',
      method: 'POST',
      body: JSON.stringify({ model: 'nomic-embed-text', input: 'Why is the sky blue?' }),
    },
  },
];

export const RATE_METRICS: readonly MetricSpec[] = [
  { key: 'reqPerSec', label: 'req/s', unit: '', digits: 0, better: 'higher', compare: 'ratio' },
  { key: 'p50Ms', label: 'p50', unit: 'ms', digits: 2, better: 'lower', compare: 'delta' },
  { key: 'p99Ms', label: 'p99', unit: 'ms', digits: 2, better: 'lower', compare: 'delta' },
  { key: 'p999Ms', label: 'p99.9', unit: 'ms', digits: 2, better: 'lower', compare: 'delta' },
  { key: 'cpuUsPerReq', label: 'CPU/req', unit: 'µs', digits: 1, better: 'lower', compare: 'ratio' },
  { key: 'peakRssMB', label: 'peak RSS', unit: 'MB', digits: 1, better: 'lower', compare: 'none', agg: 'max' },
];

const WARMUP_S = 1;

/** One autocannon run of `c` connections against `sys`, measured from /proc. */
export async function rateSample(ctx: ScenarioContext, sys: SystemUnderTest, rc: RateCase, c: number, seconds: number) {
  const m = await measure(sys, ctx.emulator, () => runRate(sys.url, rc.request, c, seconds));
  await settle();
  const r = m.result;
  const values: Record<string, number> = {
    reqPerSec: r.reqPerSec,
    p50Ms: r.p50Ms,
    p99Ms: r.p99Ms,
    p999Ms: r.p999Ms,
    emuCpuUsPerReq: (m.emulator.cpuMs * 1000) / Math.max(1, r.ok),
    foreignPct: m.foreignPct,
  };
  if (m.sut !== null) {
    values.cpuUsPerReq = (m.sut.cpuMs * 1000) / Math.max(1, r.ok);
    values.peakRssMB = m.sut.peakRssBytes / MB;
  }
  const bad = r.non2xx + r.errors;
  return {
    ok: bad === 0 && r.ok > 0,
    values,
    note: bad === 0 ? null : `${r.non2xx} non-2xx responses, ${r.errors} connection errors/timeouts of ${r.ok + bad}`,
  };
}

export function rateCaseId(rc: RateCase, c: number): string {
  return `${rc.name}-c${c}`;
}

export const rateScenario: Scenario = {
  id: 'rate',
  title: 'Request rate: small non-streamed requests',
  async run(ctx): Promise<ScenarioResult> {
    const { options } = ctx;
    const cases = RATE_CASES.filter((c) => options.rateCases.includes(c.name));
    const result: ScenarioResult = {
      id: 'rate',
      title: this.title,
      method:
        `autocannon (programmatic API, in the bench process) with N keep-alive connections for ${options.duration} s per ` +
        `measurement after a ${WARMUP_S} s warm-up per system; ${options.rounds} rounds alternating systems. Latency percentiles ` +
        "are exact over every 2xx response. CPU/req = utime+stime of the system's processes over the run ÷ 2xx responses. " +
        `${ctx.placement}.`,
      cases: [],
      notes: [],
      skipped: null,
    };
    for (const rc of cases) {
      for (const c of options.concurrency) {
        const label = `${rc.request.method} ${rc.request.path} c=${c}`;
        ctx.log(`rate: ${label}`);
        const samples = await alternate(
          ctx,
          ctx.systems,
          options.rounds,
          label,
          (sys) => rateSample(ctx, sys, rc, c, options.duration),
          async (sys) => {
            await runRate(sys.url, rc.request, c, WARMUP_S);
            await settle();
          },
        );
        result.cases.push({
          id: rateCaseId(rc, c),
          title: label,
          workers: options.workers,
          metrics: RATE_METRICS,
          samples,
          labels: Object.fromEntries(ctx.systems.map((s) => [s.id, s.label])),
        });
      }
    }
    return result;
  },
};
