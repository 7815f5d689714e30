/**
 * A proxy worker's server, put together: the listener and its trust gate (listen/listener.ts), the
 * fast front that relays a server node's requests to its local Ollama itself (fast/), the node:http
 * path for everything else (handler.ts, own-endpoints.ts), and the connections to the upstreams
 * (route/upstreams.ts). It follows the route table and the allow list, and drains on stop.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.ts';
import type { RouteTable, WorkerStats } from '../protocol/messages.ts';
import { ConnectionGuard } from './listen/connection-guard.ts';
import { MAX_HEADER_BYTES } from './listen/guard-settings.ts';
import type { NodeStatus } from '../protocol/status.ts';
import { StatsCollector } from './stats.ts';
import type { TlsServerSettings } from '../net/tls.ts';
import type { Admission } from './listen/trust-gate.ts';
import type { TrustSettings } from '../protocol/messages.ts';
import type { RelayOptions } from './relay/relay-contract.ts';
import { FastFront } from './fast/front.ts';
import { Listener } from './listen/listener.ts';
import { NodeHandler, SMALL_BODY } from './handler.ts';
import { Upstreams } from './route/upstreams.ts';
import { SchedGate } from '../sched/gate.ts';
import type { SchedSettings } from '../sched/owner.ts';
import type { MessageOf } from '../protocol/messages.ts';

export interface ProxySettings {
  readonly worker: number;
  readonly host: string;
  readonly port: number;
  readonly origins: readonly string[];
  readonly connectTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  readonly upstreamConnections: number;
  /** Client node: in-flight requests on a server before a model's next request spills (route/placement.ts). */
  readonly spillAfter?: number;
  readonly upstreamKeepAliveMs: number;
  /** Client side: time to send request headers, idle time between requests, open connections per node (connection-guard.ts). */
  readonly requestHeadersTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly requestBodyTimeoutMs: number;
  readonly maxConnections: number;
  /** Shared by the workers: their open connections, against maxConnections (connection-cap.ts). */
  readonly connectionBoard?: Int32Array;
  /** Enables POST /ollana/v1/debug/crash, which kills this worker thread (tests of supervision). */
  readonly debugHooks: boolean;
  /**
   * This node's certificate: the listener speaks TLS and admits only allowed devices (a server node),
   * and server nodes are reached over pinned TLS (a client node). null: plain HTTP listener
   * (a client node's loopback port, or --insecure-http on a loopback address).
   */
  readonly tls: TlsServerSettings | null;
  /** Whether the listener itself speaks TLS (the server node's LAN port). */
  readonly listenTls: boolean;
  /** Whether the listening socket takes SO_REUSEPORT (true when left out; false where the OS has none: platform/workers.ts). */
  readonly reusePort?: boolean;
  readonly trust: TrustSettings;
  /** Shared with the supervisor: slot `worker` holds this worker's in-flight requests (see StatsCollector). */
  readonly loadBoard?: Int32Array;
  /** A server node's fair-share scheduler: its settings, and its board shared by every worker (sched/). */
  readonly sched?: SchedSettings | null;
  readonly schedBoard?: Int32Array;
}

/** What the server needs from its thread: status comes from the supervisor, which sees all workers. */
export interface ProxyHost {
  status(): Promise<NodeStatus>;
  /** The node's metrics in the Prometheus text format (the supervisor adds up all workers'). */
  metrics(): Promise<string>;
  crash(): void;
  /** A device was refused after the handshake (the supervisor logs it and lists it as pending). */
  refused(a: Admission, addr: string): void;
  /** A server node answered that it does not allow this device. */
  refusedBy(server: string): void;
  /** A message to the scheduler's owner (sched/owner.ts). */
  sched?(msg: MessageOf<'sched.wait'> | MessageOf<'sched.cancel'> | MessageOf<'sched.kick'>): void;
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

export class ProxyServer {
  readonly stats: StatsCollector;
  readonly #listener: Listener;
  readonly #guard: ConnectionGuard;
  /** The first reader of every connection: relays the local Ollama's requests itself (fast/front.ts). */
  readonly #front: FastFront;
  /** How the front relays now: to this server node's one local Ollama, else null (all to node:http). */
  #fastTarget: RelayOptions | null = null;
  readonly #handler: NodeHandler;
  readonly #upstreams: Upstreams;
  /** Admission of inference requests on a server node (sched/gate.ts); null on a client node. */
  readonly sched: SchedGate | null;
  #draining = false;
  #drained: (() => void) | null = null;

  constructor(settings: ProxySettings, log: Logger, host: ProxyHost) {
    this.stats = new StatsCollector(settings.worker, settings.loadBoard ?? null);
    const hostCheck = isLoopbackHost(settings.host);
    this.#guard = new ConnectionGuard(settings, log, settings.worker);
    this.#upstreams = new Upstreams(
      settings,
      log,
      () => this.#draining,
      (server) => host.refusedBy(server),
    );
    this.#handler = new NodeHandler(settings, log, host, this.stats, this.#guard, this.#upstreams, hostCheck, () =>
      this.#afterRequest(),
    );
    const board = settings.schedBoard;
    this.sched =
      board === undefined || !settings.sched
        ? null
        : new SchedGate(board, settings.worker, settings.tls?.id ?? '', (msg) => host.sched?.(msg));
    this.#handler.admission = this.sched;
    this.#front = new FastFront(
      {
        maxHeaderBytes: MAX_HEADER_BYTES,
        smallBody: SMALL_BODY,
        headersTimeoutMs: settings.requestHeadersTimeoutMs,
        keepAliveTimeoutMs: settings.keepAliveTimeoutMs,
        requestBodyTimeoutMs: settings.requestBodyTimeoutMs,
        hostCheck,
      },
      this.#guard,
      this.stats,
      () => this.#fastTarget,
      () => this.#draining,
    );
    this.#guard.evictAlso(() => {
      this.#front.closeIdle();
      this.#front.closeStalled(this.#guard.stalledBodyEvictMs);
    });
    const handler = this.#handler;
    this.#listener = new Listener(
      settings,
      log,
      host,
      this.stats,
      this.#guard,
      this.#front,
      (req: IncomingMessage, res: ServerResponse): void => handler.handle(req, res),
    );
  }

  /** Applies a new allow list at once: connections of devices no longer allowed are cut. */
  setTrust(trust: TrustSettings): void {
    this.#listener.setTrust(trust);
  }

  async listen(): Promise<void> {
    await this.#listener.listen();
  }

  setRoutes(table: RouteTable): void {
    this.#handler.table = table;
    this.#upstreams.setRoutes(table);
    const only = table.upstreams.length === 1 ? table.upstreams[0]! : null;
    this.#fastTarget =
      table.role === 'server' && only !== null && only.device === '' && only.url.startsWith('http://')
        ? this.#handler.relayOptions(only, null)
        : null;
  }

  snapshot(): WorkerStats {
    return this.stats.snapshot();
  }

  #afterRequest(): void {
    if (this.#draining && this.stats.inFlight === 0) this.#drained?.();
  }

  /**
   * Stops accepting, lets in-flight requests finish until the deadline, then cuts what remains.
   * Resolves with the number of requests that had to be cut.
   */
  async drain(deadlineMs: number): Promise<number> {
    this.#draining = true;
    this.#handler.draining = true;
    this.#listener.stopAccepting();
    this.#front.closeIdle();
    if (this.stats.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadlineMs);
        this.#drained = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    const cut = this.stats.inFlight;
    this.#listener.closeAll();
    this.#front.closeAll();
    this.#front.stop();
    this.#guard.close();
    await this.#upstreams.close();
    return cut;
  }
}
