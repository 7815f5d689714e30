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
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { mainThreadParts } from './prom.ts';
import { MonotonicCounts, nodeMetrics, type NodeFacts } from './node-metrics.ts';

export type MetricsJson = MetricObjectWithValues<MetricValue<string>>[];

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
          : await mainThreadParts().AggregatorRegistry.aggregate([this.#retired, before.metrics]).getMetricsAsJSON();
    }
    this.#live.set(report.worker, report);
  }

  /** The node's metrics in the Prometheus text format: every worker's summed, plus the node's own. */
  async render(facts: NodeFacts): Promise<string> {
    const node = await nodeMetrics(facts, this.#counts);
    const all: MetricsJson[] = [...[...this.#live.values()].map((r) => r.metrics), node];
    if (this.#retired !== null) all.push(this.#retired);
    return mainThreadParts().AggregatorRegistry.aggregate(all).metrics();
  }
}
