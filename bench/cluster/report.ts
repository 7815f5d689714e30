/**
 * Aggregation and the Markdown / JSON / console output of the cluster benchmark.
 */
import type { Machine } from '../lib/run-meta.ts';
import { spread } from '../lib/stats.ts';
import type { Excerpt, ScenarioId, ScenarioResult } from './scenarios.ts';

export interface Measurement {
  readonly run: number;
  readonly heartbeat: string;
  readonly heartbeatMs: number;
  readonly scenario: ScenarioId;
  readonly startedAt: string;
  readonly wallMs: number;
  readonly result: ScenarioResult | null;
  readonly error: string | null;
  /** warnings and errors the nodes logged during the scenario, per host and message */
  readonly warnings: Record<string, number>;
}

export interface Summary {
  readonly scenario: ScenarioId;
  readonly metric: string;
  readonly heartbeat: string;
  readonly n: number;
  /** runs where the metric had no value (event not seen) */
  readonly missing: number;
  readonly median: number | null;
  readonly min: number | null;
  readonly worst: number | null;
  readonly spread: number | null;
  readonly mean: number | null;
  readonly stdev: number | null;
}

export interface ReportMeta {
  readonly command: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly wallS: number;
  readonly runs: number;
  readonly lanes: number;
  readonly heartbeats: readonly string[];
  readonly scenarios: readonly ScenarioId[];
  readonly machine: Machine;
  readonly commit: string | null;
  /** the ollana entry point that ran */
  readonly ollana: string;
  readonly otherNamespacesAtStart: number;
  /** why the bench stopped early, if it did */
  readonly aborted: string | null;
}

/** The metrics shown per scenario: [key in the result, label]. All are "higher is worse". */
export const METRICS: Readonly<Record<ScenarioId, readonly (readonly [string, string])[]>> = {
  discover: [
    ['spawnToFirstOkMs', 'client spawn -> first ollama-js success'],
    ['listeningToFirstOkMs', 'client "listening" -> first success'],
    ['listeningToFoundLogMs', 'client "listening" -> "server node found" (log)'],
    ['foundToFirstOkMs', 'client "server node found" (log) -> first success'],
    ['spawnToListeningMs', 'client spawn -> "listening" (process start-up)'],
    ['spawnToFirstLogMs', 'client spawn -> its first log line (node + module loading)'],
  ],
  'detect-kill': [
    ['dropMs', 'SIGKILL -> gone from client status'],
    ['goneLogMs', 'SIGKILL -> "is gone" log line'],
    ['reappeared', 'dropped server came back (count)'],
    ['newLeaderMs', 'SIGKILL of the leader -> new leader in status'],
    ['rejoinMs', 'restarted server "listening" -> listed again'],
  ],
  'detect-cut': [
    ['dropMs', 'cut -> gone from client status'],
    ['goneLogMs', 'cut -> "is gone" log line'],
    ['reappeared', 'dropped server came back (count)'],
    ['newLeaderMs', 'cut of the leader -> new leader in status'],
    ['rejoinMs', 'heal -> listed again'],
  ],
  'failover-kill': [
    ['gapMs', 'longest stretch without a success'],
    ['failed', 'failed requests'],
    ['lastFailStartMs', 'last failed request started (after kill)'],
    ['maxOkLatencyAfterMs', 'slowest successful request after the kill'],
    ['retries', 'requests the client node moved to the other server'],
    ['dropMs', 'SIGKILL -> gone from client status'],
  ],
  'failover-cut': [
    ['gapMs', 'longest stretch without a success'],
    ['failed', 'failed requests'],
    ['lastFailStartMs', 'last failed request started (after cut)'],
    ['maxOkLatencyAfterMs', 'slowest successful request after the cut'],
    ['retries', 'requests the client node moved to the other server'],
    ['dropMs', 'cut -> gone from client status'],
  ],
  bye: [
    ['dropMs', 'SIGTERM -> gone from client status'],
    ['goneLogMs', 'SIGTERM -> "is gone" log line'],
    ['reappeared', 'dropped server came back (count)'],
    ['rejoinMs', 'restarted server "listening" -> listed again'],
  ],
};

function num(r: ScenarioResult | null, key: string): number | null {
  const v = r === null ? undefined : (r as unknown as Record<string, unknown>)[key];
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

export function summarize(
  ms: readonly Measurement[],
  heartbeats: readonly string[],
  scenarios: readonly ScenarioId[],
): Summary[] {
  const out: Summary[] = [];
  for (const scenario of scenarios) {
    for (const [metric] of METRICS[scenario]) {
      for (const heartbeat of heartbeats) {
        const rows = ms
          .filter((m) => m.scenario === scenario && m.heartbeat === heartbeat && m.result !== null)
          // A new leader is only expected when the leader was the victim, a last failure when one failed.
          .filter((m) => metric !== 'newLeaderMs' || (m.result as { victimRole?: string }).victimRole === 'leader')
          .filter((m) => metric !== 'lastFailStartMs' || ((m.result as { failed?: number }).failed ?? 0) > 0);
        const vals = rows
          .map((m) => num(m.result, metric))
          .filter((v): v is number => v !== null)
          .sort((a, b) => a - b);
        const n = vals.length;
        const s = spread(vals);
        const mean = n === 0 ? null : vals.reduce((a, b) => a + b, 0) / n;
        const stdev =
          n < 2 || mean === null ? null : Math.sqrt(vals.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1));
        out.push({
          scenario,
          metric,
          heartbeat,
          n,
          missing: rows.length - n,
          median: s?.median ?? null,
          min: s?.min ?? null,
          worst: s?.max ?? null,
          spread: s === null ? null : s.max - s.min,
          mean,
          stdev,
        });
      }
    }
  }
  return out;
}

const fmt = (v: number | null | undefined, digits = 0): string =>
  v === null || v === undefined ? '–' : v.toFixed(digits);

function label(scenario: ScenarioId, metric: string): string {
  return METRICS[scenario].find(([k]) => k === metric)?.[1] ?? metric;
}

/** What the design predicts, for the report's reading aid. */
function model(hbMs: number): string[] {
  const dead = 3.5 * hbMs;
  const sweep = dead / 10;
  return [
    `- heartbeat ${hbMs} ms: a peer is gone when not heard for ${dead} ms (3.5 heartbeats), checked every ${sweep} ms;` +
      ` from a kill at a random heartbeat phase that is ${dead - hbMs}–${dead + sweep} ms (+ up to 50 ms of status polling).`,
    `  A client node that knows no server queries at once; a server answers within ${Math.min(200, hbMs / 4)} ms (random jitter).`,
  ];
}

export function markdown(meta: ReportMeta, ms: readonly Measurement[], sums: readonly Summary[]): string {
  const L: string[] = [];
  L.push('# ollana cluster benchmark: discovery, failure detection, failover', '');
  L.push(`- command: \`${meta.command}\``);
  L.push(
    `- started ${meta.startedAt}, took ${meta.wallS.toFixed(0)} s; ${meta.runs} run(s) per heartbeat; heartbeats: ${meta.heartbeats.join(', ')}`,
  );
  L.push(`- ollana: \`${meta.ollana}\`, commit: ${meta.commit ?? 'unknown'}`);
  L.push(
    `- machine: ${meta.machine.cpus} CPUs, kernel ${meta.machine.kernel}, node ${meta.machine.node}; load average before ${meta.machine.loadBefore.map((x) => x.toFixed(2)).join(' ')}, after ${meta.machine.loadAfter.map((x) => x.toFixed(2)).join(' ')}`,
  );
  if (meta.aborted !== null) L.push(`- **stopped early**: ${meta.aborted}`);
  if (meta.otherNamespacesAtStart > 0)
    L.push(
      `- ${meta.otherNamespacesAtStart} network namespaces of other runs existed at the start: the machine was shared, timings are noisier`,
    );
  L.push(
    '- one virtual LAN (network namespaces + bridge) per run and heartbeat: h1, h2 server nodes with an Ollama emulator each (3 tokens 2 ms apart), h3 the client node; ollana runs as `serve --workers 1 --heartbeat <hb>`; after each event the victim is restarted (same node id) or its link healed, and the next scenario waits until the client lists both servers again; a failed scenario throws the LAN away',
  );
  const loops = meta.lanes === 1 ? 'one loop' : `${meta.lanes} concurrent loops`;
  L.push(
    `- probes run inside h3 and talk to its 127.0.0.1:11434 with ollama-js (first success: retry every 20 ms; status: poll every 50 ms; failover: ${loops} of back-to-back streamed generations, 10 s client timeout); all times are Date.now() on the shared machine clock`,
  );
  L.push(
    '- the victim is the leader when (run + scenario index) is odd, else the follower; events happen at a random heartbeat phase',
    '',
  );
  for (const hb of meta.heartbeats) {
    const hbMs = ms.find((m) => m.heartbeat === hb)?.heartbeatMs;
    if (hbMs !== undefined) L.push(...model(hbMs));
  }
  L.push('', '## Summary (ms unless a count; worst = max over runs; spread = max − min)', '');
  L.push('| scenario | metric | heartbeat | median | worst | min | spread | stdev | n |');
  L.push('|---|---|---|--:|--:|--:|--:|--:|--:|');
  for (const s of sums) {
    if (s.n === 0 && (s.metric === 'newLeaderMs' || s.metric === 'lastFailStartMs')) continue;
    L.push(
      `| ${s.scenario} | ${label(s.scenario, s.metric)} | ${s.heartbeat} | ${fmt(s.median)} | ${fmt(s.worst)} | ${fmt(s.min)} | ${fmt(s.spread)} | ${fmt(s.stdev)} | ${s.n}${s.missing > 0 ? ` (${s.missing} missing)` : ''} |`,
    );
  }
  const errors = ms.filter((m) => m.error !== null);
  if (errors.length > 0) {
    L.push('', '## Failed measurements', '');
    for (const m of errors) L.push(`- run ${m.run}, ${m.heartbeat}, ${m.scenario}: ${m.error!.split('\n')[0]}`);
  }
  L.push('', '## Per run', '');
  for (const scenario of meta.scenarios) {
    const rows = ms.filter((m) => m.scenario === scenario && m.result !== null);
    if (rows.length === 0) continue;
    const keys = Object.keys(rows[0]!.result!).filter((k) => k !== 'scenario' && k !== 'excerpts' && k !== 'window');
    L.push(`### ${scenario}`, '');
    L.push(`| heartbeat | run | ${keys.join(' | ')} |`);
    L.push(`|---|--:|${keys.map(() => '--:').join('|')}|`);
    for (const m of rows) {
      const r = m.result as unknown as Record<string, unknown>;
      L.push(`| ${m.heartbeat} | ${m.run} | ${keys.map((k) => cell(r[k])).join(' | ')} |`);
    }
    L.push('');
  }
  const warned = new Map<string, Map<string, { count: number; runs: Set<number> }>>();
  for (const m of ms) {
    for (const [msg, n] of Object.entries(m.warnings)) {
      const k = `${m.scenario}, ${m.heartbeat}`;
      const per = warned.get(k) ?? new Map<string, { count: number; runs: Set<number> }>();
      const w = per.get(msg) ?? { count: 0, runs: new Set<number>() };
      w.count += n;
      w.runs.add(m.run);
      per.set(msg, w);
      warned.set(k, per);
    }
  }
  if (warned.size > 0) {
    L.push(
      '## Warnings and errors the nodes logged',
      '',
      '(besides the expected "server node ... is gone"; numbers and ids folded)',
      '',
    );
    L.push('| scenario, heartbeat | host: message | lines | runs |', '|---|---|--:|--:|');
    for (const [k, per] of warned) {
      for (const [msg, w] of per) L.push(`| ${k} | ${msg.replace(/\|/g, '\\|')} | ${w.count} | ${w.runs.size} |`);
    }
    L.push('');
  }
  const ex: { m: Measurement; e: Excerpt }[] = ms.flatMap((m) => (m.result?.excerpts ?? []).map((e) => ({ m, e })));
  if (ex.length > 0) {
    L.push('## Log excerpts (runs that did something unexpected)', '');
    for (const { m, e } of ex.slice(0, 20)) {
      L.push(`**run ${m.run}, ${m.heartbeat}: ${e.title}**`, '', '```', ...e.lines, '```', '');
    }
  }
  return `${L.join('\n')}\n`;
}

function cell(v: unknown): string {
  if (v === null || v === undefined) return '–';
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : v.toFixed(1);
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (typeof v === 'object') {
    const s = Object.entries(v as Record<string, unknown>)
      .map(([k, n]) => `${k}: ${String(n)}`)
      .join('; ');
    return s === '' ? '–' : s.replace(/\|/g, '\\|').slice(0, 200);
  }
  return String(v).replace(/\|/g, '\\|');
}

/** The short table printed at the end. */
export function consoleTable(sums: readonly Summary[]): string {
  const rows = sums.filter(
    (s) =>
      s.n > 0 &&
      [
        'spawnToFirstOkMs',
        'listeningToFirstOkMs',
        'listeningToFoundLogMs',
        'dropMs',
        'goneLogMs',
        'gapMs',
        'failed',
        'reappeared',
        'rejoinMs',
      ].includes(s.metric),
  );
  const head = ['scenario', 'metric', 'hb', 'median', 'worst', 'spread', 'n'];
  const body = rows.map((s) => [
    s.scenario,
    s.metric,
    s.heartbeat,
    fmt(s.median),
    fmt(s.worst),
    fmt(s.spread),
    String(s.n),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i]!.length)));
  const line = (r: readonly string[]): string =>
    r.map((c, i) => (i >= 3 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...body.map(line)].join('\n');
}
