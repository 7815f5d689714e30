/**
 * How the supervisor starts its threads: the singleton actors (discovery, election) and the proxy
 * worker pool. The supervisor takes a ThreadFactory, so tests give it fakes and run it in-process,
 * without threads; `realThreads` is today's wiring (ActorThread, ProxyPool).
 */
import type { Logger } from '../log.ts';
import type { ActorThreadEvents, ProxyPoolEvents } from '../protocol/events.ts';
import type { Message, RouteTable, TrustSettings } from '../protocol/messages.ts';
import type { SchedStatus, WorkerReport } from '../protocol/status.ts';
import type { ProxyWorkerData } from '../protocol/workers.ts';
import { ActorThread, type ActorThreadOptions } from './actor-thread.ts';
import { ProxyPool } from './proxy-pool.ts';
import type { WorkerMetricsReport } from '../metrics/hub.ts';

/** What the supervisor uses of an actor thread. */
export interface ActorHandle<In extends Message, Out extends Message> {
  on<E extends keyof ActorThreadEvents<In>>(event: E, listener: (...args: ActorThreadEvents<In>[E]) => void): unknown;
  start(): void;
  send(msg: Out): void;
  /** Ends the thread; `graceMs` lets `farewell` (discovery's bye) finish first. */
  stop(graceMs?: number, farewell?: () => Promise<void>): Promise<void>;
}

/** What the supervisor uses of the proxy worker pool. */
export interface PoolHandle {
  on<E extends keyof ProxyPoolEvents>(event: E, listener: (...args: ProxyPoolEvents[E]) => void): unknown;
  /** Resolves when every worker listens. */
  start(): Promise<void>;
  setRoutes(table: RouteTable): void;
  setTrust(trust: TrustSettings): void;
  /** Requests in flight across the workers now. */
  inFlight(): number;
  openConnections(): number;
  stats(): Promise<WorkerReport[]>;
  /** Each live worker's metrics (metrics/hub.ts). */
  metrics(): Promise<WorkerMetricsReport[]>;
  /** A server node's fair-share scheduler now (sched/owner.ts); absent or null: none. */
  sched?(): SchedStatus | null;
  /** Drains the workers (in-flight requests get `deadlineMs`), then ends them; resolves with the requests cut. */
  stop(deadlineMs: number): Promise<number>;
  /** requests the last stop cut at its deadline */
  readonly cut: number;
  readonly restarts: number;
}

export interface ThreadFactory {
  actor<In extends Message, Out extends Message>(opts: ActorThreadOptions<In>): ActorHandle<In, Out>;
  pool(size: number, workerData: ProxyWorkerData, table: RouteTable, log: Logger): PoolHandle;
}

export const realThreads: ThreadFactory = {
  actor: <In extends Message, Out extends Message>(opts: ActorThreadOptions<In>) => new ActorThread<In, Out>(opts),
  pool: (size, workerData, table, log) => new ProxyPool(size, workerData, table, log),
};
