/**
 * Ollama's model scheduler as pure logic over an injected clock (what ollama server/sched.go and
 * the slot semaphore in llm/llama_server.go do, without GPUs or memory estimates):
 *
 * - A request for a model that is loaded takes a reference on its runner at once, never queued
 *   (getRunner's fast path), even while that runner has been picked for eviction.
 * - Any other request enters one FIFO pending queue of at most maxQueue entries beyond the one being
 *   worked on; past that it is refused ("server busy", a 503). The queue is worked one request at a
 *   time: a load, or the wait for an eviction, blocks every request behind it, whatever its model.
 * - At most maxLoadedModels runners are resident. To make room, Ollama sorts runners by keep_alive
 *   (shortest first, "forever" last), then by model file path (here the digest), takes the first
 *   idle one, and when none is idle the first one anyway: that runner's keep_alive becomes 0 and
 *   the queue waits until its in-flight requests are done and it has unloaded (any unload wakes it).
 * - Each runner has numParallel slots (embedding models 1); a request with a reference waits for a
 *   slot in FIFO order, without bound.
 * - keep_alive: a request that carries one sets the runner's; the timer starts when the last
 *   reference goes; 0 unloads at that moment; "forever" is Go's maximum duration.
 *
 * A client that leaves while pending or waiting for a slot leaves at once and never gets a slot
 * (Ollama skips it only when it reaches the head). A load whose requester leaves is cancelled, as
 * Ollama cancels llama.Load with the request's context; the next request for that model loads again.
 */
import { type Clock, type TimerHandle, unrefTimer } from '../../src/clock.ts';
import type { ModelEntry } from './models.ts';
import { SlotLine, type SlotTicket } from './slots.ts';

/** Node's setTimeout fires at once beyond 2^31-1 ms, so longer waits are chained. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/** Runs `fn` after `ms` on `clock` (unref'd); the returned function cancels it. */
function later(clock: Clock, fn: () => void, ms: number): () => void {
  let handle: TimerHandle;
  const arm = (left: number): void => {
    handle = clock.setTimeout(
      () => (left > MAX_TIMER_MS ? arm(left - MAX_TIMER_MS) : fn()),
      Math.min(left, MAX_TIMER_MS),
    );
    unrefTimer(handle);
  };
  arm(Math.max(0, ms));
  return () => clock.clearTimeout(handle);
}

/** Go's time.Duration(math.MaxInt64) in ms: what a negative keep_alive means (~292 years). */
export const FOREVER_MS = 9_223_372_036_854.775;
/** OLLAMA_KEEP_ALIVE's default. */
export const DEFAULT_KEEP_ALIVE_MS = 5 * 60_000;
export const MAX_QUEUE_MESSAGE = 'server busy, please try again.  maximum pending requests exceeded';

export interface SchedConfig {
  /** Slots per loaded runner (OLLAMA_NUM_PARALLEL), embedding models 1; 0: no limit for any model. */
  numParallel: number;
  /** Resident runners at most (OLLAMA_MAX_LOADED_MODELS; Ollama's default is 3 per GPU). */
  maxLoadedModels: number;
  /** Pending requests (those that need a load) beyond the one being worked on (OLLAMA_MAX_QUEUE). */
  maxQueue: number;
  /** Time a load takes, in ms. */
  loadMs: number;
  /** keep_alive of a load whose request gave none (OLLAMA_KEEP_ALIVE), ms; negative: forever. */
  keepAliveMs: number;
}

export class SchedError extends Error {
  readonly code: 'busy' | 'aborted';
  constructor(code: 'busy' | 'aborted', message: string) {
    super(message);
    this.code = code;
    this.name = code === 'aborted' ? 'AbortError' : 'SchedError';
  }
}

/** One request's hold on a runner. */
export interface Lease {
  /** Waits, FIFO, for one of the runner's slots; rejects with an AbortError when the request's signal aborts. */
  slot(): Promise<void>;
  /** Ends the request: frees its slot, drops its reference (which may start keep_alive). Idempotent. */
  release(): void;
}

export interface Resident {
  entry: ModelEntry;
  expiresAt: Date;
}

export interface ModelCounters {
  loaded: boolean;
  /** Slots of the runner (or that a load would give it); 0: no limit. */
  slots: number;
  /** Requests holding a slot. */
  inFlight: number;
  /** Requests waiting: for a slot, or in the pending queue for a load. */
  queued: number;
  loads: number;
  unloads: number;
}

export interface SchedCounters {
  models: Record<string, ModelCounters>;
  totals: { loads: number; evictions: number; rejected: number; aborted_queued: number; pending: number };
}

interface Runner {
  entry: ModelEntry;
  slots: SlotLine;
  refs: number;
  sessionMs: number;
  /** Unset until the runner first goes idle (Ollama's zero time); ps then estimates it. */
  expiresAt: number | undefined;
  cancelExpiry: (() => void) | undefined;
  /** Picked by the eviction: its unload counts as one. */
  evicting: boolean;
}

interface Pending {
  entry: ModelEntry;
  keepAliveMs: number | undefined;
  loadMs: number;
  grant: (runner: Runner) => void;
}

/** The request being worked on at the head of the pending queue: its load, or an eviction for it. */
type Head = { req: Pending; kind: 'load'; cancel: () => void } | { req: Pending; kind: 'evict' };

const sessionOf = (keepAliveMs: number): number => (keepAliveMs < 0 ? FOREVER_MS : keepAliveMs);

export class Scheduler {
  readonly #config: () => SchedConfig;
  readonly #clock: Clock;
  /** Resident runners by digest (Ollama keys them by model file), in load order. */
  readonly #loaded = new Map<string, Runner>();
  readonly #pending: Pending[] = [];
  #head: Head | undefined;
  #pumping = false;
  readonly #stats = new Map<string, { entry: ModelEntry; loads: number; unloads: number }>();
  readonly #totals = { loads: 0, evictions: 0, rejected: 0, aborted_queued: 0 };

  constructor(config: () => SchedConfig, clock: Clock) {
    this.#config = config;
    this.#clock = clock;
  }

  /**
   * Gets the model's runner for one request: at once when it is loaded, else through the pending
   * queue (rejects with SchedError 'busy' when that is full, 'aborted' when `signal` aborts first).
   * `keepAliveMs` undefined: the request gave none. The lease releases itself if `signal` aborts.
   */
  acquire(
    entry: ModelEntry,
    opts: { keepAliveMs: number | undefined; loadMs?: number | undefined; signal: AbortSignal },
  ): Promise<Lease> {
    const { signal } = opts;
    if (signal.aborted) return Promise.reject(abortError());
    this.#statsFor(entry);
    return new Promise<Lease>((resolve, reject) => {
      const grant = (runner: Runner): void => {
        signal.removeEventListener('abort', onAbort);
        resolve(this.#lease(runner, signal));
      };
      const req: Pending = {
        entry,
        keepAliveMs: opts.keepAliveMs,
        loadMs: opts.loadMs ?? this.#config().loadMs,
        grant,
      };
      const onAbort = (): void => {
        this.#leavePending(req);
        this.#totals.aborted_queued++;
        reject(abortError());
      };
      const runner = this.#loaded.get(entry.digest);
      if (runner) return this.#attach(runner, req);
      if (this.#head !== undefined && this.#pending.length - 1 >= this.#config().maxQueue) {
        this.#totals.rejected++;
        reject(new SchedError('busy', MAX_QUEUE_MESSAGE));
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      this.#pending.push(req);
      this.#pump();
    });
  }

  /** What an empty request with keep_alive 0 does: unload now, or once its requests are done. */
  expire(entry: ModelEntry): void {
    const r = this.#loaded.get(entry.digest);
    if (!r) return;
    r.expiresAt = this.#clock.now();
    this.#stopExpiry(r);
    r.sessionMs = 0;
    if (r.refs === 0) this.#unload(r);
  }

  /** Resident models for /api/ps: longest remaining first (compared in whole seconds, stable). */
  running(): Resident[] {
    const now = this.#clock.now();
    return [...this.#loaded.values()]
      .map((r) => ({ entry: r.entry, expiresAt: new Date(r.expiresAt ?? now + r.sessionMs) }))
      .sort((a, b) => Math.floor(b.expiresAt.getTime() / 1000) - Math.floor(a.expiresAt.getTime() / 1000));
  }

  counters(): SchedCounters {
    const models: Record<string, ModelCounters> = {};
    for (const s of this.#stats.values()) {
      const r = this.#loaded.get(s.entry.digest);
      models[s.entry.name] = {
        loaded: r !== undefined,
        slots: r ? (Number.isFinite(r.slots.limit) ? r.slots.limit : 0) : this.#slotsFor(s.entry),
        inFlight: r?.slots.active ?? 0,
        queued: r?.slots.waiting ?? 0,
        loads: s.loads,
        unloads: s.unloads,
      };
    }
    for (const p of this.#pending) models[p.entry.name]!.queued++;
    return { models, totals: { ...this.#totals, pending: this.#pending.length } };
  }

  /** Stops every timer (keep_alive, loads); used when the emulator closes. */
  close(): void {
    if (this.#head?.kind === 'load') this.#head.cancel();
    for (const r of this.#loaded.values()) this.#stopExpiry(r);
  }

  #statsFor(entry: ModelEntry): { loads: number; unloads: number } {
    let s = this.#stats.get(entry.name);
    if (!s) {
      s = { entry, loads: 0, unloads: 0 };
      this.#stats.set(entry.name, s);
    }
    return s;
  }

  /** Slots a load gives: numParallel, but 1 for an embedding model; 0 (no limit) for every model. */
  #slotsFor(entry: ModelEntry): number {
    const n = Math.max(0, Math.floor(this.#config().numParallel));
    return n > 0 && isEmbedding(entry) ? 1 : n;
  }

  /** Works the pending queue from its head until it is empty or blocked on a load or an eviction. */
  #pump(): void {
    // An unload inside the loop calls back here; the outer loop carries on from the new state.
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      this.#work();
    } finally {
      this.#pumping = false;
    }
  }

  #work(): void {
    while (this.#head === undefined && this.#pending.length > 0) {
      const req = this.#pending[0]!;
      const runner = this.#loaded.get(req.entry.digest);
      if (runner) {
        this.#pending.shift();
        this.#attach(runner, req);
        continue;
      }
      const cfg = this.#config();
      if (this.#loaded.size >= Math.max(1, cfg.maxLoadedModels)) {
        const victim = this.#runnerToUnload();
        victim.evicting = true;
        victim.sessionMs = 0;
        this.#stopExpiry(victim);
        if (victim.refs === 0) {
          this.#unload(victim);
          continue;
        }
        this.#head = { req, kind: 'evict' };
        return;
      }
      if (req.loadMs <= 0) {
        this.#pending.shift();
        this.#finishLoad(req);
        continue;
      }
      const cancel = later(
        this.#clock,
        () => {
          if (this.#head?.req !== req) return;
          this.#head = undefined;
          this.#pending.shift();
          this.#finishLoad(req);
          this.#pump();
        },
        req.loadMs,
      );
      this.#head = { req, kind: 'load', cancel };
      return;
    }
  }

  #finishLoad(req: Pending): void {
    const slots = this.#slotsFor(req.entry);
    const runner: Runner = {
      entry: req.entry,
      slots: new SlotLine(slots > 0 ? slots : Number.POSITIVE_INFINITY),
      refs: 0,
      sessionMs: sessionOf(req.keepAliveMs ?? this.#config().keepAliveMs),
      expiresAt: undefined,
      cancelExpiry: undefined,
      evicting: false,
    };
    this.#loaded.set(req.entry.digest, runner);
    this.#statsFor(req.entry).loads++;
    this.#totals.loads++;
    this.#attach(runner, req);
  }

  /** findRunnerToUnload: by keep_alive, then model path; the first idle one, else the first one. */
  #runnerToUnload(): Runner {
    const list = [...this.#loaded.values()].sort((a, b) =>
      a.sessionMs !== b.sessionMs ? a.sessionMs - b.sessionMs : a.entry.digest < b.entry.digest ? -1 : 1,
    );
    return list.find((r) => r.refs === 0) ?? list[0]!;
  }

  #attach(runner: Runner, req: Pending): void {
    runner.refs++;
    this.#stopExpiry(runner);
    if (req.keepAliveMs !== undefined) runner.sessionMs = sessionOf(req.keepAliveMs);
    req.grant(runner);
  }

  #leavePending(req: Pending): void {
    const i = this.#pending.indexOf(req);
    if (i < 0) return;
    this.#pending.splice(i, 1);
    if (this.#head?.req === req) {
      if (this.#head.kind === 'load') this.#head.cancel();
      this.#head = undefined;
      this.#pump();
    }
  }

  #lease(runner: Runner, signal: AbortSignal): Lease {
    let released = false;
    let ticket: SlotTicket | undefined;
    const release = (): void => {
      if (released) return;
      released = true;
      signal.removeEventListener('abort', release);
      // A client that leaves while waiting for a slot leaves the line at once.
      if (ticket?.cancel(abortError()) && signal.aborted) this.#totals.aborted_queued++;
      this.#drop(runner);
    };
    signal.addEventListener('abort', release, { once: true });
    return {
      release,
      slot: () => {
        if (released || ticket) return Promise.reject(abortError());
        ticket = runner.slots.take();
        return ticket.ready;
      },
    };
  }

  /** The last reference gone: unload at once with keep_alive 0, else start the keep_alive timer. */
  #drop(runner: Runner): void {
    runner.refs--;
    if (runner.refs > 0 || this.#loaded.get(runner.entry.digest) !== runner) return;
    if (runner.sessionMs <= 0) {
      this.#unload(runner);
      return;
    }
    runner.expiresAt = this.#clock.now() + runner.sessionMs;
    this.#stopExpiry(runner);
    if (runner.sessionMs >= FOREVER_MS) return;
    runner.cancelExpiry = later(
      this.#clock,
      () => {
        runner.cancelExpiry = undefined;
        if (runner.refs === 0) this.#unload(runner);
      },
      runner.sessionMs,
    );
  }

  #stopExpiry(runner: Runner): void {
    runner.cancelExpiry?.();
    runner.cancelExpiry = undefined;
  }

  #unload(runner: Runner): void {
    if (this.#loaded.get(runner.entry.digest) !== runner) return;
    this.#stopExpiry(runner);
    this.#loaded.delete(runner.entry.digest);
    this.#statsFor(runner.entry).unloads++;
    if (runner.evicting) this.#totals.evictions++;
    // An eviction in progress waits for any unload, then looks again (Ollama's unloadedCh).
    if (this.#head?.kind === 'evict') this.#head = undefined;
    this.#pump();
  }
}

function isEmbedding(entry: ModelEntry): boolean {
  return !entry.capabilities.includes('completion');
}

function abortError(): SchedError {
  return new SchedError('aborted', 'request canceled');
}
