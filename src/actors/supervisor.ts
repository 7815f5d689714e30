/**
 * The supervisor (main thread): decides the node's role, claims the port, and runs the actors — the
 * proxy worker pool, discovery and election — wiring their messages together: discovery's peers go
 * to the election and (on a client node) into the cluster view, whose route table goes to the proxy
 * workers; the local Ollama's health decides whether a server node announces itself.
 *
 * Its parts: listen-claim.ts (the exclusive bind, its diagnosis, the listening line), role-decision.ts
 * (the starting role), ollama-watch.ts (the local Ollama's health), peer-book.ts (peers and trust
 * notices), route-table.ts (the table for the proxy workers), periodic.ts (its timed tasks),
 * node-status.ts (the status), metrics-link.ts (the metrics). Its threads, probes and clock are
 * injected (SupervisorDeps), so unit tests run it in-process.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import type { Clock } from '../clock.ts';
import type { ServeConfig } from '../config/defaults.ts';
import { parseOllamaHost, type OllamaTarget } from '../config/ollama-host.ts';
import { errorMessage } from '../errors.ts';
import type { Identity } from '../identity/identity.ts';
import { newBootId } from '../identity/boot-id.ts';
import type { Logger, LogSettings } from '../log.ts';
import { FdWatch, rssBytes } from '../net/open-files.ts';
import type { SupervisorEvents } from '../protocol/events.ts';
import type { NodeRole } from '../protocol/lan.ts';
import type { ElectionView, RouteTable, SelfInfo } from '../protocol/messages.ts';
import type { NodeStatus, WorkerReport } from '../protocol/status.ts';
import { startElection, type ElectionLink } from './election-link.ts';
import { announceListening, claimListen, isOwnAddress, type Listen, type Started } from './listen-claim.ts';
import { DiscoveryLink, type DiscoveryEvent } from './discovery-link.ts';
import { nodeStatus } from './node-status.ts';
import { MetricsLink } from './metrics-link.ts';
import { HEALTH_INTERVAL_MS, OllamaWatch, modelsDigest } from './ollama-watch.ts';
import { PeerBook } from './peer-book.ts';
import { Periodic } from './periodic.ts';
import { initialRole } from './role-decision.ts';
import { nextRouteTable, routesChanged } from './route-table.ts';
import { realSupervisorDeps, type ClusterHandle, type SupervisorDeps, type TrustHandle } from './supervisor-deps.ts';
import type { PoolHandle } from './thread-factory.ts';
import { proxyWorkerData } from './worker-data.ts';

/** How often the node checks that it can still open a file descriptor (FdWatch). */
const FD_CHECK_MS = 2_000;
/** In-flight requests of the old role get this long when the node changes role. */
export const SWITCH_DRAIN_MS = 5_000;

export type Role = NodeRole;

export interface SupervisorOptions {
  readonly config: ServeConfig;
  readonly log: Logger;
  readonly logSettings: LogSettings;
  readonly version: string;
  /** This node's certificate and key; its id is the node's id on the LAN. */
  readonly identity: Identity;
  readonly dataDir: string;
  /** Enables the worker crash hook used by supervision tests (OLLANA_DEBUG_HOOKS=1). */
  readonly debugHooks: boolean;
}

export class Supervisor extends EventEmitter<SupervisorEvents> {
  readonly #opts: SupervisorOptions;
  readonly #deps: SupervisorDeps;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #target: OllamaTarget;
  readonly #startedAt: number;
  readonly #boot = newBootId();
  readonly #id: string;
  /** TLS session ticket keys shared by every proxy worker of this process. */
  readonly #ticketKeys = randomBytes(48).toString('base64');
  readonly #trust: TrustHandle;
  readonly #peers: PeerBook;
  readonly #ollama: OllamaWatch;
  #pool: PoolHandle | null = null;
  #discovery: DiscoveryLink | null = null;
  /** The election thread, or with discovery off the election's rule run here (#startSoloElection). */
  #election: ElectionLink | null = null;
  readonly #cluster: ClusterHandle;
  #view: ElectionView = { term: 0, leader: '', servers: [], conflicts: [] };
  #role: Role = 'client';
  #listen: Listen = { host: '', port: 0 };
  #table: RouteTable = { version: 0, role: 'client', upstreams: [] };
  #load = 0;
  readonly #periodic: Periodic;
  #stopping = false;
  #switching = false;
  readonly #metrics = new MetricsLink();

  constructor(opts: SupervisorOptions, deps: Partial<SupervisorDeps> = {}) {
    super();
    this.#opts = opts;
    this.#deps = { ...realSupervisorDeps, ...deps };
    this.#clock = this.#deps.clock;
    this.#startedAt = this.#clock.now();
    this.#log = opts.log.child({ actor: 'supervisor' });
    this.#periodic = new Periodic(this.#clock, this.#log);
    this.#target = parseOllamaHost(opts.config.ollamaUrl, '--ollama-url / OLLAMA_HOST');
    this.#id = opts.identity.id;
    this.#ollama = new OllamaWatch(this.#target, opts.config.probeTimeoutMs, this.#deps.ollama, this.#clock, this.#log);
    this.#cluster = this.#deps.cluster(this.#log, opts.identity, () => this.#publishRoutes());
    this.#trust = this.#deps.trust(opts.dataDir, opts.config.trustLan, this.#log);
    this.#trust.on('change', () => this.#onTrustChange());
    this.#peers = new PeerBook(this.#id, this.#trust, this.#cluster, this.#clock, this.#log);
  }

  get role(): Role {
    return this.#role;
  }

  /** In-flight requests that stopping cut at the drain deadline (0 until the node has stopped). */
  get drainCut(): number {
    return this.#pool?.cut ?? 0;
  }

  async start(): Promise<Started> {
    const { config } = this.#opts;
    const probe = await this.#ollama.first((p) => (config.mode === 'auto' ? p.ok : config.mode === 'server'));
    this.#role = initialRole(config, probe, this.#target, this.#log);

    this.#listen = await claimListen(config, this.#role, this.#deps.ports);
    await this.#startPool();
    this.#trust.start();

    this.#startElection();
    if (config.discovery === 'off')
      this.#log.info('discovery is off: this node sends nothing to the LAN and finds no peers');
    else await this.#startDiscovery();
    // Server nodes watch their Ollama; in auto mode a client node watches for one appearing too.
    if (this.#role === 'server' || config.mode === 'auto')
      this.#periodic.every(HEALTH_INTERVAL_MS, () => this.#checkOllama());
    this.#periodic.every(config.heartbeatMs, () => this.#refreshLoad());
    const fds = new FdWatch(this.#log);
    this.#periodic.every(FD_CHECK_MS, () => fds.check());
    return this.#announceListening();
  }

  #announceListening(): Started {
    return announceListening(this.#listen, this.#role, this.#opts.config, this.#id, this.#log);
  }

  async #startPool(): Promise<void> {
    const { config } = this.#opts;
    this.#table = this.#buildTable();
    const workerData = proxyWorkerData({
      config,
      identity: this.#opts.identity,
      logSettings: this.#opts.logSettings,
      listen: this.#listen,
      role: this.#role,
      ticketKeys: this.#ticketKeys,
      trust: this.#trust.settings,
      debugHooks: this.#opts.debugHooks,
    });
    const pool = this.#deps.threads.pool(config.workers, workerData, this.#table, this.#log);
    pool.on('refused', (m) => this.#peers.refused(m));
    pool.on('refused-by', (server) => this.#peers.refusedBy(server));
    pool.on('status-request', (reply) => replyWith(this.status(), reply));
    pool.on('metrics-request', (reply) => replyWith(this.metrics(), reply));
    pool.on('fatal', (err) => this.emit('fatal', err));
    this.#pool = pool;
    await pool.start();
  }

  /**
   * Auto mode: the local Ollama appeared (client -> server) or has been gone for --role-switch-after
   * (server -> client). The new role's address is claimed before the old listener closes, so a failed
   * claim leaves the node as it was; in-flight requests get a short drain.
   */
  async #switchRole(to: Role, why: string): Promise<void> {
    if (this.#switching || this.#stopping || this.#role === to) return;
    this.#switching = true;
    const from = this.#role;
    try {
      const sameAddress = this.#opts.config.listen !== null;
      let listen = this.#listen;
      if (!sameAddress) {
        try {
          listen = await claimListen(this.#opts.config, to, this.#deps.ports);
        } catch (err) {
          this.#log.warn(
            { err, from, to },
            `cannot become a ${to} node yet (${errorMessage(err)}); staying a ${from} node`,
          );
          return;
        }
      }
      this.#log.info({ from, to, why }, `${why}: this node turns from ${from} into ${to}`);
      const old = this.#pool;
      this.#pool = null;
      await this.#metrics.retire(old);
      await old?.stop(SWITCH_DRAIN_MS);
      this.#role = to;
      this.#listen = listen;
      this.#load = 0;
      // The servers heard while this node was one are the new client's upstreams at once.
      if (to === 'client') for (const peer of this.#peers.servers) this.#peers.useServer(peer);
      await this.#startPool();
      this.#sendSelfToElection();
      this.#configureDiscovery();
      this.#announceListening();
      this.emit('role-changed', to);
    } finally {
      this.#switching = false;
    }
  }

  #startElection(): void {
    this.#election = startElection({
      solo: this.#opts.config.discovery === 'off',
      logSettings: this.#opts.logSettings,
      log: this.#log,
      rootLog: this.#opts.log,
      threads: this.#deps.threads,
      clock: this.#clock,
      onView: (view) => this.#onView(view),
      onFatal: (err) => this.emit('fatal', err),
      onStart: (election) => {
        this.#sendSelfToElection(election);
        for (const peer of this.#peers.clients) election.send({ type: 'peer.seen', peer });
        for (const peer of this.#peers.servers) election.send({ type: 'peer.seen', peer });
      },
    });
  }

  #onView(view: ElectionView): void {
    this.#view = view;
    this.#cluster.setView(view);
    this.#configureDiscovery();
  }

  #sendSelfToElection(election = this.#election): void {
    election?.send({
      type: 'election.self',
      id: this.#id,
      boot: this.#boot,
      role: this.#role,
      healthy: this.#role === 'server' && this.#ollama.state.healthy,
    });
  }

  async #startDiscovery(): Promise<void> {
    const { config, identity, logSettings } = this.#opts;
    const discovery = new DiscoveryLink({
      config,
      identity,
      logSettings,
      log: this.#log,
      threads: this.#deps.threads,
      clock: this.#clock,
      onStart: () => this.#configureDiscovery(),
      onMessage: (msg) => this.#onDiscovery(msg),
      onFatal: (err) => this.emit('fatal', err),
    });
    this.#discovery = discovery;
    try {
      await discovery.start();
    } catch (err) {
      await this.stop('discovery cannot start');
      throw err;
    }
  }

  #onDiscovery(msg: DiscoveryEvent): void {
    switch (msg.type) {
      case 'peer.seen':
        this.#peers.seen(msg.peer, this.#role);
        this.#election?.send(msg);
        break;
      case 'peer.gone':
        this.#peers.gone(msg.id, msg.reason);
        this.#election?.send(msg);
        break;
      case 'peer.clone':
        this.#election?.send(msg);
        break;
      case 'discovery.stopped':
        this.emit('discovery-stopped');
        break;
      default: {
        const never: never = msg;
        this.#log.error({ msg: never }, 'unhandled discovery message');
      }
    }
  }

  #self(): SelfInfo {
    return {
      id: this.#id,
      boot: this.#boot,
      role: this.#role,
      port: this.#role === 'server' ? this.#listen.port : 0,
      fp: this.#opts.identity.fingerprint,
      load: { inFlight: this.#load, workers: this.#opts.config.workers },
      models: this.#role === 'server' ? modelsDigest(this.#ollama.state.models) : '',
      term: this.#view.term,
      leader: this.#view.leader,
      draining: this.#role === 'server' && this.#stopping,
    };
  }

  #onTrustChange(): void {
    this.#pool?.setTrust(this.#trust.settings);
    this.#peers.trustChanged(this.#role);
  }

  #configureDiscovery(): void {
    // A server node announces only while its Ollama answers; a client node always (it is cheap, and
    // lets the cluster see clone conflicts among clients too).
    const announce = this.#role === 'client' || this.#ollama.state.healthy;
    this.#discovery?.send({ type: 'discovery.configure', self: this.#self(), announce });
  }

  async #checkOllama(): Promise<void> {
    const { config } = this.#opts;
    if (this.#role === 'client') {
      // Auto mode: an Ollama that appears makes this a server node. Not at our own listener's address,
      // where the answer would be this node itself.
      if (config.mode !== 'auto' || isOwnAddress(this.#target.origin, this.#listen)) return;
      const version = await this.#ollama.appeared();
      if (version === null) return;
      await this.#switchRole('server', `Ollama ${version} now answers at ${this.#target.origin}`);
      return;
    }
    const check = await this.#ollama.check();
    if (check === null) return;
    if (check.was !== check.ok) {
      this.#publishRoutes();
      this.#sendSelfToElection();
    }
    if (check.was !== check.ok || check.modelsChanged) this.#configureDiscovery();
    if (config.mode === 'auto' && check.downForMs !== null && check.downForMs >= config.roleSwitchAfterMs) {
      await this.#switchRole('client', `the local Ollama has not answered for ${Math.round(check.downForMs / 1000)} s`);
    }
  }

  #refreshLoad(): void {
    if (this.#pool === null || this.#role !== 'server') return;
    const load = this.#pool.inFlight();
    if (load !== this.#load) {
      this.#load = load;
      this.#configureDiscovery();
    }
  }

  #buildTable(): RouteTable {
    return nextRouteTable(this.#table, this.#role, this.#cluster, this.#ollama.state, this.#target);
  }

  #publishRoutes(): void {
    const next = this.#buildTable();
    if (!routesChanged(this.#table, next)) return;
    this.#table = next;
    this.#pool?.setRoutes(next);
  }

  async status(): Promise<NodeStatus> {
    const [workers, discoveryStats] = await Promise.all([
      this.#pool?.stats() ?? Promise.resolve([] as WorkerReport[]),
      this.#discovery?.stats() ?? Promise.resolve(null),
    ]);
    const { config } = this.#opts;
    return nodeStatus({
      now: this.#clock.now(),
      startedAt: this.#startedAt,
      version: this.#opts.version,
      pid: process.pid,
      boot: this.#boot,
      identity: this.#opts.identity,
      mode: config.mode,
      role: this.#role,
      trustLan: config.trustLan,
      insecureHttp: config.insecureHttp,
      trust: this.#trust.settings,
      pending: this.#trust.pendingCount,
      listen: this.#listen,
      ollamaUrl: this.#target.origin,
      ollama: this.#ollama.state,
      view: this.#view,
      servers: this.#role === 'client' ? this.#cluster.peers() : [],
      modelsOf: (id) => this.#cluster.models(id),
      clients: this.#peers.clients,
      discovery: this.#discovery?.info ?? null,
      discoveryStats,
      table: this.#table,
      connections: { open: this.#pool?.openConnections() ?? 0, max: config.maxConnections },
      sched: this.#pool?.sched?.() ?? null,
      workers,
      configuredWorkers: config.workers,
      restarts: this.#pool?.restarts ?? 0,
      rssBytes: rssBytes(),
    });
  }

  /** GET /ollana/v1/metrics: all workers' metrics added up, with the node's own (metrics/). */
  metrics(): Promise<string> {
    return this.#metrics.render(this.#pool, this.#discovery, {
      version: this.#opts.version,
      role: this.#role,
      ollamaUp: this.#role === 'server' ? this.#ollama.state.healthy : null,
      upstreams: this.#table.upstreams,
    });
  }

  /**
   * Announces draining on the LAN (a server node: client nodes send it no new requests but let the
   * running ones finish), drains the proxy workers, then says bye and ends every actor.
   */
  async stop(reason: string): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    this.#ollama.stop();
    this.#periodic.stop();
    this.#trust.stop();
    this.#cluster.close();
    const deadline = this.#opts.config.drainTimeoutMs;
    this.#log.info(
      { reason, drainTimeoutMs: deadline },
      `stopping (${reason}); in-flight requests have ${deadline} ms to finish`,
    );
    // Draining first (#self says so now that #stopping is set): clients stop sending new requests
    // here while the in-flight ones finish; the bye, which makes them drop this node, comes after.
    this.#configureDiscovery();
    await this.#pool?.stop(deadline);
    await this.#discovery?.stop(
      500,
      () =>
        new Promise<void>((resolve) => {
          this.once('discovery-stopped', resolve);
          this.#discovery?.send({ type: 'discovery.stop' });
        }),
    );
    await this.#election?.stop();
    this.#discovery?.closeRequests();
    this.#log.info('stopped');
  }
}

/** Answers a worker's request with `work`'s value, or with its error's message. */
function replyWith<T>(work: Promise<T>, reply: (value: T | null, error: string | null) => void): void {
  work.then(
    (value) => reply(value, null),
    (err: unknown) => reply(null, errorMessage(err)),
  );
}
