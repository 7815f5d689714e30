/**
 * What a run produces, as plain JSON-able data: per case, one Sample per (system, round), and the
 * metric specs that say how to summarise and compare them. Summaries pair rounds: the ratio of a
 * system to a baseline is taken within each round (A and B measured back to back), then the
 * median over rounds, which cancels slow drifts of the machine that a ratio of medians would keep.
 */
import type { ScenarioId, SystemId } from './options.ts';
import { spread, type Spread } from './stats.ts';

export interface MetricSpec {
  readonly key: string;
  readonly label: string;
  readonly unit: string;
  readonly digits: number;
  readonly better: 'higher' | 'lower';
  /** ratio: shown as ×baseline; delta: shown as "added" against direct; none: value only. */
  readonly compare: 'ratio' | 'delta' | 'none';
  /** Peaks summarise with the maximum over rounds, everything else with the median. */
  readonly agg?: 'median' | 'max';
}

export interface Sample {
  readonly system: SystemId;
  readonly round: number;
  /** False when the measurement had failures; its values still show, but it is flagged. */
  readonly ok: boolean;
  readonly values: Readonly<Record<string, number>>;
  readonly note: string | null;
}

export interface CaseResult {
  readonly id: string;
  readonly title: string;
  /** --workers of the ollana and nginx systems in this case. */
  readonly workers: number;
  readonly metrics: readonly MetricSpec[];
  readonly samples: Sample[];
  /** Display labels of the systems measured in this case. */
  readonly labels: Partial<Record<SystemId, string>>;
}

export interface ScenarioResult {
  readonly id: ScenarioId;
  readonly title: string;
  /** What was measured and how (load, pinning), for the report. */
  readonly method: string;
  readonly cases: CaseResult[];
  readonly notes: string[];
  /** Why the scenario did not run, or null. */
  readonly skipped: string | null;
}

export type Baseline = 'direct' | 'nginx';

export interface MetricSummary {
  readonly value: Spread | null;
  /** ratio (system / baseline) or delta (system − baseline), paired per round. */
  readonly vs: Partial<Record<Baseline, Spread | null>>;
}

/** Summary of one metric for one system in one case. */
export function summarize(c: CaseResult, system: SystemId, metric: MetricSpec): MetricSummary {
  const mine = c.samples.filter((s) => s.system === system && s.values[metric.key] !== undefined);
  const values = mine.map((s) => s.values[metric.key]!);
  let value = spread(values);
  if (value !== null && metric.agg === 'max') value = { ...value, median: value.max };
  const vs: Partial<Record<Baseline, Spread | null>> = {};
  if (metric.compare !== 'none') {
    for (const base of ['direct', 'nginx'] as const) {
      if (base === system) continue;
      const paired: number[] = [];
      for (const s of mine) {
        const b = c.samples.find((x) => x.system === base && x.round === s.round)?.values[metric.key];
        if (b === undefined || !Number.isFinite(b)) continue;
        const v = s.values[metric.key]!;
        if (metric.compare === 'ratio') {
          if (b !== 0) paired.push(v / b);
        } else paired.push(v - b);
      }
      if (paired.length > 0) vs[base] = spread(paired);
    }
  }
  return { value, vs };
}

export function systemsIn(c: CaseResult): SystemId[] {
  const seen: SystemId[] = [];
  for (const s of c.samples) if (!seen.includes(s.system)) seen.push(s.system);
  return seen;
}
