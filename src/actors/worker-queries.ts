/**
 * The proxy pool's questions to its workers, each with a deadline: their stats (GET /ollana/v1/status)
 * and their metrics (GET /ollana/v1/metrics). A worker that does not answer in time is reported as
 * not ready (stats) or left out (metrics); its answers are matched by id (PendingReplies).
 */
import type { Clock } from '../clock.ts';
import type { MetricsJson, WorkerMetricsReport } from '../metrics/hub.ts';
import type { ProxyToSupervisor, SupervisorToProxy, WorkerStats } from '../protocol/messages.ts';
import type { WorkerReport } from '../protocol/status.ts';
import { PendingReplies } from './runtime.ts';

const STATS_DEADLINE_MS = 1_000;

/** What a question needs of a pool slot. */
export interface QueriedSlot {
  readonly index: number;
  readonly ready: boolean;
  readonly endpoint: { send(msg: SupervisorToProxy): void } | null;
  /** the thread id its worker reported when ready */
  readonly thread: number;
}

export class WorkerQueries {
  readonly #stats: PendingReplies<WorkerStats>;
  readonly #metrics: PendingReplies<MetricsJson>;

  constructor(clock: Clock) {
    this.#stats = new PendingReplies<WorkerStats>(clock);
    this.#metrics = new PendingReplies<MetricsJson>(clock);
  }

  /** Takes a worker's answer (stats.report, metrics.report); false for any other message. */
  settle(msg: ProxyToSupervisor): boolean {
    if (msg.type === 'stats.report') this.#stats.settle(msg.id, msg.stats);
    else if (msg.type === 'metrics.report') this.#metrics.settle(msg.id, msg.metrics as unknown as MetricsJson);
    else return false;
    return true;
  }

  /** Fresh stats from every live worker (one that does not answer in time is listed as not ready). */
  stats(slots: readonly QueriedSlot[]): Promise<WorkerReport[]> {
    return Promise.all(
      slots.map(async (slot): Promise<WorkerReport> => {
        if (!slot.ready || slot.endpoint === null) return { worker: slot.index, ready: false };
        const { id, reply } = this.#stats.open(STATS_DEADLINE_MS, `stats of proxy worker ${slot.index}`);
        slot.endpoint.send({ type: 'stats.request', id });
        try {
          return await reply;
        } catch {
          return { worker: slot.index, ready: false };
        }
      }),
    );
  }

  /** Each live worker's metrics (one that does not answer in time is left out: its last ones stay, hub.ts). */
  async metrics(slots: readonly QueriedSlot[]): Promise<WorkerMetricsReport[]> {
    const reports = await Promise.all(
      slots.map(async (slot): Promise<WorkerMetricsReport | null> => {
        if (!slot.ready || slot.endpoint === null) return null;
        const { id, reply } = this.#metrics.open(STATS_DEADLINE_MS, `metrics of proxy worker ${slot.index}`);
        slot.endpoint.send({ type: 'metrics.collect', id });
        try {
          return { worker: slot.index, thread: slot.thread, metrics: await reply };
        } catch {
          return null;
        }
      }),
    );
    return reports.filter((r) => r !== null);
  }

  /** Fails the questions still waiting (the pool stops). */
  close(): void {
    this.#stats.rejectAll(new Error('stopping'));
    this.#metrics.rejectAll(new Error('stopping'));
  }
}
