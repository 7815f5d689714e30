/**
 * The proxy workers: a piscina pool whose every task is one worker's whole life (listen on the shared
 * port, serve, drain). A task that rejects means its thread died: the slot is restarted with backoff,
 * and given up on when it keeps failing at start-up (restart-policy.ts).
 */
import { EventEmitter } from 'node:events';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import { systemClock, unrefTimer, type Clock } from '../clock.ts';
import { OllanaError, errorFromData, errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import { ownModule } from '../module-file.ts';
import { decoderFor } from '../protocol/codec.ts';
import {
  PROXY_TO_SUPERVISOR,
  type ProxyToSupervisor,
  type RouteTable,
  type SupervisorToProxy,
  type TrustSettings,
} from '../protocol/messages.ts';
import type { ProxyPoolEvents } from '../protocol/events.ts';
import type { NodeStatus, WorkerReport } from '../protocol/status.ts';
import type { ProxyTask, ProxyTaskResult, ProxyWorkerData } from '../protocol/workers.ts';
import { clearSlot, connectionBoard, openConnections } from '../proxy/listen/connection-cap.ts';
import { outOfFiles, outOfFilesAdvice } from '../net/open-files.ts';
import { RestartPolicy } from './restart-policy.ts';
import { metricsReply, type WorkerMetricsReport } from '../metrics/hub.ts';
import { schedOwnerFor, type SchedOwner } from '../sched/owner.ts';
import type { SchedStatus } from '../protocol/status.ts';
import { Endpoint } from './runtime.ts';
import { WorkerQueries } from './worker-queries.ts';

const WORKER_FILE = ownModule('../workers/proxy.worker.ts', import.meta.url);

/**
 * What the pool needs of piscina: run a task (a worker's whole life) on a thread of its own, say when
 * a thread cannot be made, and end. Unit tests pass a fake that plays the workers in-process.
 */
export interface ProxyThreads {
  run(task: ProxyTask, options: { transferList: MessagePort[]; signal: AbortSignal }): Promise<unknown>;
  on(event: 'error', listener: (err: Error) => void): unknown;
  destroy(): Promise<void>;
}

export interface ProxyPoolDeps {
  /** time for restart backoff and deadlines; real time by default */
  readonly clock?: Clock;
  /** the threads the workers run on; a piscina pool of proxy.worker.ts by default */
  readonly threads?: (size: number, workerData: ProxyWorkerData) => ProxyThreads;
}

/** The proxy workers' threads: `size` of them, each running one task for as long as it lives. */
export function piscinaThreads(size: number, workerData: ProxyWorkerData): ProxyThreads {
  return new Piscina({
    filename: WORKER_FILE,
    minThreads: size,
    maxThreads: size,
    concurrentTasksPerWorker: 1,
    idleTimeout: Number.POSITIVE_INFINITY,
    // Our tasks live as long as the worker; atomics would park idle threads, which an event-loop
    // server must never be.
    atomics: 'disabled',
    workerData,
  });
}

interface Slot {
  readonly index: number;
  endpoint: Endpoint<ProxyToSupervisor, SupervisorToProxy> | null;
  ready: boolean;
  /** when to restart its thread, and when to give up */
  readonly policy: RestartPolicy;
  done: Promise<void>;
  onReady: (() => void) | null;
  /** Takes the task back while its thread starts (piscina run's signal). */
  abort: AbortController | null;
  /** Its thread could not start for lack of file descriptors (logged once); retried, never given up on. */
  starved: boolean;
  /** requests its worker cut at the drain deadline when it stopped */
  cut: number;
  /** the thread id its worker reported when ready (tells a restarted worker's metrics from the old one's) */
  thread: number;
}

export type { WorkerReport };

/**
 * Emits 'status-request' (reply: (status) => void) when a worker needs /ollana/v1/status, 'fatal'
 * (OllanaError) when a slot gives up, 'worker-ready' (index), 'refused' (a trust.refused message: this
 * server node turned a device away) and 'refused-by' (server id: a server node turned this one away).
 */
export class ProxyPool extends EventEmitter<ProxyPoolEvents> {
  readonly #log: Logger;
  readonly #size: number;
  readonly #clock: Clock;
  readonly #pool: ProxyThreads;
  readonly #slots: Slot[] = [];
  /** stats and metrics asked of the workers */
  readonly #queries: WorkerQueries;
  /** Each worker's in-flight requests, written by the workers (StatsCollector), read by inFlight(). */
  readonly #loadBoard: Int32Array;
  /** Each worker's open connections, counted against the node-wide --max-connections by the workers. */
  readonly #connectionBoard: Int32Array;
  #table: RouteTable;
  /** the newest allow list, when it changed since the workers' start data */
  #trust: TrustSettings | null = null;
  /** A server node's fair-share scheduler: the model queues (sched/owner.ts); null on a client node. */
  readonly #sched: SchedOwner | null;
  #stopping = false;
  #restarts = 0;
  #cut = 0;

  constructor(size: number, workerData: ProxyWorkerData, table: RouteTable, log: Logger, deps: ProxyPoolDeps = {}) {
    super();
    this.#log = log;
    this.#clock = deps.clock ?? systemClock;
    this.#queries = new WorkerQueries(this.#clock);
    this.#size = size;
    this.#table = table;
    this.#loadBoard = new Int32Array(new SharedArrayBuffer(size * Int32Array.BYTES_PER_ELEMENT));
    this.#connectionBoard = connectionBoard(size);
    this.#sched = schedOwnerFor(workerData.proxy, size, this.#clock, log, (w, m) => this.#slots[w]?.endpoint?.send(m));
    this.#pool = (deps.threads ?? piscinaThreads)(size, workerData);
    this.#pool.on('error', (err: Error) => {
      if (outOfFiles(err)) this.#takeBackStarts(err);
      else this.#log.error({ err }, 'worker pool error');
    });
  }

  /** In-flight requests that stop() cut at its deadline. */
  get cut(): number {
    return this.#cut;
  }

  get restarts(): number {
    return this.#restarts;
  }

  get size(): number {
    return this.#size;
  }

  /** Starts every worker; resolves when all listen, rejects (after stopping the rest) if one cannot. */
  async start(): Promise<void> {
    const readies: Promise<void>[] = [];
    for (let i = 0; i < this.#size; i++) readies.push(this.#spawn(i));
    try {
      await Promise.all(readies);
    } catch (err) {
      await this.stop(0);
      throw err;
    }
  }

  setTrust(trust: TrustSettings): void {
    this.#sched?.setWeights(trust.weights ?? {});
    this.#trust = trust;
    for (const slot of this.#slots) if (slot.ready) slot.endpoint?.send({ type: 'trust.update', trust });
  }

  setRoutes(table: RouteTable): void {
    this.#table = table;
    for (const slot of this.#slots) if (slot.ready) slot.endpoint?.send({ type: 'routes.update', table });
  }

  #spawn(index: number): Promise<void> {
    let slot = this.#slots[index];
    if (slot === undefined) {
      slot = {
        index,
        endpoint: null,
        ready: false,
        policy: new RestartPolicy(this.#clock),
        done: Promise.resolve(),
        onReady: null,
        abort: null,
        starved: false,
        cut: 0,
        thread: 0,
      };
      this.#slots[index] = slot;
    }
    const s = slot;
    s.ready = false;
    s.policy.started();
    const { port1, port2 } = new MessageChannel();
    s.endpoint = new Endpoint<ProxyToSupervisor, SupervisorToProxy>(
      port1,
      decoderFor(PROXY_TO_SUPERVISOR),
      (msg) => this.#onMessage(s, msg),
      (err) => this.#log.error({ err, worker: index }, 'bad message from a proxy worker dropped'),
    );

    return new Promise<void>((resolve, reject) => {
      s.onReady = resolve;
      const task: ProxyTask = {
        worker: index,
        port: port2,
        routes: this.#table,
        loadBoard: this.#loadBoard,
        connectionBoard: this.#connectionBoard,
        ...(this.#sched === null ? {} : { schedBoard: this.#sched.board }),
      };
      const abort = new AbortController();
      s.abort = abort;
      s.done = (this.#pool.run(task, { transferList: [port2], signal: abort.signal }) as Promise<ProxyTaskResult>).then(
        (result) => {
          s.cut = result.cut;
          this.#ended(s, port1);
        },
        (err: unknown) => {
          this.#ended(s, port1);
          const error =
            errorFromData(err) ??
            (outOfFiles(err)
              ? new OllanaError('OLN_WORKER_FAILED', `proxy worker ${index} cannot start: ${outOfFilesAdvice()}`, {
                  cause: err,
                })
              : new OllanaError('OLN_WORKER_FAILED', `proxy worker ${index} died: ${errorMessage(err)}`, {
                  cause: err,
                }));
          if (s.onReady !== null) {
            // Died before this start reported ready: the caller decides (fail start-up, or back off).
            s.onReady = null;
            reject(error);
            return;
          }
          this.#onDied(s, error);
        },
      );
    });
  }

  /** A worker's thread ended (its task returned or failed): its requests and connections went with it. */
  #ended(slot: Slot, port: MessagePort): void {
    slot.ready = false;
    port.close();
    Atomics.store(this.#loadBoard, slot.index, 0);
    clearSlot(this.#connectionBoard, slot.index);
    this.#sched?.workerGone(slot.index);
  }

  #onDied(slot: Slot, error: OllanaError): void {
    if (this.#stopping) return;
    const decision = slot.policy.died();
    if (!decision.restart) {
      this.#log.error(
        { err: error, worker: slot.index },
        `proxy worker ${slot.index} keeps failing at start-up; giving up`,
      );
      this.emit('fatal', error);
      return;
    }
    const delay = decision.delayMs;
    this.#log.error(
      { err: error, worker: slot.index, restartInMs: delay },
      `proxy worker ${slot.index} died (${error.message}); its in-flight requests are lost, restarting it in ${delay} ms`,
    );
    this.#respawnIn(slot, delay);
  }

  #respawnIn(slot: Slot, delay: number): void {
    unrefTimer(
      this.#clock.setTimeout(() => {
        if (this.#stopping) return;
        this.#restarts += 1;
        this.#spawn(slot.index).then(
          () => {
            this.#log.info(
              { worker: slot.index },
              `proxy worker ${slot.index} restarted${slot.starved ? ': file descriptors are available again' : ''}`,
            );
            slot.starved = false;
          },
          (err: unknown) => {
            const e =
              err instanceof OllanaError
                ? err
                : new OllanaError('OLN_WORKER_FAILED', errorMessage(err), { cause: err });
            if (outOfFiles(e)) this.#starved(slot, e);
            else this.#onDied(slot, e);
          },
        );
      }, delay),
    );
  }

  /** The machine's state, not a fault of the thread: tried again at the slowest pace until it starts. */
  #starved(slot: Slot, error: OllanaError): void {
    if (!slot.starved) {
      slot.starved = true;
      this.#log.error(
        { err: error, worker: slot.index, code: 'EMFILE' },
        `proxy worker ${slot.index} cannot restart: ${outOfFilesAdvice()}; trying again every ${slot.policy.starvedDelayMs / 1000} s`,
      );
    }
    this.#respawnIn(slot, slot.policy.starvedDelayMs);
  }

  /**
   * A thread piscina started for a slot could not start for lack of file descriptors. piscina then
   * keeps the slot's task queued and, as it does for threads failing at start-up, starts no other
   * thread for it: take the task back, so that the slot is tried again later (#starved).
   */
  #takeBackStarts(err: Error): void {
    for (const slot of this.#slots) if (slot.onReady !== null) slot.abort?.abort(err);
  }

  #onMessage(slot: Slot, msg: ProxyToSupervisor): void {
    if (this.#queries.settle(msg)) return;
    switch (msg.type) {
      case 'proxy.ready':
        slot.ready = true;
        slot.thread = msg.threadId;
        // Routes may have changed while this worker started.
        slot.endpoint?.send({ type: 'routes.update', table: this.#table });
        if (this.#trust !== null) slot.endpoint?.send({ type: 'trust.update', trust: this.#trust });
        slot.onReady?.();
        slot.onReady = null;
        this.emit('worker-ready', slot.index);
        break;
      case 'stats.report':
      case 'metrics.report':
        break; // answers: taken by #queries above
      case 'metrics.request':
        this.emit('metrics-request', (text, error) => slot.endpoint?.send(metricsReply(msg.id, text, error)));
        break;
      case 'status.request':
        this.emit('status-request', (status: NodeStatus | null, error: string | null) => {
          slot.endpoint?.send({
            type: 'status.reply',
            id: msg.id,
            status,
            error: error === null ? null : { code: 'OLN_INTERNAL', message: error },
          });
        });
        break;
      case 'trust.refused':
        this.emit('refused', msg);
        break;
      case 'trust.refused-by':
        this.emit('refused-by', msg.server);
        break;
      case 'sched.wait':
      case 'sched.cancel':
      case 'sched.kick':
        this.#sched?.receive(slot.index, msg);
        break;
      default: {
        const never: never = msg;
        this.#log.error({ msg: never }, 'unhandled worker message');
      }
    }
  }

  /** Requests in flight across the workers now, read from shared memory: no message, no wait. */
  inFlight(): number {
    let n = 0;
    for (let i = 0; i < this.#size; i++) n += Atomics.load(this.#loadBoard, i);
    return n;
  }

  /** The scheduler's queues and slots now (a server node), or null. */
  sched = (): SchedStatus | null => this.#sched?.snapshot() ?? null;

  /** Client connections open across the workers now (shared memory, like inFlight). */
  openConnections(): number {
    return openConnections(this.#connectionBoard);
  }

  /** Fresh stats from every live worker (one that does not answer in time is listed as not ready). */
  stats(): Promise<WorkerReport[]> {
    return this.#queries.stats(this.#slots);
  }

  /** Each live worker's metrics (one that does not answer in time is left out: its last ones stay, hub.ts). */
  metrics(): Promise<WorkerMetricsReport[]> {
    return this.#queries.metrics(this.#slots);
  }

  /**
   * Drains every worker (in-flight requests get `deadlineMs`), then ends the pool. Resolves with the
   * number of requests cut at the deadline: those the workers report, plus those of a worker that did
   * not finish its drain in time (its thread is ended with them).
   */
  async stop(deadlineMs: number): Promise<number> {
    if (this.#stopping) return this.#cut;
    this.#stopping = true;
    const draining = this.#slots.filter((slot) => slot.ready);
    for (const slot of draining) slot.endpoint?.send({ type: 'proxy.drain', deadlineMs });
    const all = Promise.allSettled(this.#slots.map((s) => s.done));
    await Promise.race([
      all,
      new Promise<void>((resolve) => unrefTimer(this.#clock.setTimeout(resolve, deadlineMs + 3_000))),
    ]);
    this.#cut = draining.reduce(
      (n, s) => n + (s.ready ? Math.max(1, Atomics.load(this.#loadBoard, s.index)) : s.cut),
      0,
    );
    this.#queries.close();
    this.#sched?.stop();
    await this.#pool.destroy();
    return this.#cut;
  }
}
