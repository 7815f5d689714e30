/**
 * The supervisor (main thread): decides the node's role, claims the port, runs the proxy workers in a
 * piscina pool, pushes them the route table, gathers their stats for /ollana/v1/status, replaces a
 * worker that dies (with backoff, and without looping on one that dies at start-up), and drains them
 * all on stop.
 */
import { EventEmitter } from 'node:events';
import { MessageChannel } from 'node:worker_threads';
import { fileURLToPath } from 'node:url';
import { Piscina } from 'piscina';
import { CLIENT_LISTEN, SERVER_LISTEN, type ServeConfig } from '../config/defaults.ts';
import { parseOllamaHost, type OllamaTarget } from '../config/ollama-host.ts';
import { parseListen } from '../config/schema.ts';
import { OllanaError, errorMessage, type ErrorData, type OllanaErrorCode } from '../errors.ts';
import type { Logger, LogSettings } from '../log.ts';
import { claimPort, probeOllama } from '../net/probe.ts';
import type { ProxyToSupervisor, RouteTable, SupervisorToProxy, WorkerStats } from '../protocol/messages.ts';
import type { ProxyTask, ProxyTaskResult, ProxyWorkerData } from '../workers/proxy.worker.ts';
import { Endpoint, PendingReplies } from './runtime.ts';

const WORKER_FILE = fileURLToPath(new URL('../workers/proxy.worker.ts', import.meta.url));
const HEALTH_INTERVAL_MS = 2_000;
const STATS_DEADLINE_MS = 1_000;
const MAX_BACKOFF_MS = 5_000;
/** A worker that stays up this long has recovered: its next crash starts the backoff afresh. */
const STABLE_AFTER_MS = 10_000;
/** Consecutive failures before the first 'ready' after which a slot gives up instead of looping. */
const MAX_BOOT_FAILURES = 5;

export type Role = 'server' | 'client';

export interface SupervisorOptions {
  readonly config: ServeConfig;
  readonly log: Logger;
  readonly logSettings: LogSettings;
  readonly version: string;
  /** Enables the worker crash hook used by supervision tests (OLLANA_DEBUG_HOOKS=1). */
  readonly debugHooks: boolean;
}

export interface Started {
  readonly role: Role;
  readonly host: string;
  readonly port: number;
  readonly url: string;
}

interface Slot {
  readonly index: number;
  endpoint: Endpoint<ProxyToSupervisor, SupervisorToProxy> | null;
  ready: boolean;
  everReady: boolean;
  bootFailures: number;
  restarts: number;
  startedAt: number;
  done: Promise<void>;
  onReady: (() => void) | null;
}

function isErrorData(v: unknown): v is ErrorData {
  return typeof v === 'object' && v !== null && 'code' in v && 'message' in v && !(v instanceof Error);
}

export class Supervisor extends EventEmitter {
  readonly #opts: SupervisorOptions;
  readonly #log: Logger;
  readonly #target: OllamaTarget;
  readonly #stats = new PendingReplies<WorkerStats>();
  readonly #slots: Slot[] = [];
  readonly #startedAt = Date.now();
  #pool: Piscina | null = null;
  #role: Role = 'client';
  #listen = { host: '', port: 0 };
  #table: RouteTable = { version: 0, role: 'client', upstreams: [] };
  #ollama: { healthy: boolean; version: string | null; checkedAt: number } = { healthy: false, version: null, checkedAt: 0 };
  #healthTimer: NodeJS.Timeout | null = null;
  #stopping = false;
  #totalRestarts = 0;

  constructor(opts: SupervisorOptions) {
    super();
    this.#opts = opts;
    this.#log = opts.log.child({ actor: 'supervisor' });
    this.#target = parseOllamaHost(opts.config.ollamaUrl, '--ollama-url / OLLAMA_HOST');
  }

  get role(): Role {
    return this.#role;
  }

  async start(): Promise<Started> {
    const { config } = this.#opts;
    const probe = await probeOllama(this.#target, config.probeTimeoutMs);
    if (config.mode === 'auto') {
      this.#role = probe.ok ? 'server' : 'client';
      if (probe.ok) this.#log.info({ ollama: this.#target.origin, ollamaVersion: probe.version },
        `Ollama ${probe.version} answers at ${this.#target.origin}: this machine is a server node`);
      else this.#log.info({ ollama: this.#target.origin, reason: probe.reason },
        `no Ollama answers at ${this.#target.origin} (${probe.reason}): this machine is a client node`);
    } else {
      this.#role = config.mode;
      if (config.mode === 'server' && !probe.ok) {
        this.#log.warn({ ollama: this.#target.origin, reason: probe.reason },
          `server mode forced, but no Ollama answers at ${this.#target.origin} yet (${probe.reason}); requests get 502 until it does`);
      }
    }
    this.#ollama = { healthy: probe.ok, version: probe.ok ? probe.version : null, checkedAt: Date.now() };

    const listenText = config.listen ?? (this.#role === 'server' ? SERVER_LISTEN : CLIENT_LISTEN);
    const listen = parseListen(listenText);
    if (listen === null) throw new OllanaError('OLN_BAD_FLAG', `--listen "${listenText}" must be host:port`);
    try {
      listen.port = await claimPort(listen.host, listen.port, '--listen');
    } catch (err) {
      if (this.#role === 'client' && err instanceof OllanaError && err.code === 'OLN_PORT_IN_USE') {
        const there = await probeOllama({ origin: `http://${listen.host.includes(':') ? `[${listen.host}]` : listen.host}:${listen.port}`, basePath: '' }, config.probeTimeoutMs);
        if (there.ok) {
          throw new OllanaError('OLN_OLLAMA_ON_PORT',
            `an Ollama already listens on ${listen.host}:${listen.port}, so this machine should share it, not borrow one: ` +
            'run `ollana serve` (auto mode makes it a server node), or give the client node another --listen address');
        }
      }
      throw err;
    }
    this.#listen = listen;
    this.#table = this.#initialTable();

    const workerData: ProxyWorkerData = {
      log: this.#opts.logSettings,
      proxy: {
        host: listen.host,
        port: listen.port,
        origins: config.origins,
        connectTimeoutMs: config.connectTimeoutMs,
        headersTimeoutMs: config.headersTimeoutMs,
        bodyTimeoutMs: config.bodyTimeoutMs,
        upstreamConnections: config.upstreamConnections,
        upstreamKeepAliveMs: config.upstreamKeepAliveMs,
        debugHooks: this.#opts.debugHooks,
      },
    };
    this.#pool = new Piscina({
      filename: WORKER_FILE,
      name: 'default',
      minThreads: config.workers,
      maxThreads: config.workers,
      concurrentTasksPerWorker: 1,
      idleTimeout: Number.POSITIVE_INFINITY,
      // Our tasks live as long as the worker; atomics would park idle threads, which an event-loop
      // server must never be.
      atomics: 'disabled',
      workerData,
    });
    this.#pool.on('error', (err: Error) => this.#log.error({ err }, 'worker pool error'));

    const readies: Promise<void>[] = [];
    for (let i = 0; i < config.workers; i++) readies.push(this.#spawn(i));
    try {
      await Promise.all(readies);
    } catch (err) {
      await this.stop('start-up failed');
      throw err;
    }

    if (this.#role === 'server') this.#watchOllama();
    const hostText = listen.host.includes(':') ? `[${listen.host}]` : listen.host;
    const url = `http://${hostText}:${listen.port}`;
    this.#log.info({ role: this.#role, url, host: listen.host, port: listen.port, workers: config.workers },
      `ollana ${this.#role} node listening on ${url} with ${config.workers} proxy worker${config.workers === 1 ? '' : 's'}`);
    return { role: this.#role, host: listen.host, port: listen.port, url };
  }

  #initialTable(): RouteTable {
    if (this.#role === 'client') return { version: 1, role: 'client', upstreams: [] };
    return {
      version: 1,
      role: 'server',
      upstreams: [{ id: 'local', url: this.#target.origin, basePath: this.#target.basePath, healthy: this.#ollama.healthy, models: [] }],
    };
  }

  /** Starts slot `index`'s task; resolves when its worker first reports ready, rejects if it cannot. */
  #spawn(index: number, existing?: Slot): Promise<void> {
    const slot: Slot = existing ?? {
      index, endpoint: null, ready: false, everReady: false, bootFailures: 0, restarts: 0, startedAt: 0,
      done: Promise.resolve(), onReady: null,
    };
    if (!existing) this.#slots[index] = slot;
    slot.ready = false;
    slot.startedAt = Date.now();

    const { port1, port2 } = new MessageChannel();
    slot.endpoint = new Endpoint<ProxyToSupervisor, SupervisorToProxy>(port1, ['proxy.ready', 'stats.report', 'status.request'],
      (msg) => this.#onWorkerMessage(slot, msg),
      (err) => this.#log.error({ err, worker: index }, 'bad message from a proxy worker dropped'));

    const ready = new Promise<void>((resolve, reject) => {
      slot.onReady = resolve;
      const task: ProxyTask = { worker: index, port: port2, routes: this.#table };
      slot.done = (this.#pool!.run(task, { transferList: [port2] }) as Promise<ProxyTaskResult>).then(
        () => { slot.ready = false; port1.close(); },
        (err: unknown) => {
          slot.ready = false;
          port1.close();
          const error = isErrorData(err)
            ? OllanaError.fromData({ ...err, code: err.code as OllanaErrorCode })
            : new OllanaError('OLN_WORKER_FAILED', `proxy worker ${index} died: ${errorMessage(err)}`, { cause: err });
          if (slot.onReady !== null) {
            // Died before this start reported ready: the caller decides (fail start-up, or back off).
            slot.onReady = null;
            reject(error);
            return;
          }
          this.#onWorkerDied(slot, error);
        });
    });
    return ready;
  }

  #onWorkerDied(slot: Slot, error: OllanaError): void {
    if (this.#stopping) return;
    const upFor = Date.now() - slot.startedAt;
    if (upFor >= STABLE_AFTER_MS) slot.bootFailures = 0;
    slot.bootFailures += 1;
    const delay = Math.min(MAX_BACKOFF_MS, 100 * 2 ** (slot.bootFailures - 1));
    this.#log.error({ err: error, worker: slot.index, restartInMs: delay },
      `proxy worker ${slot.index} died (${error.message}); its in-flight requests are lost, restarting it in ${delay} ms`);
    const timer = setTimeout(() => {
      if (this.#stopping) return;
      slot.restarts += 1;
      this.#totalRestarts += 1;
      this.#spawn(slot.index, slot).then(
        () => this.#log.info({ worker: slot.index }, `proxy worker ${slot.index} restarted`),
        (err: unknown) => {
          if (slot.bootFailures >= MAX_BOOT_FAILURES) {
            this.#log.error({ err, worker: slot.index }, `proxy worker ${slot.index} keeps failing at start-up; giving up`);
            this.emit('fatal', err instanceof OllanaError ? err : new OllanaError('OLN_WORKER_FAILED', errorMessage(err)));
          } else {
            this.#onWorkerDied(slot, err instanceof OllanaError ? err : new OllanaError('OLN_WORKER_FAILED', errorMessage(err)));
          }
        });
    }, delay);
    timer.unref();
  }

  #onWorkerMessage(slot: Slot, msg: ProxyToSupervisor): void {
    switch (msg.type) {
      case 'proxy.ready':
        slot.ready = true;
        slot.everReady = true;
        // Routes may have changed while this worker started.
        slot.endpoint?.send({ type: 'routes.update', table: this.#table });
        slot.onReady?.();
        slot.onReady = null;
        this.emit('worker-ready', slot.index);
        break;
      case 'stats.report':
        this.#stats.settle(msg.id, msg.stats);
        break;
      case 'status.request':
        this.status().then(
          (status) => slot.endpoint?.send({ type: 'status.reply', id: msg.id, status, error: null }),
          (err: unknown) => slot.endpoint?.send({ type: 'status.reply', id: msg.id, status: null,
            error: { code: 'OLN_INTERNAL', message: errorMessage(err) } }));
        break;
      default: {
        const never: never = msg;
        this.#log.error({ msg: never }, 'unhandled worker message');
      }
    }
  }

  #broadcast(msg: SupervisorToProxy): void {
    for (const slot of this.#slots) if (slot.ready) slot.endpoint?.send(msg);
  }

  #setTable(table: RouteTable): void {
    this.#table = table;
    this.#broadcast({ type: 'routes.update', table });
  }

  #watchOllama(): void {
    const check = async (): Promise<void> => {
      const probe = await probeOllama(this.#target, this.#opts.config.probeTimeoutMs);
      if (this.#stopping) return;
      const was = this.#ollama.healthy;
      this.#ollama = { healthy: probe.ok, version: probe.ok ? probe.version : this.#ollama.version, checkedAt: Date.now() };
      if (was !== probe.ok) {
        if (probe.ok) this.#log.info({ ollama: this.#target.origin }, `local Ollama at ${this.#target.origin} answers again`);
        else this.#log.warn({ ollama: this.#target.origin, reason: probe.reason }, `local Ollama at ${this.#target.origin} stopped answering (${probe.reason})`);
        this.#setTable({
          ...this.#table,
          version: this.#table.version + 1,
          upstreams: this.#table.upstreams.map((u) => (u.id === 'local' ? { ...u, healthy: probe.ok } : u)),
        });
      }
    };
    const loop = (): void => {
      this.#healthTimer = setTimeout(() => { void check().finally(() => { if (!this.#stopping) loop(); }); }, HEALTH_INTERVAL_MS);
      this.#healthTimer.unref();
    };
    loop();
  }

  /** Fresh stats from every live worker (a worker that does not answer in time is listed as such). */
  async workerStats(): Promise<(WorkerStats | { worker: number; ready: false })[]> {
    return Promise.all(this.#slots.map(async (slot) => {
      if (!slot.ready || slot.endpoint === null) return { worker: slot.index, ready: false as const };
      const { id, reply } = this.#stats.open(STATS_DEADLINE_MS, `stats of proxy worker ${slot.index}`);
      slot.endpoint.send({ type: 'stats.request', id });
      try {
        return await reply;
      } catch {
        return { worker: slot.index, ready: false as const };
      }
    }));
  }

  async status(): Promise<Record<string, unknown>> {
    const workers = await this.workerStats();
    const live = workers.filter((w): w is WorkerStats => 'requests' in w);
    const sum = (f: (w: WorkerStats) => number): number => live.reduce((acc, w) => acc + f(w), 0);
    return {
      ollana: { version: this.#opts.version, pid: process.pid, uptimeS: Math.round((Date.now() - this.#startedAt) / 1000) },
      mode: this.#opts.config.mode,
      role: this.#role,
      listen: { host: this.#listen.host, port: this.#listen.port },
      ollama: this.#role === 'server'
        ? { url: this.#target.origin, healthy: this.#ollama.healthy, version: this.#ollama.version,
            checkedAt: new Date(this.#ollama.checkedAt).toISOString() }
        : null,
      upstreams: this.#table.upstreams,
      workers: {
        configured: this.#opts.config.workers,
        live: live.length,
        restarts: this.#totalRestarts,
        totals: {
          requests: sum((w) => w.requests), inFlight: sum((w) => w.inFlight), completed: sum((w) => w.completed),
          clientAborts: sum((w) => w.clientAborts), upstreamErrors: sum((w) => w.upstreamErrors),
          bytesIn: sum((w) => w.bytesIn), bytesOut: sum((w) => w.bytesOut),
        },
        list: workers,
      },
      memory: { rssBytes: process.memoryUsage.rss() },
    };
  }

  /** Drains every worker (in-flight requests get `drainTimeoutMs`), then ends the pool. */
  async stop(reason: string): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    if (this.#healthTimer !== null) clearTimeout(this.#healthTimer);
    const deadline = this.#opts.config.drainTimeoutMs;
    this.#log.info({ reason, drainTimeoutMs: deadline }, `stopping (${reason}); in-flight requests have ${deadline} ms to finish`);
    this.#broadcast({ type: 'proxy.drain', deadlineMs: deadline });
    const all = Promise.allSettled(this.#slots.map((s) => s.done));
    const grace = new Promise((resolve) => setTimeout(resolve, deadline + 3_000).unref());
    await Promise.race([all, grace]);
    this.#stats.rejectAll(new Error('stopping'));
    await this.#pool?.destroy();
    this.#log.info('stopped');
  }
}
