/**
 * The top of `ollana status` for people: aligned tables of what is asked first. Per server node its
 * health, the requests in flight and its models; on a server node, per model what is in flight and
 * waits, and per device what it waits for and was served.
 */
import { serverViews } from '../dashboard/snapshot.ts';
import type { NodeStatus } from '../protocol/status.ts';

/** Columns padded to their widest cell, two spaces apart; the last column is not padded. */
export function alignTable(header: readonly string[], rows: readonly (readonly string[])[]): string[] {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? '').length)));
  return all.map((r) =>
    r
      .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd(),
  );
}

const seconds = (ms: number): string => `${(ms / 1000).toFixed(1)} s`;

/** The first group of a device id: enough to tell a LAN's nodes apart; the details below give it whole. */
const shortId = (id: string): string => id.split('-')[0] ?? id;

export function statusTables(s: NodeStatus): string[] {
  const out: string[] = [];
  const servers = s.cluster ? serverViews(s) : [];
  const inFlightOf = new Map((s.sched?.models ?? []).map((m) => [m.model, m.inFlight]));
  out.push(
    ...alignTable(
      ['SERVER NODE', 'ADDRESS', 'HEALTH', 'LEADER', 'IN FLIGHT', 'MODELS'],
      servers.map((v) => [
        `${shortId(v.id)}${v.self ? ' (this node)' : ''}`,
        v.url || '?',
        v.healthy === null ? '?' : v.healthy ? 'healthy' : 'DOWN',
        v.leader ? 'leader' : '',
        v.inFlight === null ? '?' : String(v.inFlight),
        v.models
          .map((m) => (v.self && (inFlightOf.get(m) ?? 0) > 0 ? `${m} (${inFlightOf.get(m)} in flight)` : m))
          .join(', ') || '-',
      ]),
    ),
  );
  if (servers.length === 0) out.push(s.role === 'client' ? '(no server node found yet)' : '(none)');
  const sched = s.sched;
  if (sched && (sched.models ?? []).length > 0) {
    out.push('');
    out.push(
      ...alignTable(
        ['MODEL', 'IN FLIGHT', 'SLOTS', 'WAITING', 'LONGEST WAIT'],
        sched.models.map((m) => {
          const waiting = Object.values(m.queued ?? {}).reduce((n, k) => n + k, 0);
          return [
            m.model,
            String(m.inFlight),
            String(m.slots),
            String(waiting),
            waiting > 0 ? seconds(m.longestWaitMs) : '-',
          ];
        }),
      ),
    );
  }
  if (sched && (sched.devices ?? []).length > 0) {
    out.push('');
    out.push(
      ...alignTable(
        ['DEVICE', 'WEIGHT', 'WAITING', 'SERVED AFTER WAIT', 'REFUSED', ''],
        sched.devices.map((d) => [
          shortId(d.device),
          String(d.weight),
          String(d.waiting),
          String(d.servedAfterWait),
          String(d.refused),
          d.throttled ? 'THROTTLED' : '',
        ]),
      ),
    );
  }
  return out;
}
