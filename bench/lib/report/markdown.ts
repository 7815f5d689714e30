/**
 * report.md: the run's setup, one table per scenario (median over rounds, ± half the min–max range
 * in percent, and paired comparisons to direct and nginx), the targets, the CI gate and profiles.
 */
import type { MetricSpec, ScenarioResult } from '../results.ts';
import { FOREIGN_LIMIT_PCT } from '../scenarios/context.ts';
import { summarize, systemsIn } from '../results.ts';
import type { Spread } from '../stats.ts';
import type { RunReport } from './types.ts';

function num(v: number, digits: number): string {
  if (!Number.isFinite(v)) return '–';
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

function withSpread(s: Spread | null, m: MetricSpec): string {
  if (s === null) return '–';
  // The unit is in the column head.
  const text = num(s.median, m.digits);
  if (s.n < 2 || m.agg === 'max' || s.median === 0) return text;
  const pct = (100 * (s.max - s.min)) / 2 / Math.abs(s.median);
  return `${text} ±${pct < 10 ? pct.toFixed(1) : pct.toFixed(0)}%`;
}

function ratio(s: Spread | null | undefined): string {
  return s ? `${s.median.toFixed(2)}×` : '–';
}

function delta(s: Spread | null | undefined, m: MetricSpec): string {
  if (!s) return '–';
  const d = Math.max(m.digits, 2);
  return `${s.median >= 0 ? '+' : '−'}${num(Math.abs(s.median), d)} ${m.unit}`;
}

function esc(s: string): string {
  return s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** One table for a scenario: rows are case × system, columns the metrics and their comparisons. */
export function scenarioTable(sc: ScenarioResult): string {
  if (sc.cases.length === 0) return '';
  const metrics = sc.cases[0]!.metrics;
  // Show a comparison column only where at least one row has a value for it.
  type Col = {
    head: string;
    cell: (c: ScenarioResult['cases'][number], sys: ReturnType<typeof systemsIn>[number]) => string;
  };
  const cols: Col[] = [];
  for (const m of metrics) {
    cols.push({
      head: `${m.label}${m.unit === '' ? '' : ` (${m.unit})`}`,
      cell: (c, sys) => withSpread(summarize(c, sys, m).value, m),
    });
    const has = (base: 'direct' | 'nginx'): boolean =>
      sc.cases.some((c) => systemsIn(c).some((sys) => summarize(c, sys, m).vs[base] != null));
    if (m.compare === 'ratio') {
      if (has('direct')) cols.push({ head: '× direct', cell: (c, sys) => ratio(summarize(c, sys, m).vs.direct) });
      if (has('nginx')) cols.push({ head: '× nginx', cell: (c, sys) => ratio(summarize(c, sys, m).vs.nginx) });
    } else if (m.compare === 'delta' && has('direct')) {
      cols.push({ head: `${m.label} added`, cell: (c, sys) => delta(summarize(c, sys, m).vs.direct, m) });
    }
  }
  const lines = [
    `| case | system | ${cols.map((c) => c.head).join(' | ')} |`,
    `|---|---|${cols.map(() => '---:').join('|')}|`,
  ];
  const problems: string[] = [];
  for (const c of sc.cases) {
    for (const sys of systemsIn(c)) {
      const bad = c.samples.filter((s) => s.system === sys && !s.ok);
      for (const b of bad) problems.push(`${c.title}, ${sys}, round ${b.round + 1}: ${b.note ?? 'failed'}`);
      lines.push(
        `| ${esc(c.title)} | ${sys}${bad.length > 0 ? ' ⚠' : ''} | ${cols.map((col) => esc(col.cell(c, sys))).join(' | ')} |`,
      );
    }
  }
  if (problems.length > 0)
    lines.push(
      '',
      `⚠ measurements with failures (values above include them):`,
      ...problems.slice(0, 20).map((p) => `- ${esc(p)}`),
    );
  const foreign = sc.cases.flatMap((c) => c.samples.map((s) => s.values.foreignPct ?? 0));
  const busy = foreign.filter((f) => f > FOREIGN_LIMIT_PCT);
  if (busy.length > 0) {
    lines.push(
      '',
      `Other processes on the machine used more than ${FOREIGN_LIMIT_PCT}% of a CPU during ${busy.length} of ` +
        `${foreign.length} measurements (up to ${Math.max(...busy).toFixed(0)}%), even after re-measuring: read those rows with care.`,
    );
  }
  return lines.join('\n');
}

export function renderMarkdown(r: RunReport, charts: readonly { file: string; title: string }[]): string {
  const o = r.options;
  const out: string[] = [];
  out.push(`# ollana benchmark${o.ci ? ' (CI gate)' : ''}`, '');
  out.push(
    `${r.startedAt} · ${r.wallSeconds.toFixed(0)} s · ${r.machine.cpus} × ${r.machine.cpuModel}, ${r.machine.memGiB} GiB, ` +
      `Linux ${r.machine.kernel}, Node ${r.machine.node} · ollana ${r.ollana.commit ?? '(no git)'}` +
      `${r.ollana.args.length > 0 ? ` with \`${r.ollana.args.join(' ')}\`` : ''}`,
    '',
  );
  out.push(
    `Rounds ${o.rounds}, ${o.duration} s per request-rate measurement, ${o.warmup} s warm-up load per system before the first ` +
      `measurement, --workers ${o.workers}, ollana --log-level ${o.ollanaLogLevel}` +
      `${o.ollanaNodeArgs.length > 0 ? `, node ${o.ollanaNodeArgs.join(' ')}` : ''}. ${r.placement}.`,
    '',
  );

  out.push('## Systems', '', '| system | status |', '|---|---|');
  for (const s of r.systems) out.push(`| ${s.id} | ${s.ran ? esc(s.label) : `not measured: ${esc(s.reason ?? '')}`} |`);
  const tools = Object.values(r.tools);
  if (tools.length > 0)
    out.push('', `Tools: ${tools.map((t) => `${t.name} ${t.version ?? ''} (${t.note})`).join('; ')}.`);
  out.push('');

  if (r.gate !== null) {
    out.push('## CI gate', '', '| check | measured | threshold | result |', '|---|---:|---:|---|');
    for (const g of r.gate) {
      out.push(
        `| ${esc(g.name)} | ${g.measured === null ? '–' : g.measured.toFixed(3)} | ${g.op} ${g.threshold} | ${g.pass ? 'pass' : '**FAIL**'} |`,
      );
    }
    out.push('');
  }

  if (r.targets.some((t) => t.status !== 'n/a') || !o.ci) {
    out.push(
      '## Targets (one hop)',
      '',
      '| target | goal | ollana | nginx | status | how |',
      '|---|---|---:|---:|---|---|',
    );
    for (const t of r.targets) {
      const m = t.measured === null ? '–' : `${t.measured.toFixed(2)} ${t.unit}`;
      const n = t.nginx === null ? '–' : t.nginx.toFixed(2);
      out.push(
        `| ${t.title} | ${esc(t.target)} | ${m} | ${n} | ${t.status === 'missed' ? '**missed**' : t.status} | ${esc(t.detail)} |`,
      );
    }
    out.push('');
  }

  for (const sc of r.scenarios) {
    out.push(`## ${sc.title}`, '');
    if (sc.skipped !== null) {
      out.push(`Skipped: ${sc.skipped}`, '');
      continue;
    }
    out.push(sc.method, '', scenarioTable(sc), '');
    for (const n of sc.notes) out.push(`- ${n}`);
    const chart = charts.find((c) => c.file.includes(sc.id));
    if (chart) out.push('', `![${chart.title}](${chart.file})`, '');
  }

  if (r.profiles.length > 0) {
    out.push('## CPU profiles (node --cpu-prof, all threads)', '');
    for (const p of r.profiles) {
      out.push(
        `### ${p.system}: ${p.busyMs.toFixed(0)} ms busy over ${p.files} thread profiles`,
        '',
        `Self time by origin: ${Object.entries(p.byOrigin)
          .map(([k, v]) => `${k} ${v}%`)
          .join(', ')}.`,
        '',
        '| self | % | function | where |',
        '|---:|---:|---|---|',
      );
      for (const f of p.top)
        out.push(`| ${f.selfMs.toFixed(0)} ms | ${f.percent.toFixed(1)} | ${esc(f.name)} | ${esc(f.where)} |`);
      out.push('');
    }
  }

  if (r.problems.length > 0) {
    out.push('## Problems', '', ...r.problems.map((p) => `- ${esc(p)}`), '');
  }
  out.push('Raw samples of every round: report.json. Method and tuning notes: bench/README.md.', '');
  return out.join('\n');
}
