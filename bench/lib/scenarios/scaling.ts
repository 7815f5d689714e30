/**
 * Scaling: the request-rate case at each --workers value, ollana and nginx restarted with that
 * many workers. Nothing is pinned here (a pinned proxy cannot use a second core), so load,
 * emulator and proxy share all CPUs, which is where a small machine ends the curve.
 */
import type { SystemId } from '../options.ts';
import { cpus } from 'node:os';
import type { MetricSpec, ScenarioResult } from '../results.ts';
import { summarize } from '../results.ts';
import { runRate } from '../load/rate.ts';
import { alternate, settle, type Scenario } from './context.ts';
import { RATE_CASES, rateSample } from './rate.ts';

const SCALING_METRICS: readonly MetricSpec[] = [
  { key: 'reqPerSec', label: 'req/s', unit: '', digits: 0, better: 'higher', compare: 'ratio' },
  { key: 'p99Ms', label: 'p99', unit: 'ms', digits: 2, better: 'lower', compare: 'delta' },
  { key: 'cpuUsPerReq', label: 'CPU/req', unit: 'µs', digits: 1, better: 'lower', compare: 'ratio' },
  { key: 'peakRssMB', label: 'peak RSS', unit: 'MB', digits: 1, better: 'lower', compare: 'none', agg: 'max' },
];

/** The generate case at high concurrency: enough parallel work for several workers to matter. */
const CONNECTIONS = 256;

export const scalingScenario: Scenario = {
  id: 'scaling',
  title: 'Scaling: --workers on the request-rate scenario',
  async run(ctx): Promise<ScenarioResult> {
    const rc = RATE_CASES.find((c) => c.name === 'generate')!;
    const ids = ctx.systems.map((s) => s.id).filter((id): id is SystemId => id !== 'two-hop');
    const result: ScenarioResult = {
      id: 'scaling',
      title: this.title,
      method:
        `${rc.request.method} ${rc.request.path} (one-token answer) at c=${CONNECTIONS}, autocannon, ${ctx.options.duration} s per ` +
        `measurement, ${ctx.options.rounds} rounds; ollana --workers and nginx worker_processes set to each value in turn. ` +
        `No CPU pinning in this scenario: load, emulator and proxy share all CPUs.`,
      cases: [],
      notes: [],
      skipped: null,
    };
    ctx.setLoadPlacement(false);
    try {
      for (const w of ctx.options.scaling) {
        ctx.log(`scaling: --workers ${w}`);
        await ctx.withSystems(ids, w, false, async (systems) => {
          const samples = await alternate(
            ctx,
            systems,
            ctx.options.rounds,
            `workers=${w}`,
            (sys) => rateSample(ctx, sys, rc, CONNECTIONS, ctx.options.duration),
            async (sys) => {
              await runRate(sys.url, rc.request, CONNECTIONS, 1);
              await settle();
            },
          );
          result.cases.push({
            id: `scaling-w${w}`,
            title: `--workers ${w}`,
            workers: w,
            metrics: SCALING_METRICS,
            samples,
            labels: Object.fromEntries(systems.map((x) => [x.id, x.label])),
          });
        });
      }
    } finally {
      ctx.setLoadPlacement(true);
    }
    // Where the curve ends: the --workers value past which a system's median rate stops growing.
    const rate = SCALING_METRICS[0]!;
    for (const id of ids.filter((x) => x !== 'direct')) {
      const points = result.cases
        .map((c) => ({ w: c.workers, v: summarize(c, id, rate).value?.median ?? Number.NaN }))
        .filter((p) => Number.isFinite(p.v));
      if (points.length < 2) continue;
      const best = points.reduce((a, b) => (b.v > a.v ? b : a));
      result.notes.push(
        `${id}: highest rate at --workers ${best.w} (${Math.round(best.v)} req/s); ` +
          `${points.map((p) => `${p.w}: ${Math.round(p.v)}`).join(', ')}. This machine has ${cpus().length} CPUs shared by load, emulator and proxy.`,
      );
    }
    return result;
  },
};
