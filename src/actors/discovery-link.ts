/**
 * The supervisor's side of the discovery thread: starts it with its worker data, waits until it
 * reports ready (or DISCOVERY_READY_MS: the node then serves without), keeps what it said when ready,
 * asks it for its counters (stats()), and hands every other message to the supervisor. A coded failure while it starts (the discovery
 * port taken) fails the start with that error; later ones are the supervisor's to escalate.
 */
import type { Clock } from '../clock.ts';
import type { ServeConfig } from '../config/defaults.ts';
import { OllanaError } from '../errors.ts';
import type { Identity } from '../identity/identity.ts';
import type { Logger, LogSettings } from '../log.ts';
import { ownModule } from '../module-file.ts';
import {
  DISCOVERY_TO_SUPERVISOR,
  type DiscoveryStats,
  type DiscoveryToSupervisor,
  type MessageOf,
  type SupervisorToDiscovery,
} from '../protocol/messages.ts';
import type { DiscoveryInfo } from './node-status.ts';
import { PendingReplies } from './runtime.ts';
import { unref } from './supervisor-deps.ts';
import type { ActorHandle, ThreadFactory } from './thread-factory.ts';
import { discoveryWorkerData } from './worker-data.ts';

const DISCOVERY_FILE = ownModule('../workers/discovery.worker.ts', import.meta.url);
/** How long start() waits for discovery to report ready before the node serves without. */
export const DISCOVERY_READY_MS = 5_000;

/** How long stats() waits for discovery's counters. */
const STATS_REPLY_MS = 1_000;

export type DiscoveryEvent = Exclude<
  DiscoveryToSupervisor,
  MessageOf<'discovery.ready'> | MessageOf<'discovery.stats.report'>
>;

export interface DiscoveryLinkOptions {
  readonly config: ServeConfig;
  readonly identity: Identity;
  readonly logSettings: LogSettings;
  readonly log: Logger;
  readonly threads: ThreadFactory;
  readonly clock: Clock;
  /** Sends each new thread its configuration, before anything else. */
  readonly onStart: () => void;
  readonly onMessage: (msg: DiscoveryEvent) => void;
  /** The thread failed for good after it was ready. */
  readonly onFatal: (err: OllanaError) => void;
}

export class DiscoveryLink {
  readonly #opts: DiscoveryLinkOptions;
  readonly #thread: ActorHandle<DiscoveryToSupervisor, SupervisorToDiscovery>;
  #info: DiscoveryInfo | null = null;
  readonly #stats = new PendingReplies<DiscoveryStats>();
  #ready: (() => void) | null = null;
  #failed: ((err: OllanaError) => void) | null = null;

  constructor(opts: DiscoveryLinkOptions) {
    this.#opts = opts;
    const { config, identity, logSettings, log } = opts;
    this.#thread = opts.threads.actor<DiscoveryToSupervisor, SupervisorToDiscovery>({
      name: 'discovery',
      file: DISCOVERY_FILE,
      workerData: discoveryWorkerData(config, identity, logSettings),
      accepts: DISCOVERY_TO_SUPERVISOR,
      log,
      onStart: opts.onStart,
    });
    this.#thread.on('message', (msg) => {
      if (msg.type === 'discovery.stats.report') {
        this.#stats.settle(msg.id, msg.stats);
        return;
      }
      if (msg.type !== 'discovery.ready') {
        opts.onMessage(msg);
        return;
      }
      this.#info = {
        port: msg.port,
        group: msg.group,
        multicast: msg.multicast,
        broadcast: msg.broadcast,
        interfaces: msg.interfaces,
      };
      log.info(
        { discovery: this.#info },
        `discovery on UDP ${msg.port} (${[msg.multicast ? `multicast ${msg.group}` : '', msg.broadcast ? 'broadcast' : ''].filter(Boolean).join(' + ')})`,
      );
      this.#ready?.();
    });
    this.#thread.on('fatal', (err: Error) => {
      const e = err instanceof OllanaError ? err : new OllanaError('OLN_WORKER_FAILED', err.message);
      if (this.#info === null && this.#failed !== null)
        this.#failed(e); // still starting: start() fails with it
      else opts.onFatal(e);
    });
  }

  /** What discovery said when it became ready, or null until then. */
  get info(): DiscoveryInfo | null {
    return this.#info;
  }

  /** Starts the thread; resolves once it is ready or DISCOVERY_READY_MS passed, rejects if it fails meanwhile. */
  async start(): Promise<void> {
    const readyP = new Promise<void>((resolve) => {
      this.#ready = resolve;
    });
    const failedP = new Promise<never>((_resolve, reject) => {
      this.#failed = reject;
    });
    this.#thread.start();
    try {
      await Promise.race([
        readyP,
        failedP,
        new Promise((r) => unref(this.#opts.clock.setTimeout(() => r(undefined), DISCOVERY_READY_MS))),
      ]);
    } finally {
      this.#failed = null;
    }
    if (this.#info === null)
      this.#opts.log.warn('discovery did not report ready within 5 s; the node serves, but may not find peers');
  }

  send(msg: SupervisorToDiscovery): void {
    this.#thread.send(msg);
  }

  /** Discovery's counters, or null if it does not answer within STATS_REPLY_MS. */
  async stats(): Promise<DiscoveryStats | null> {
    const { id, reply } = this.#stats.open(STATS_REPLY_MS, 'discovery stats');
    this.#thread.send({ type: 'discovery.stats.request', id });
    try {
      return await reply;
    } catch {
      return null;
    }
  }

  stop(graceMs?: number, farewell?: () => Promise<void>): Promise<void> {
    return this.#thread.stop(graceMs, farewell);
  }

  /** Fails the stats requests still waiting (the node stops). */
  closeRequests(): void {
    this.#stats.rejectAll(new Error('stopping'));
  }
}
