/**
 * The supervisor's own metrics, made fresh for each scrape from what it knows: build info, role,
 * in-flight requests and open connections (the workers' shared boards), worker restarts, the local
 * Ollama's health (server node) or each upstream's (client node), and discovery's counters.
 */
import type { Gauge as PromGauge } from 'prom-client';
import { Counter, mainThreadParts, Registry } from './prom.ts';
import type { DiscoveryStats, Upstream } from '../protocol/messages.ts';
import type { MetricsJson } from './hub.ts';

export interface NodeFacts {
  readonly version: string;
  readonly role: 'server' | 'client';
  readonly inFlight: number;
  readonly openConnections: number;
  readonly workerRestarts: number;
  /** server node: whether its Ollama answers; null on a client node */
  readonly ollamaUp: boolean | null;
  readonly upstreams: readonly Upstream[];
  readonly discovery: DiscoveryStats | null;
}

/**
 * Where the scheduler's queue metrics go once it lands: queue depth and wait time per model and
 * device (gauges and a histogram registered on `registry`, read at scrape time like the others).
 */
export type QueueMetrics = (registry: Registry) => void;
let queueMetrics: QueueMetrics | null = null;

/** The scheduler registers its queue metrics here; they are added to every scrape. */
export function registerQueueMetrics(register: QueueMetrics): void {
  queueMetrics = register;
}

/**
 * Keeps counters read from another thread monotonic: discovery's counts start again at 0 when its
 * thread is restarted, and what it had counted before is added back.
 */
export class MonotonicCounts {
  readonly #last = new Map<string, number>();
  readonly #base = new Map<string, number>();

  value(key: string, now: number): number {
    const last = this.#last.get(key) ?? 0;
    if (now < last) this.#base.set(key, (this.#base.get(key) ?? 0) + last);
    this.#last.set(key, now);
    return (this.#base.get(key) ?? 0) + now;
  }
}

function gauge(
  registry: Registry,
  name: string,
  help: string,
  value: number,
  labels?: Record<string, string>,
): PromGauge {
  const { Gauge } = mainThreadParts();
  const g = new Gauge({ name, help, labelNames: labels ? Object.keys(labels) : [], registers: [registry] });
  if (labels) g.set(labels, value);
  else g.set(value);
  return g;
}

/** The node's own metrics as prom-client JSON, ready to be added to the workers' (hub.ts). */
export async function nodeMetrics(f: NodeFacts, counts: MonotonicCounts): Promise<MetricsJson> {
  const r = new Registry();
  gauge(r, 'ollana_build_info', 'ollana version and the Node.js it runs on', 1, {
    version: f.version,
    node: process.versions.node,
  });
  gauge(r, 'ollana_node_role', 'The role this node has now (1 for its role)', 1, { role: f.role });
  gauge(r, 'ollana_in_flight_requests', 'Requests being relayed now, across all proxy workers', f.inFlight);
  gauge(r, 'ollana_open_connections', 'Client connections open now, across all proxy workers', f.openConnections);
  new Counter({
    name: 'ollana_worker_restarts_total',
    help: 'Proxy worker threads restarted after they died',
    registers: [r],
  }).inc(f.workerRestarts);
  if (f.ollamaUp !== null)
    gauge(r, 'ollana_ollama_up', "Whether this server node's Ollama answers", f.ollamaUp ? 1 : 0);
  const { Gauge } = mainThreadParts();
  const up = new Gauge({
    name: 'ollana_upstream_up',
    help: 'Whether an upstream (a server node, or the local Ollama) is healthy in the route table',
    labelNames: ['upstream'],
    registers: [r],
  });
  for (const u of f.upstreams) up.set({ upstream: u.id }, u.healthy ? 1 : 0);
  const d = f.discovery;
  if (d !== null) {
    const counter = (name: string, help: string, value: number): void => {
      new Counter({ name, help, registers: [r] }).inc(counts.value(name, value));
    };
    counter('ollana_discovery_datagrams_sent_total', 'Discovery datagrams sent', d.sent);
    counter('ollana_discovery_datagrams_received_total', 'Discovery datagrams received', d.received);
    counter('ollana_discovery_send_errors_total', 'Discovery datagrams that could not be sent', d.sendErrors);
    const dropped = new Counter({
      name: 'ollana_discovery_datagrams_dropped_total',
      help: 'Discovery datagrams dropped, by cause (docs/lan.md)',
      labelNames: ['cause'],
      registers: [r],
    });
    for (const [cause, n] of Object.entries(d.dropped)) dropped.inc({ cause }, counts.value(`dropped:${cause}`, n));
    gauge(r, 'ollana_discovery_peers', 'Peers discovery knows now', d.peers);
  }
  queueMetrics?.(r);
  return (await r.getMetricsAsJSON()) as unknown as MetricsJson;
}
