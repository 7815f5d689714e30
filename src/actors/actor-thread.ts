/**
 * A singleton actor (discovery, election) on its own worker thread. Messages go through an Endpoint
 * (msgpack, checked on arrival). A thread that dies is restarted with backoff; one that keeps dying
 * at start-up is given up on (restart-policy.ts), with an escalation the supervisor decides about.
 */
import { EventEmitter } from 'node:events';
import { Worker } from 'node:worker_threads';
import { systemClock, unrefTimer, type Clock } from '../clock.ts';
import { OllanaError, errorFromData } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ActorThreadEvents } from '../protocol/events.ts';
import type { Message } from '../protocol/messages.ts';
import { decoderFor } from '../protocol/codec.ts';
import { outOfFiles, outOfFilesAdvice } from '../net/open-files.ts';
import { RestartPolicy } from './restart-policy.ts';
import { Endpoint } from './runtime.ts';

export interface ActorThreadOptions<In extends Message> {
  readonly name: string;
  readonly file: string;
  readonly workerData: unknown;
  readonly accepts: readonly In['type'][];
  readonly log: Logger;
  /** Sent to every new thread before anything else (its configuration, the current state). */
  readonly onStart: () => void;
  /** time for the restart backoff (tests pass a fake one) */
  readonly clock?: Clock;
  /** makes the thread; a node:worker_threads Worker by default (tests pass a fake one) */
  readonly spawn?: (file: string, options: { workerData: unknown; name: string }) => ActorWorker;
}

/** What ActorThread uses of a node:worker_threads Worker. */
export interface ActorWorker {
  postMessage(value: unknown): void;
  on(event: 'message', listener: (value: unknown) => void): unknown;
  on(event: 'error', listener: (err: unknown) => void): unknown;
  once(event: 'exit', listener: (code: number) => void): unknown;
  terminate(): Promise<unknown>;
}

function spawnWorker(file: string, options: { workerData: unknown; name: string }): ActorWorker {
  return new Worker(file, options);
}

/** Emits 'message' (In), 'restarted', and 'fatal' (OllanaError) when it gives up or the thread reports a coded error. */
export class ActorThread<In extends Message, Out extends Message> extends EventEmitter<ActorThreadEvents<In>> {
  readonly #opts: ActorThreadOptions<In>;
  #worker: ActorWorker | null = null;
  #endpoint: Endpoint<In, Out> | null = null;
  readonly #clock: Clock;
  readonly #policy: RestartPolicy;
  #stopping = false;
  #restarts = 0;
  /**
   * The thread could not run for lack of file descriptors (logged once), and has not run since. That
   * is the machine's state, not the thread's fault: it is retried at the slowest pace, never given up on.
   */
  #starved = false;

  constructor(opts: ActorThreadOptions<In>) {
    super();
    this.#opts = opts;
    this.#clock = opts.clock ?? systemClock;
    this.#policy = new RestartPolicy(this.#clock);
  }

  get restarts(): number {
    return this.#restarts;
  }

  start(): void {
    this.#policy.started();
    let worker: ActorWorker;
    try {
      worker = (this.#opts.spawn ?? spawnWorker)(this.#opts.file, {
        workerData: this.#opts.workerData,
        name: this.#opts.name,
      });
    } catch (err) {
      if (!outOfFiles(err)) throw err;
      this.#noteStarved(err);
      this.#restartIn(this.#policy.starvedDelayMs);
      return;
    }
    this.#worker = worker;
    /** Whether this run failed for lack of file descriptors. */
    let starved = false;
    this.#endpoint = new Endpoint<In, Out>(
      worker,
      decoderFor(this.#opts.accepts),
      (msg) => {
        if (this.#starved) {
          this.#starved = false;
          this.#opts.log.info(
            { actor: this.#opts.name },
            `the ${this.#opts.name} actor runs again: file descriptors are available again`,
          );
        }
        this.emit('message', msg);
      },
      (err) =>
        this.#opts.log.error({ err, actor: this.#opts.name }, `bad message from the ${this.#opts.name} actor dropped`),
    );
    worker.on('error', (err: unknown) => {
      if (outOfFiles(err)) {
        starved = true;
        this.#noteStarved(err);
        return;
      }
      // A thread that failed on purpose with a coded error (discovery's port taken, say) will fail the
      // same way again: escalate at once with its message instead of restarting into the same wall.
      const coded = errorFromData(err);
      if (coded !== null) {
        this.#stopping = true;
        this.emit('fatal', coded);
        return;
      }
      this.#opts.log.error({ err, actor: this.#opts.name }, `${this.#opts.name} actor crashed`);
    });
    worker.once('exit', (code) => {
      if (this.#worker !== worker) return;
      this.#worker = null;
      this.#endpoint = null;
      if (this.#stopping) return;
      if (starved) {
        this.#restartIn(this.#policy.starvedDelayMs);
        return;
      }
      const decision = this.#policy.died();
      if (!decision.restart) {
        this.emit(
          'fatal',
          new OllanaError('OLN_WORKER_FAILED', `the ${this.#opts.name} actor keeps dying (exit ${code}); giving up`),
        );
        return;
      }
      const delay = decision.delayMs;
      this.#opts.log.error(
        { actor: this.#opts.name, code, restartInMs: delay },
        `${this.#opts.name} actor exited (${code}); restarting in ${delay} ms`,
      );
      this.#restartIn(delay);
    });
    this.#opts.onStart();
  }

  #noteStarved(err: unknown): void {
    if (this.#starved) return;
    this.#starved = true;
    this.#opts.log.error(
      { err, actor: this.#opts.name, code: 'EMFILE' },
      `the ${this.#opts.name} actor cannot start: ${outOfFilesAdvice()}; trying again every ${this.#policy.starvedDelayMs / 1000} s`,
    );
  }

  #restartIn(delay: number): void {
    unrefTimer(
      this.#clock.setTimeout(() => {
        if (this.#stopping) return;
        this.#restarts += 1;
        this.start();
        this.emit('restarted');
      }, delay),
    );
  }

  send(msg: Out): void {
    this.#endpoint?.send(msg);
  }

  /** Ends the thread; `graceMs` lets it finish a goodbye (discovery's bye) before termination. */
  async stop(graceMs = 0, farewell?: () => Promise<void>): Promise<void> {
    this.#stopping = true;
    const worker = this.#worker;
    if (worker === null) return;
    if (farewell !== undefined) {
      await Promise.race([farewell(), new Promise<void>((r) => unrefTimer(this.#clock.setTimeout(r, graceMs)))]);
    }
    await worker.terminate();
  }
}
