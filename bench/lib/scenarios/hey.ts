/**
 * hey -n 1000 -c 50 against /api/generate, the quick check people run against an Ollama. The body
 * asks for a one-token non-streamed answer, so the run measures the path, not a model.
 */
import { runHey } from '../load/hey.ts';
import type { MetricSpec, ScenarioResult } from '../results.ts';
import { MB, alternate, measure, settle, type Scenario } from './context.ts';

export const HEY_METRICS: readonly MetricSpec[] = [
  { key: 'reqPerSec', label: 'req/s', unit: '', digits: 0, better: 'higher', compare: 'ratio' },
  { key: 'avgMs', label: 'mean', unit: 'ms', digits: 2, better: 'lower', compare: 'delta' },
  { key: 'p50Ms', label: 'p50', unit: 'ms', digits: 2, better: 'lower', compare: 'delta' },
  { key: 'p99Ms', label: 'p99', unit: 'ms', digits: 2, better: 'lower', compare: 'delta' },
  { key: 'cpuUsPerReq', label: 'CPU/req', unit: 'µs', digits: 1, better: 'lower', compare: 'ratio' },
  { key: 'peakRssMB', label: 'peak RSS', unit: 'MB', digits: 1, better: 'lower', compare: 'none', agg: 'max' },
];

const N = 1000;
const C = 50;
export const HEY_BODY = JSON.stringify({
  model: 'llama3.2',
  prompt: 'Why is the sky blue?',
  stream: false,
  options: { emulator_tokens: 1 },
});

export const heyScenario: Scenario = {
  id: 'hey',
  title: `hey -n ${N} -c ${C} against /api/generate`,
  async run(ctx): Promise<ScenarioResult> {
    const hey = ctx.tools.get('hey');
    const result: ScenarioResult = {
      id: 'hey',
      title: this.title,
      method:
        `hey ${hey?.version ?? ''} (Debian) -n ${N} -c ${C} -m POST -T application/json -d '${HEY_BODY}' <url>/api/generate; ` +
        `hey's own summary (it keeps 50 connections alive). One warm-up run per system, ${ctx.options.rounds} rounds. ${ctx.placement}.`,
      cases: [],
      notes: [],
      skipped: null,
    };
    if (!hey?.path) return { ...result, skipped: `hey unavailable: ${hey?.note ?? 'not checked'}` };
    const heyPath = hey.path;
    const samples = await alternate(
      ctx,
      ctx.systems,
      ctx.options.rounds,
      'hey',
      async (sys) => {
        const m = await measure(sys, ctx.emulator, () =>
          runHey(heyPath, sys.url, HEY_BODY, N, C, ctx.loadCpus, 60_000),
        );
        await settle();
        const r = m.result;
        const values: Record<string, number> = {
          reqPerSec: r.reqPerSec,
          avgMs: r.avgMs,
          p50Ms: r.p50Ms,
          p99Ms: r.p99Ms,
          foreignPct: m.foreignPct,
        };
        if (m.sut !== null) {
          values.cpuUsPerReq = (m.sut.cpuMs * 1000) / Math.max(1, r.ok200);
          values.peakRssMB = m.sut.peakRssBytes / MB;
        }
        return { ok: r.ok, values, note: r.error };
      },
      async (sys) => {
        await runHey(heyPath, sys.url, HEY_BODY, N, C, ctx.loadCpus, 60_000);
        await settle();
      },
    );
    result.cases.push({
      id: 'hey',
      title: `hey -n ${N} -c ${C}`,
      workers: ctx.options.workers,
      metrics: HEY_METRICS,
      samples,
      labels: Object.fromEntries(ctx.systems.map((x) => [x.id, x.label])),
    });
    return result;
  },
};
