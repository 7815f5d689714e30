/** Writes report.json, report.md and the SVG charts into the output directory. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { ScenarioResult } from '../results.ts';
import { summarize, systemsIn } from '../results.ts';
import { groupedBars } from './chart.ts';
import { renderMarkdown } from './markdown.ts';
import type { RunReport } from './types.ts';

interface ChartSpec {
  readonly scenario: string;
  readonly metric: string;
  readonly title: string;
  readonly yLabel: string;
}

const CHARTS: readonly ChartSpec[] = [
  { scenario: 'rate', metric: 'reqPerSec', title: 'Request rate (median req/s)', yLabel: 'req/s' },
  { scenario: 'streams', metric: 'delayP99Ms', title: 'Per-token delivery delay p99 (ms, lower is better)', yLabel: 'ms' },
  { scenario: 'scaling', metric: 'reqPerSec', title: 'Scaling with --workers (median req/s)', yLabel: 'req/s' },
];

function chartFor(sc: ScenarioResult, spec: ChartSpec): string | null {
  if (sc.cases.length === 0) return null;
  const metric = sc.cases[0]!.metrics.find((m) => m.key === spec.metric);
  if (metric === undefined) return null;
  const systems = [...new Set(sc.cases.flatMap((c) => systemsIn(c)))];
  const series = systems.map((sys) => ({
    name: sys,
    values: sc.cases.map((c) => summarize(c, sys, metric).value?.median ?? null),
  }));
  return groupedBars(spec.title, spec.yLabel, sc.cases.map((c) => c.title.replace(/^(GET|POST) \/api\//, '')), series);
}

/** Writes everything; returns the paths written. */
export function writeReport(dir: string, report: RunReport): string[] {
  mkdirSync(dir, { recursive: true });
  const written: string[] = [];
  const charts: { file: string; title: string }[] = [];
  for (const spec of CHARTS) {
    const sc = report.scenarios.find((s) => s.id === spec.scenario && s.skipped === null);
    const svg = sc === undefined ? null : chartFor(sc, spec);
    if (svg === null) continue;
    const file = `chart-${spec.scenario}.svg`;
    writeFileSync(join(dir, file), svg);
    charts.push({ file, title: spec.title });
    written.push(join(dir, file));
  }
  writeFileSync(join(dir, 'report.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(dir, 'report.md'), renderMarkdown(report, charts));
  written.push(join(dir, 'report.json'), join(dir, 'report.md'));
  return written;
}
