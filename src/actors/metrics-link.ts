/**
 * The supervisor's side of the node's metrics (GET /ollana/v1/metrics): asks the proxy workers and
 * discovery for theirs at scrape time and adds the node's own (metrics/hub.ts). A role switch
 * replaces the pool: its workers' counts and restarts are kept first (retire).
 */
import { MetricsHub } from '../metrics/hub.ts';
import type { NodeFacts } from '../metrics/node-metrics.ts';
import type { DiscoveryLink } from './discovery-link.ts';
import type { PoolHandle } from './thread-factory.ts';

/** What the supervisor knows of itself at scrape time. */
export type SupervisorFacts = Pick<NodeFacts, 'version' | 'role' | 'ollamaUp' | 'upstreams'>;

export class MetricsLink {
  readonly #hub = new MetricsHub();
  /** worker restarts of the pools before this one */
  #restartsBefore = 0;

  /** A pool about to be replaced: its workers' last counts and its restarts stay in the node's. */
  async retire(pool: PoolHandle | null): Promise<void> {
    await this.#hub.refresh(pool);
    this.#restartsBefore += pool?.restarts ?? 0;
  }

  /** All workers' metrics added up, with the node's own, in the Prometheus text format. */
  async render(pool: PoolHandle | null, discovery: DiscoveryLink | null, facts: SupervisorFacts): Promise<string> {
    const [stats] = await Promise.all([discovery?.stats() ?? Promise.resolve(null), this.#hub.refresh(pool)]);
    return this.#hub.render({
      ...facts,
      inFlight: pool?.inFlight() ?? 0,
      openConnections: pool?.openConnections() ?? 0,
      workerRestarts: this.#restartsBefore + (pool?.restarts ?? 0),
      discovery: stats,
    });
  }
}
