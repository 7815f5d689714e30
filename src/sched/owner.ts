/**
 * The owner of the model queues, on the supervisor's thread: the one place where requests that found
 * their model full wait, per device, and get their slots in deficit-round-robin order (drr.ts) as
 * slots free. Proxy workers take free slots themselves from the shared board (board.ts) while nobody
 * waits; they send `sched.wait` only for a full model, `sched.kick` when they give back a slot that
 * someone waits for, `sched.cancel` when a waiting client leaves. A request that waits past
 * `maxWaitMs`, or beyond its device's `queueDepth`, is refused (503 with Retry-After, gate.ts).
 */
import { unrefTimer, type Clock, type TimerHandle } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { MessageOf, TrustSettings } from '../protocol/messages.ts';
import type { SchedStatus } from '../protocol/status.ts';
import {
  assign,
  createBoard,
  inFlightOf,
  leftQueue,
  reclaim,
  received,
  reserveSlot,
  slotsOf,
  type Board,
} from './board.ts';
import { DrrQueue, type Waiting } from './drr.ts';

export interface SchedSettings {
  /** slots per model at Ollama (its OLLAMA_NUM_PARALLEL) */
  readonly slots: number;
  /** longest a request waits for a slot before it gets 503 */
  readonly maxWaitMs: number;
  /** requests one device may have waiting per model; more get 503 at once */
  readonly queueDepth: number;
}

/** How often waiting requests are checked against their deadline. */
const SWEEP_MS = 250;
/** A device counts as throttled again only after this long without waiting (one log line, not per request). */
const QUIET_MS = 5_000;

interface Entry extends Waiting {
  readonly worker: number;
  readonly ticket: number;
  readonly index: number;
}

interface ModelQueue {
  readonly model: string;
  readonly queue: DrrQueue;
}

interface DeviceState {
  served: number;
  refused: number;
  waiting: number;
  throttled: boolean;
  /** when its last waiting request left the queue (for QUIET_MS) */
  idleSince: number;
}

type ToWorker = MessageOf<'sched.grant'> | MessageOf<'sched.refuse'>;
type FromWorker = MessageOf<'sched.wait'> | MessageOf<'sched.cancel'> | MessageOf<'sched.kick'>;

/** The owner for a pool of `workers` proxy workers, with the weights they start with; null on a client node. */
export function schedOwnerFor(
  proxy: { readonly sched?: SchedSettings | null; readonly trust: TrustSettings } | undefined,
  workers: number,
  clock: Clock,
  log: Logger,
  send: (worker: number, msg: ToWorker) => void,
): SchedOwner | null {
  if (!proxy?.sched) return null;
  const owner = new SchedOwner(createBoard(workers, proxy.sched.slots), proxy.sched, clock, log, send);
  owner.setWeights(proxy.trust.weights ?? {});
  return owner;
}

export class SchedOwner {
  readonly board: Board;
  readonly #s: SchedSettings;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #send: (worker: number, msg: ToWorker) => void;
  readonly #models = new Map<number, ModelQueue>();
  readonly #entries = new Map<string, Entry>();
  readonly #devices = new Map<string, DeviceState>();
  #weights: Readonly<Record<string, number>> = {};
  #sweep: TimerHandle | null = null;

  constructor(
    board: Board,
    settings: SchedSettings,
    clock: Clock,
    log: Logger,
    send: (worker: number, msg: ToWorker) => void,
  ) {
    this.board = board;
    this.#s = settings;
    this.#clock = clock;
    this.#log = log;
    this.#send = send;
  }

  setWeights(weights: Readonly<Record<string, number>>): void {
    this.#weights = weights;
  }

  /** A message from proxy worker `worker`. */
  receive(worker: number, msg: FromWorker): void {
    if (msg.type === 'sched.wait') this.wait(worker, msg);
    else if (msg.type === 'sched.cancel') this.cancel(worker, msg.ticket);
    else this.kick(msg.index);
  }

  wait(worker: number, msg: MessageOf<'sched.wait'>): void {
    received(this.board, msg.index, worker);
    let m = this.#models.get(msg.index);
    if (m === undefined) {
      m = { model: msg.model, queue: new DrrQueue(this.#s.queueDepth, (d) => this.#weights[d] ?? 1) };
      this.#models.set(msg.index, m);
    }
    const now = this.#clock.now();
    const entry: Entry = {
      key: `${worker}:${msg.ticket}`,
      device: msg.device,
      since: now,
      deadline: now + this.#s.maxWaitMs,
      worker,
      ticket: msg.ticket,
      index: msg.index,
    };
    const device = this.#device(msg.device);
    if (m.queue.enqueue(entry) === 'full') {
      leftQueue(this.board, msg.index);
      device.refused += 1;
      this.#send(worker, {
        type: 'sched.refuse',
        ticket: msg.ticket,
        code: 'OLN_QUEUE_FULL',
        retryAfterS: this.#retryAfter(),
      });
      return;
    }
    this.#entries.set(entry.key, entry);
    device.waiting += 1;
    if (!device.throttled) {
      device.throttled = true;
      this.#log.info(
        { device: msg.device, model: m.model },
        `device ${msg.device} is throttled: its requests for ${m.model} wait for a free slot (fair share with the other devices)`,
      );
    }
    this.#pump(msg.index);
    this.#startSweep();
  }

  cancel(worker: number, ticket: number): void {
    const entry = this.#entries.get(`${worker}:${ticket}`);
    if (entry === undefined) return;
    const m = this.#models.get(entry.index)!;
    if (m.queue.remove(entry.key, entry.device)) this.#left(entry);
  }

  /** A slot of model `index` came free while requests waited. */
  kick(index: number): void {
    this.#pump(index);
  }

  /** A worker's thread ended: its waiting requests are gone, its slots are free. */
  workerGone(worker: number): void {
    for (const m of this.#models.values()) {
      for (const w of m.queue.removeWhere((x) => (x as Entry).worker === worker)) this.#left(w as Entry);
    }
    reclaim(this.board, worker);
    for (const index of this.#models.keys()) this.#pump(index);
  }

  snapshot(): SchedStatus {
    const now = this.#clock.now();
    const models: SchedStatus['models'][number][] = [];
    for (const [index, m] of this.#models) {
      const oldest = m.queue.oldest();
      models.push({
        model: m.model,
        slots: slotsOf(this.board, index),
        inFlight: inFlightOf(this.board, index),
        queued: m.queue.waitingByDevice(),
        longestWaitMs: oldest === null ? 0 : now - oldest,
      });
    }
    const devices: SchedStatus['devices'][number][] = [];
    for (const [id, d] of this.#devices) {
      devices.push({
        device: id,
        weight: this.#weights[id] ?? 1,
        servedAfterWait: d.served,
        waiting: d.waiting,
        refused: d.refused,
        throttled: d.throttled,
      });
    }
    return { slots: this.#s.slots, maxWaitMs: this.#s.maxWaitMs, queueDepth: this.#s.queueDepth, models, devices };
  }

  stop(): void {
    if (this.#sweep !== null) this.#clock.clearInterval(this.#sweep);
    this.#sweep = null;
  }

  /** Grants free slots of model `index` to its waiting requests, in DRR order. */
  #pump(index: number): void {
    const m = this.#models.get(index);
    if (m === undefined) return;
    while (m.queue.size > 0 && reserveSlot(this.board, index)) {
      const entry = m.queue.next() as Entry;
      assign(this.board, index, entry.worker);
      this.#left(entry);
      this.#device(entry.device).served += 1;
      this.#send(entry.worker, { type: 'sched.grant', ticket: entry.ticket, index });
    }
  }

  /** A request is no longer waiting (granted, refused, cancelled, its worker gone). */
  #left(entry: Entry): void {
    this.#entries.delete(entry.key);
    leftQueue(this.board, entry.index);
    const d = this.#device(entry.device);
    d.waiting -= 1;
    if (d.waiting === 0) d.idleSince = this.#clock.now();
  }

  #startSweep(): void {
    if (this.#sweep !== null) return;
    this.#sweep = this.#clock.setInterval(() => this.#tick(), SWEEP_MS);
    unrefTimer(this.#sweep);
  }

  #tick(): void {
    const now = this.#clock.now();
    for (const m of this.#models.values()) {
      for (const w of m.queue.removeWhere((x) => x.deadline <= now)) {
        const entry = w as Entry;
        this.#left(entry);
        this.#device(entry.device).refused += 1;
        this.#send(entry.worker, {
          type: 'sched.refuse',
          ticket: entry.ticket,
          code: 'OLN_QUEUE_TIMEOUT',
          retryAfterS: this.#retryAfter(),
        });
      }
    }
    let quiet = this.#entries.size === 0;
    for (const [id, d] of this.#devices) {
      if (!d.throttled || d.waiting > 0) continue;
      if (now - d.idleSince >= QUIET_MS) {
        d.throttled = false;
        this.#log.info({ device: id }, `device ${id} is no longer throttled: nothing of it waits for a slot`);
      } else {
        quiet = false;
      }
    }
    if (quiet) this.stop();
  }

  /** Seconds a refused client should wait: about the longest wait a queued request has now, at least 1. */
  #retryAfter(): number {
    let oldest: number | null = null;
    for (const m of this.#models.values()) {
      const o = m.queue.oldest();
      if (o !== null && (oldest === null || o < oldest)) oldest = o;
    }
    const waited = oldest === null ? 0 : this.#clock.now() - oldest;
    return Math.max(1, Math.ceil(Math.min(waited, this.#s.maxWaitMs) / 1000));
  }

  #device(id: string): DeviceState {
    let d = this.#devices.get(id);
    if (d === undefined) {
      if (this.#devices.size >= 4096) this.#forgetIdle();
      d = { served: 0, refused: 0, waiting: 0, throttled: false, idleSince: 0 };
      this.#devices.set(id, d);
    }
    return d;
  }

  /** Bounds the per-device counters: devices with nothing waiting are forgotten. */
  #forgetIdle(): void {
    for (const [id, d] of this.#devices) if (d.waiting === 0 && !d.throttled) this.#devices.delete(id);
  }
}
