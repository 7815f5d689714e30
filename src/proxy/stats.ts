/**
 * Per-worker counters and latency histograms. Recording is a few integer additions and one HDR
 * histogram insert (node:perf_hooks), cheap enough for every request; summaries are made only
 * when the supervisor asks.
 */
import { createHistogram, type RecordableHistogram } from 'node:perf_hooks';
import { threadId } from 'node:worker_threads';
import { rssBytes } from '../net/open-files.ts';
import { tlsCounts } from '../net/tls.ts';
import type { LatencySummary, WorkerStats } from '../protocol/messages.ts';
import { WorkerMetrics } from '../metrics/worker-metrics.ts';

function summary(h: RecordableHistogram): LatencySummary {
  // Recorded in microseconds; reported in milliseconds.
  if (h.count === 0) return { count: 0, min: 0, max: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0 };
  const ms = (us: number): number => Math.round(us) / 1000;
  return {
    count: h.count,
    min: ms(h.min),
    max: ms(h.max),
    mean: ms(h.mean),
    p50: ms(h.percentile(50)),
    p90: ms(h.percentile(90)),
    p99: ms(h.percentile(99)),
    p999: ms(h.percentile(99.9)),
  };
}

export class StatsCollector {
  readonly worker: number;
  requests = 0;
  completed = 0;
  clientAborts = 0;
  /** Requests the fast front relayed itself; connections it gave to node:http. */
  fastRequests = 0;
  handedToNode = 0;
  upstreamErrors = 0;
  bytesIn = 0;
  bytesOut = 0;
  readonly #statuses = [0, 0, 0, 0, 0, 0];
  readonly #ttfb = createHistogram({ lowest: 1, highest: 3_600_000_000, figures: 3 });
  readonly #duration = createHistogram({ lowest: 1, highest: 3_600_000_000, figures: 3 });
  #inFlight = 0;
  readonly #board: Int32Array | null;
  /** The labelled request metrics served at /ollana/v1/metrics (metrics/). */
  readonly metrics: WorkerMetrics = new WorkerMetrics(this);

  /**
   * @param board memory shared with the supervisor, one slot per worker, where this worker keeps its
   *   in-flight count: the supervisor reads the node's load there every heartbeat without asking
   *   each worker for its stats (a round trip per worker per heartbeat costs an idle node most of its
   *   CPU).
   */
  constructor(worker: number, board: Int32Array | null = null) {
    this.worker = worker;
    this.#board = board;
    if (board !== null) Atomics.store(board, worker, 0);
  }

  get inFlight(): number {
    return this.#inFlight;
  }

  set inFlight(n: number) {
    this.#inFlight = n;
    if (this.#board !== null) Atomics.store(this.#board, this.worker, n);
  }

  status(code: number): void {
    const cls = Math.floor(code / 100);
    if (cls >= 1 && cls <= 5) this.#statuses[cls]! += 1;
  }

  /** @param ns nanoseconds since the request arrived */
  firstByte(ns: bigint): void {
    this.#ttfb.record(Math.max(1, Number(ns / 1000n)));
  }

  done(ns: bigint): void {
    this.#duration.record(Math.max(1, Number(ns / 1000n)));
  }

  snapshot(): WorkerStats {
    return {
      worker: this.worker,
      threadId,
      requests: this.requests,
      inFlight: this.inFlight,
      completed: this.completed,
      clientAborts: this.clientAborts,
      fastRequests: this.fastRequests,
      handedToNode: this.handedToNode,
      upstreamErrors: this.upstreamErrors,
      bytesIn: this.bytesIn,
      bytesOut: this.bytesOut,
      statuses: {
        '1xx': this.#statuses[1]!,
        '2xx': this.#statuses[2]!,
        '3xx': this.#statuses[3]!,
        '4xx': this.#statuses[4]!,
        '5xx': this.#statuses[5]!,
      },
      ttfbMs: summary(this.#ttfb),
      durationMs: summary(this.#duration),
      rssBytes: rssBytes(),
      tlsHandshakes: tlsCounts.handshakes,
      tlsResumed: tlsCounts.resumed,
    };
  }
}
