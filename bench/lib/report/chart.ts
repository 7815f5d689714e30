/**
 * The load bench's charts: grouped bar charts as standalone SVG (no dependency), one group per case,
 * one bar per system, with the value printed above each bar so the picture needs no axis reading.
 */
import type { ScenarioResult } from '../results.ts';
import { summarize, systemsIn } from '../results.ts';
import type { RunReport } from './types.ts';

export interface Series {
  readonly name: string;
  readonly values: readonly (number | null)[];
}

const COLORS = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948'];

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function short(v: number): string {
  if (v >= 10_000) return `${(v / 1000).toFixed(0)}k`;
  if (v >= 1000) return `${(v / 1000).toFixed(1)}k`;
  if (v >= 10) return v.toFixed(0);
  return v.toPrecision(2);
}

export function groupedBars(
  title: string,
  yLabel: string,
  groups: readonly string[],
  series: readonly Series[],
): string {
  const bar = 18;
  const gap = 28;
  const groupW = series.length * bar + gap;
  const left = 60;
  const top = 40;
  const plotH = 220;
  const width = Math.max(420, left + groups.length * groupW + 20);
  const legendY = top + plotH + 50;
  const height = legendY + 20 * Math.ceil(series.length / 3) + 10;
  const max = Math.max(
    1e-9,
    ...series.flatMap((s) => s.values.filter((v): v is number => v !== null && Number.isFinite(v))),
  );
  const y = (v: number): number => top + plotH - (v / max) * plotH;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="20" text-anchor="middle" font-size="14">${esc(title)}</text>`,
    `<text x="14" y="${top + plotH / 2}" transform="rotate(-90 14 ${top + plotH / 2})" text-anchor="middle">${esc(yLabel)}</text>`,
    `<line x1="${left}" y1="${top + plotH}" x2="${width - 10}" y2="${top + plotH}" stroke="#333"/>`,
    `<line x1="${left}" y1="${top}" x2="${left}" y2="${top + plotH}" stroke="#333"/>`,
  ];
  for (const frac of [0.25, 0.5, 0.75, 1]) {
    const v = max * frac;
    out.push(
      `<line x1="${left}" y1="${y(v)}" x2="${width - 10}" y2="${y(v)}" stroke="#ddd"/>`,
      `<text x="${left - 4}" y="${y(v) + 4}" text-anchor="end">${short(v)}</text>`,
    );
  }
  groups.forEach((g, gi) => {
    const x0 = left + gap / 2 + gi * groupW;
    series.forEach((s, si) => {
      const v = s.values[gi];
      if (v === null || v === undefined || !Number.isFinite(v)) return;
      const x = x0 + si * bar;
      out.push(
        `<rect x="${x}" y="${y(v)}" width="${bar - 2}" height="${top + plotH - y(v)}" fill="${COLORS[si % COLORS.length]}"/>`,
        `<text x="${x + (bar - 2) / 2}" y="${y(v) - 3}" text-anchor="middle" font-size="9">${short(v)}</text>`,
      );
    });
    out.push(
      `<text x="${x0 + (series.length * bar) / 2}" y="${top + plotH + 16}" text-anchor="middle">${esc(g)}</text>`,
    );
  });
  series.forEach((s, si) => {
    const lx = left + (si % 3) * 170;
    const ly = legendY + Math.floor(si / 3) * 20;
    out.push(
      `<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLORS[si % COLORS.length]}"/>`,
      `<text x="${lx + 16}" y="${ly}">${esc(s.name)}</text>`,
    );
  });
  out.push('</svg>');
  return out.join('\n');
}

interface ChartSpec {
  readonly scenario: string;
  readonly metric: string;
  readonly title: string;
  readonly yLabel: string;
}

const CHARTS: readonly ChartSpec[] = [
  { scenario: 'rate', metric: 'reqPerSec', title: 'Request rate (median req/s)', yLabel: 'req/s' },
  {
    scenario: 'streams',
    metric: 'delayP99Ms',
    title: 'Per-token delivery delay p99 (ms, lower is better)',
    yLabel: 'ms',
  },
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
  return groupedBars(
    spec.title,
    spec.yLabel,
    sc.cases.map((c) => c.title.replace(/^(GET|POST) \/api\//, '')),
    series,
  );
}

/** The charts of a run, one per charted scenario that ran: file name, title and SVG. */
export function scenarioCharts(report: RunReport): { file: string; title: string; content: string }[] {
  const out: { file: string; title: string; content: string }[] = [];
  for (const spec of CHARTS) {
    const sc = report.scenarios.find((s) => s.id === spec.scenario && s.skipped === null);
    const svg = sc === undefined ? null : chartFor(sc, spec);
    if (svg !== null) out.push({ file: `chart-${spec.scenario}.svg`, title: spec.title, content: svg });
  }
  return out;
}
