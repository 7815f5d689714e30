/**
 * report.json, report.md and the console table of the two-hop benchmark. The per-case tables are
 * bench/lib's (median over rounds ± half the range, paired "added" and "× direct" columns); this file
 * adds the TLS facts and the summary a reader needs first.
 */
import { scenarioTable } from '../lib/report/markdown.ts';
import { summarize, type CaseResult, type ScenarioResult } from '../lib/results.ts';
import type { Machine } from '../lib/run-meta.ts';
import type { GateCheck } from '../lib/report/types.ts';
import type { ClientCounters } from './agent.ts';
import type { Ahead } from './gate.ts';
import type { HandshakeCost, HandshakeCosts } from './handshakes.ts';
import type { ServerSockets } from './lan.ts';

export interface TlsTotals {
  /** the client node's counters at the end of the run (every request since start, status polls included) */
  readonly client: ClientCounters;
  /** what h1 saw at its TLS port: SYNs since start (nftables) and connections open at the end (ss) */
  readonly server: ServerSockets;
}

export interface TwoHopReport {
  readonly schema: 1;
  readonly kind: 'two-hop';
  readonly command: string;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly wallSeconds: number;
  readonly machine: Machine;
  readonly ollana: { main: string; commit: string | null };
  readonly options: Record<string, unknown>;
  readonly placement: string;
  readonly topology: string;
  readonly handshakes: HandshakeCosts | null;
  /** the client node's workers before the first request: their connections ahead */
  readonly ahead: Ahead | null;
  readonly cases: readonly CaseResult[];
  readonly tls: TlsTotals | null;
  /** --ci: the checks of ./gate.ts */
  readonly gate: readonly GateCheck[] | null;
  /** the nodes' warnings, errors and server found/gone lines (TwoHopLan.notableLogs) */
  readonly logs: readonly string[];
  readonly problems: readonly string[];
}

const METHOD = {
  cold:
    'The first burst of streams after the nodes started: nothing has gone through the client node yet, so its pool to the ' +
    'server node is empty, it holds no session ticket, and every concurrent stream opens a TLS connection with a full handshake ' +
    '(two hops first, then direct; one sample each; the JIT is still cold too, see the reconnect case for handshakes on warm nodes).',
  rate:
    'autocannon (programmatic API) inside the client host with N keep-alive connections; systems alternate round by round; ' +
    'latency percentiles are exact over every 2xx response. CPU/req = utime+stime of the client node and of the server node ' +
    '(/proc, all threads) over the window ÷ 2xx responses; "CPU" % is each node\'s share of one CPU over the window.',
  streams:
    'N /api/generate streams started in one tick, each on a new connection from the application; 100 tokens 20 ms apart. ' +
    "Token delay = arrival time in the client host − the emulator's write stamp in the token (same machine clock); TTFB = " +
    'request start to first body byte; on time = share of tokens delivered within one token interval. "added" = two-hop − direct, ' +
    'paired per round. One unrecorded round per system first.',
  reconnect:
    "The streams burst again on warm nodes, but before each two-hop sample every connection at the server node's port " +
    "is reset (ss -K in the lab-server host): each stream's upstream connection is a new TLS handshake, resumed from the " +
    'session ticket the client node kept. Against the warm-pool streams case, the difference is what reconnecting costs.',
};

function caseKind(c: CaseResult): keyof typeof METHOD {
  const kind = c.id.split('-')[0]!;
  return kind in METHOD ? (kind as keyof typeof METHOD) : 'rate';
}

function asScenario(kind: keyof typeof METHOD, cases: readonly CaseResult[]): ScenarioResult {
  return {
    id: kind === 'rate' ? 'rate' : 'streams',
    title: kind,
    method: METHOD[kind],
    cases: [...cases],
    notes: [],
    skipped: null,
  };
}

const TITLES = {
  cold: 'Cold pool: the first streams after start',
  rate: 'Request rate: small non-streamed requests',
  streams: 'Streaming fan-out (warm pool)',
  reconnect: 'Streaming fan-out on an emptied pool (resumed handshakes)',
};

function med(c: CaseResult, sys: 'direct' | 'two-hop', key: string): number | null {
  const m = c.metrics.find((x) => x.key === key) ?? {
    key,
    label: key,
    unit: '',
    digits: 2,
    better: 'lower' as const,
    compare: 'none' as const,
  };
  return summarize(c, sys, m).value?.median ?? null;
}

function sumOf(c: CaseResult, key: string): number {
  return c.samples.filter((s) => s.system === 'two-hop').reduce((a, s) => a + (s.values[key] ?? 0), 0);
}

/** One line per case: handshakes (resumed) against the requests or streams the application made. */
export function tlsRows(cases: readonly CaseResult[]): string[] {
  const rows = [
    '| case | requests or streams through two hops | TLS handshakes (client node) | of them resumed | SYNs at the server port | connections open at the server after a sample (median) |',
    '|---|---:|---:|---:|---:|---:|',
  ];
  for (const c of cases) {
    const units = caseKind(c) === 'rate' ? sumOf(c, 'requests') : sumOf(c, 'streams');
    const syns = c.samples.some((s) => s.system === 'two-hop' && s.values.serverSyns !== undefined)
      ? String(sumOf(c, 'serverSyns'))
      : '–';
    const open = med(c, 'two-hop', 'serverConnections');
    rows.push(
      `| ${c.title} | ${units} | ${sumOf(c, 'tlsHandshakes')} | ${sumOf(c, 'tlsResumed')} | ${syns} | ${open === null ? '–' : open.toFixed(0)} |`,
    );
  }
  return rows;
}

export function renderMarkdown(r: TwoHopReport): string {
  const out: string[] = [];
  out.push('# ollana two-hop benchmark (client node, TLS, server node)', '');
  out.push(
    `${r.startedAt} · ${r.wallSeconds.toFixed(0)} s · ${r.machine.cpus} × ${r.machine.cpuModel}, Linux ${r.machine.kernel}, ` +
      `Node ${r.machine.node} · ollana ${r.ollana.commit ?? r.ollana.main} · load average before ${r.machine.loadBefore.map((x) => x.toFixed(1)).join(' ')}`,
    '',
  );
  out.push(
    `\`${r.command}\` · ${Object.entries(r.options)
      .map(([k, v]) => `${k} ${Array.isArray(v) ? v.join(',') : String(v)}`)
      .join(', ')}`,
    '',
  );
  out.push('## Setup', '', r.topology, '', `${r.placement}.`, '');
  if (r.gate !== null) {
    out.push(
      '## CI gate (TLS counts)',
      '',
      '| check | measured | threshold | result | detail |',
      '|---|---:|---:|---|---|',
    );
    for (const g of r.gate) {
      out.push(
        `| ${g.name} | ${g.measured === null ? '–' : Number(g.measured.toFixed(4))} | ${g.op} ${g.threshold} | ${g.pass ? 'pass' : '**FAIL**'} | ${g.detail} |`,
      );
    }
    out.push('');
  }
  if (r.tls !== null) {
    const t = r.tls;
    out.push(
      '## TLS: paid per connection, not per request',
      '',
      `Whole run: the client node served ${t.client.requests} requests (load, warm-ups and the bench's status polls) over ` +
        `${t.client.tlsHandshakes} TLS handshakes to the server node, ${t.client.tlsResumed} of them resumed ` +
        `(${t.client.tlsHandshakes === 0 ? '–' : ((100 * t.client.tlsResumed) / t.client.tlsHandshakes).toFixed(0)} %); ` +
        `the server's port saw ${t.server.syns ?? '?'} connection attempts (SYNs) and has ${t.server.established} connections open at the end.` +
        (r.ahead === null
          ? ''
          : ` Before the first request the client node's workers had made ${r.ahead.handshakes} handshake(s) ` +
            `(${r.ahead.resumed} resumed): their connections ahead, seen ${r.ahead.waitedMs} ms after the client found the server.`),
      '',
      ...tlsRows(r.cases),
      '',
    );
  }
  if (r.handshakes !== null) {
    const h = r.handshakes;
    const row = (name: string, c: HandshakeCost): string =>
      `| ${name} | ${c.reused}/${c.connections} | ${c.wallMsPer.toFixed(2)} | ${c.clientCpuUsPer.toFixed(0)} | ${c.serverCpuUsPer.toFixed(0)} |`;
    out.push(
      '## One TLS handshake (loopback, one connection after another)',
      '',
      "bench/two-hop/handshakes.ts: ollana's TLS settings (TLS 1.3, ECDSA P-256 device certificates both ways, the server " +
        "asks for the client's, session tickets); each connection is opened, handshaken, answered with one byte and closed. " +
        "The first two rows connect through src/net/tls.ts's pinnedConnector, pin check included (one SecureContext per " +
        'identity); the last two pass the PEM certificate and key on every connect, as the connector did before. ' +
        'CPU from /proc and process.cpuUsage.',
      '',
      '| handshake | resumed | wall ms per connection | client CPU µs | server CPU µs |',
      '|---|---:|---:|---:|---:|',
      row('full, pinned connector (as ollana connects)', h.connector.full),
      row('resumed, pinned connector', h.connector.resumed),
      row('full, PEM per connect', h.pemPerConnect.full),
      row('resumed, PEM per connect', h.pemPerConnect.resumed),
      '',
    );
  }
  for (const kind of ['cold', 'rate', 'streams', 'reconnect'] as const) {
    const cases = r.cases.filter((c) => caseKind(c) === kind);
    if (cases.length === 0) continue;
    out.push(`## ${TITLES[kind]}`, '', METHOD[kind], '', scenarioTable(asScenario(kind, cases)), '');
  }
  if (r.logs.length > 0) {
    out.push(
      '## Node log lines (warnings, errors, servers found and gone)',
      '',
      '```',
      ...r.logs.slice(0, 40),
      ...(r.logs.length > 40 ? [`… ${r.logs.length - 40} more in report.json`] : []),
      '```',
      '',
    );
  }
  if (r.problems.length > 0) out.push('## Problems', '', ...r.problems.map((p) => `- ${p.replace(/\n/g, ' ')}`), '');
  out.push('Every sample: report.json. Method and what limits two hops: bench/README.md, "Two hops (TLS)".', '');
  return out.join('\n');
}

const f = (v: number | null, d = 0): string => (v === null || !Number.isFinite(v) ? '–' : v.toFixed(d));

/** The short table printed at the end of a run. */
export function consoleTable(cases: readonly CaseResult[]): string {
  const lines = [`${'case'.padEnd(34)} ${'direct'.padStart(9)} ${'two-hop'.padStart(9)}  comparison`];
  for (const c of cases) {
    if (caseKind(c) === 'rate') {
      const d = med(c, 'direct', 'reqPerSec');
      const t = med(c, 'two-hop', 'reqPerSec');
      const ratio = summarize(c, 'two-hop', c.metrics.find((m) => m.key === 'reqPerSec')!).vs.direct?.median ?? null;
      const p99 = summarize(c, 'two-hop', c.metrics.find((m) => m.key === 'p99Ms')!).vs.direct?.median ?? null;
      lines.push(
        `${`${c.title} req/s`.padEnd(34)} ${f(d).padStart(9)} ${f(t).padStart(9)}  ×${f(ratio, 2)}, p99 +${f(p99, 2)} ms, ` +
          `CPU/req ${f(med(c, 'two-hop', 'clientCpuUsPerReq'))} + ${f(med(c, 'two-hop', 'serverCpuUsPerReq'))} µs (client + server), ` +
          `${sumOf(c, 'tlsHandshakes')} handshakes / ${sumOf(c, 'requests')} requests`,
      );
    } else {
      const spec = (k: string) => c.metrics.find((m) => m.key === k)!;
      const add = (k: string) => summarize(c, 'two-hop', spec(k)).vs.direct?.median ?? null;
      lines.push(
        `${`${c.title} TTFB p99 ms`.padEnd(34)} ${f(med(c, 'direct', 'ttfbP99Ms'), 1).padStart(9)} ${f(med(c, 'two-hop', 'ttfbP99Ms'), 1).padStart(9)}  ` +
          `added TTFB p50 +${f(add('ttfbP50Ms'), 2)} p99 +${f(add('ttfbP99Ms'), 2)} ms, token delay p50 +${f(add('delayP50Ms'), 2)} p99 +${f(add('delayP99Ms'), 2)} ms, ` +
          `CPU/token ${f(med(c, 'two-hop', 'clientCpuUsPerToken'), 1)} + ${f(med(c, 'two-hop', 'serverCpuUsPerToken'), 1)} µs, ` +
          `${sumOf(c, 'tlsHandshakes')} handshakes (${sumOf(c, 'tlsResumed')} resumed)`,
      );
    }
  }
  return lines.join('\n');
}
