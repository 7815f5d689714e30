/**
 * The dashboard's once-a-second event: a compact picture of the node and the LAN (from the node's
 * status) and the rates of the last interval (from the metrics text: requests, time to first byte,
 * generated tokens). Pure functions; events.ts calls them on its tick.
 */
import type { NodeStatus } from '../protocol/status.ts';

/** The cumulative numbers the rates are made from, read from one scrape of the node's metrics. */
export interface Totals {
  readonly at: number;
  readonly requests: number;
  readonly firstByteSum: number;
  readonly firstByteCount: number;
  readonly generatedTokens: number;
  /** per device: requests and generated tokens (server nodes; '' is no device) */
  readonly devices: ReadonlyMap<string, { requests: number; tokens: number }>;
}

export interface Rates {
  /** ms since the epoch */
  readonly t: number;
  readonly rps: number;
  /** mean time to first byte of the requests that got it in the interval, seconds; null when none did */
  readonly ttftS: number | null;
  readonly tps: number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/;
const DEVICE = /(?:^|,)device="((?:[^"\\]|\\.)*)"/;

/** Sums the series the dashboard draws from a Prometheus text exposition. */
export function readTotals(text: string, at: number): Totals {
  let requests = 0;
  let firstByteSum = 0;
  let firstByteCount = 0;
  let generatedTokens = 0;
  const devices = new Map<string, { requests: number; tokens: number }>();
  const device = (labels: string | undefined): { requests: number; tokens: number } => {
    const id = DEVICE.exec(labels ?? '')?.[1] ?? '';
    let d = devices.get(id);
    if (!d) {
      d = { requests: 0, tokens: 0 };
      devices.set(id, d);
    }
    return d;
  };
  for (const line of text.split('\n')) {
    if (!line.startsWith('ollana_')) continue;
    const m = SAMPLE.exec(line);
    if (!m) continue;
    const value = Number(m[3]);
    if (!Number.isFinite(value)) continue;
    switch (m[1]) {
      case 'ollana_requests_total':
        requests += value;
        device(m[2]).requests += value;
        break;
      case 'ollana_request_first_byte_seconds_sum':
        firstByteSum += value;
        break;
      case 'ollana_request_first_byte_seconds_count':
        firstByteCount += value;
        break;
      case 'ollana_generated_tokens_total':
        generatedTokens += value;
        device(m[2]).tokens += value;
        break;
    }
  }
  return { at, requests, firstByteSum, firstByteCount, generatedTokens, devices };
}

/** The rates between two readings (none below zero: a reading after a restart of the node starts anew). */
export function rates(prev: Totals, now: Totals): Rates {
  const dt = Math.max((now.at - prev.at) / 1000, 0.001);
  const per = (a: number, b: number): number => Math.max(0, b - a) / dt;
  const count = now.firstByteCount - prev.firstByteCount;
  const round = (x: number): number => Math.round(x * 1000) / 1000;
  return {
    t: now.at,
    rps: round(per(prev.requests, now.requests)),
    ttftS: count > 0 ? round(Math.max(0, now.firstByteSum - prev.firstByteSum) / count) : null,
    tps: round(per(prev.generatedTokens, now.generatedTokens)),
  };
}

export interface ServerView {
  readonly id: string;
  readonly url: string;
  readonly self: boolean;
  readonly leader: boolean;
  /** null: known from the election only, no health heard */
  readonly healthy: boolean | null;
  readonly inFlight: number | null;
  readonly models: readonly string[];
}

export interface Snapshot {
  readonly node: {
    readonly id: string;
    readonly name: string;
    readonly role: string;
    readonly version: string;
    readonly uptimeS: number;
  };
  readonly leader: string;
  readonly servers: readonly ServerView[];
  readonly clients: number;
  readonly inFlight: number;
  readonly requests: number;
  readonly models: readonly {
    model: string;
    slots: number;
    inFlight: number;
    waiting: number;
    longestWaitMs: number;
  }[];
  readonly devices: readonly {
    device: string;
    requests: number;
    tokens: number;
    waiting: number;
    servedAfterWait: number;
    refused: number;
    weight: number | null;
    throttled: boolean;
  }[];
  readonly rate: Rates | null;
}

/** The server nodes a node knows of: itself when it is one, those it routes to, those the election names. */
export function serverViews(s: NodeStatus): ServerView[] {
  const out: ServerView[] = [];
  if (s.role === 'server') {
    out.push({
      id: s.node.id,
      url: `${s.listen.host}:${s.listen.port}`,
      self: true,
      leader: s.cluster.isLeader,
      healthy: s.ollama?.healthy ?? false,
      inFlight: s.workers.totals.inFlight,
      models: s.ollama?.models ?? [],
    });
  }
  for (const p of s.peers) {
    if (!('url' in p)) continue;
    out.push({
      id: p.id,
      url: p.url,
      self: false,
      leader: p.leader,
      healthy: p.healthy,
      inFlight: p.load.inFlight,
      models: p.models,
    });
  }
  for (const id of s.cluster.servers) {
    if (out.some((v) => v.id === id)) continue;
    out.push({
      id,
      url: '',
      self: false,
      leader: id === s.cluster.leader,
      healthy: null,
      inFlight: null,
      models: [],
    });
  }
  return out;
}

export function snapshot(s: NodeStatus, totals: Totals, rate: Rates | null): Snapshot {
  const sched = s.sched;
  const devices = new Map<string, Snapshot['devices'][number]>();
  for (const [device, t] of totals.devices) {
    if (device === '') continue;
    devices.set(device, {
      device,
      requests: t.requests,
      tokens: t.tokens,
      waiting: 0,
      servedAfterWait: 0,
      refused: 0,
      weight: null,
      throttled: false,
    });
  }
  for (const d of sched?.devices ?? []) {
    const t = totals.devices.get(d.device);
    devices.set(d.device, {
      device: d.device,
      requests: t?.requests ?? 0,
      tokens: t?.tokens ?? 0,
      waiting: d.waiting,
      servedAfterWait: d.servedAfterWait,
      refused: d.refused,
      weight: d.weight,
      throttled: d.throttled,
    });
  }
  return {
    node: {
      id: s.node.id,
      name: s.node.name,
      role: s.role,
      version: s.ollana.version,
      uptimeS: s.ollana.uptimeS,
    },
    leader: s.cluster.leader,
    servers: serverViews(s),
    clients: s.peers.filter((p) => !('url' in p)).length,
    inFlight: s.workers.totals.inFlight,
    requests: totals.requests,
    models: (sched?.models ?? []).map((m) => ({
      model: m.model,
      slots: m.slots,
      inFlight: m.inFlight,
      waiting: Object.values(m.queued).reduce((n, k) => n + k, 0),
      longestWaitMs: m.longestWaitMs,
    })),
    devices: [...devices.values()].sort((a, b) => a.device.localeCompare(b.device)),
    rate,
  };
}
