/**
 * Adds up the metrics of a node's proxy workers at scrape time (prom-client's
 * AggregatorRegistry.aggregate, which sums counters and histograms by name and labels), together with
 * the supervisor's own (node-metrics.ts).
 *
 * A counter must not go backwards when a worker thread dies: each worker's last reported values are
 * kept by slot, and when a new thread reports for a slot, the old thread's last values move into
 * `retired`, a running sum of every thread that ended. A worker that is dead and not yet replaced
 * keeps counting with its last values. What a thread counted after its last report is lost with it
 * (the node asks every worker before it drains them for a role switch, so only crashes lose any).
 */
import { mainThreadParts } from './prom.ts';
import type { MessageOf } from '../protocol/messages.ts';
import { MonotonicCounts, nodeMetrics, type NodeFacts } from './node-metrics.ts';

/** One metric as prom-client's getMetricsAsJSON() gives it (and AggregatorRegistry.aggregate takes it). */
export interface MetricJson {
  readonly name: string;
  readonly help: string;
  readonly type: string;
  readonly aggregator: string;
  readonly values: { labels: Record<string, string | number>; value: number; metricName?: string }[];
}
export type MetricsJson = MetricJson[];

type Aggregate = ReturnType<typeof mainThreadParts>['AggregatorRegistry']['aggregate'];
/** prom-client types the JSON more narrowly (an enum for the type); the data is the same. */
function aggregate(all: MetricsJson[]): ReturnType<Aggregate> {
  return mainThreadParts().AggregatorRegistry.aggregate(all as unknown as Parameters<Aggregate>[0]);
}

/** One worker's report: its slot, the thread that filled it, and its metrics. */
export interface WorkerMetricsReport {
  readonly worker: number;
  readonly thread: number;
  readonly metrics: MetricsJson;
}

/** Where the workers' reports come from (ProxyPool.metrics). */
export interface MetricsSource {
  metrics(): Promise<WorkerMetricsReport[]>;
}

/** The supervisor's answer to a worker's metrics.request: the text, or why there is none. */
export function metricsReply(id: number, text: string | null, error: string | null): MessageOf<'metrics.reply'> {
  return { type: 'metrics.reply', id, text, error: error === null ? null : { code: 'OLN_INTERNAL', message: error } };
}

export class MetricsHub {
  readonly #live = new Map<number, WorkerMetricsReport>();
  #retired: MetricsJson | null = null;
  readonly #counts = new MonotonicCounts();

  /** Asks every live worker of `source` for its metrics and keeps them. */
  async refresh(source: MetricsSource | null): Promise<void> {
    if (source === null) return;
    for (const report of await source.metrics()) await this.#keep(report);
  }

  async #keep(report: WorkerMetricsReport): Promise<void> {
    const before = this.#live.get(report.worker);
    if (before !== undefined && before.thread !== report.thread) {
      this.#retired =
        this.#retired === null
          ? before.metrics
          : ((await aggregate([this.#retired, before.metrics]).getMetricsAsJSON()) as unknown as MetricsJson);
    }
    this.#live.set(report.worker, report);
  }

  /** The node's metrics in the Prometheus text format: every worker's summed, plus the node's own. */
  async render(facts: NodeFacts): Promise<string> {
    const node = await nodeMetrics(facts, this.#counts);
    const all: MetricsJson[] = [...[...this.#live.values()].map((r) => r.metrics), node];
    if (this.#retired !== null) all.push(this.#retired);
    return aggregate(all).metrics();
  }
}
