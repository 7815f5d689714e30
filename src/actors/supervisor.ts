/**
 * The supervisor (main thread): decides the node's role, claims the port, and runs the actors — the
 * proxy worker pool, discovery and election — wiring their messages together: discovery's peers go
 * to the election and (on a client node) into the cluster view, whose route table goes to the proxy
 * workers; the local Ollama's health decides whether a server node announces itself.
 */
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { CLIENT_LISTEN, SERVER_LISTEN, type ServeConfig } from '../config/defaults.ts';
import { parseOllamaHost, type OllamaTarget } from '../config/ollama-host.ts';
import { parseListen } from '../config/schema.ts';
import { systemClock } from '../clock.ts';
import { OllanaError, errorMessage } from '../errors.ts';
import type { Identity } from '../identity/identity.ts';
import { newBootId } from '../identity/boot-id.ts';
import type { Logger, LogSettings } from '../log.ts';
import { claimPort, fetchModels, probeOllama, probeOllana, probeOllanaTls } from '../net/probe.ts';
import { FdWatch, outOfFilesAdvice, rssBytes } from '../net/open-files.ts';
import type { PeerInfo } from '../protocol/lan.ts';
import { DISCOVERY_DEFAULTS } from './discovery/index.ts';
import {
  DISCOVERY_TO_SUPERVISOR, type DiscoveryStats, type DiscoveryToSupervisor, type ElectionToSupervisor,
  type ElectionView, type RouteTable, type SelfInfo, type SupervisorToDiscovery, type SupervisorToElection,
} from '../protocol/messages.ts';
import type { DiscoveryWorkerData } from '../workers/discovery.worker.ts';
import type { ElectionWorkerData } from '../workers/election.worker.ts';
import type { ProxyWorkerData } from '../workers/proxy.worker.ts';
import { ownModule } from '../module-file.ts';
import { ActorThread } from './actor-thread.ts';
import { ClusterView, peerUrl } from './cluster.ts';
import { ElectionActor } from './election.ts';
import { ProxyPool, type WorkerReport } from './proxy-pool.ts';
import { PendingReplies } from './runtime.ts';
import { TrustStore } from './trust-store.ts';

const DISCOVERY_FILE = ownModule('../workers/discovery.worker.ts', import.meta.url);
const ELECTION_FILE = ownModule('../workers/election.worker.ts', import.meta.url);
const HEALTH_INTERVAL_MS = 2_000;
/** How often the node checks that it can still open a file descriptor (FdWatch). */
const FD_CHECK_MS = 2_000;
/** In-flight requests of the old role get this long when the node changes role. */
const SWITCH_DRAIN_MS = 5_000;
/** A node silent for this many heartbeats is gone. */
const DEAD_AFTER_HEARTBEATS = 3.5;
const MAX_TOLD = 256;
const TOLD_PER_MINUTE = 8;

export type Role = 'server' | 'client';

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

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

export interface Started {
  readonly role: Role;
  readonly host: string;
  readonly port: number;
  readonly url: string;
}

function modelsDigest(models: readonly string[]): string {
  return createHash('sha256').update([...models].sort().join('\n')).digest('hex').slice(0, 16);
}

export class Supervisor extends EventEmitter {
  readonly #opts: SupervisorOptions;
  readonly #log: Logger;
  readonly #target: OllamaTarget;
  readonly #startedAt = Date.now();
  readonly #boot = newBootId();
  readonly #id: string;
  /** TLS session ticket keys shared by every proxy worker of this process. */
  readonly #ticketKeys = randomBytes(48).toString('base64');
  readonly #trust: TrustStore;
  /**
   * Server nodes already told about (not allowed yet / refusing this device): one log line each, at
   * most TOLD_PER_MINUTE a minute (a flood of made-up server nodes), and at most MAX_TOLD remembered.
   */
  readonly #told = new Set<string>();
  #toldWindow = { at: 0, count: 0, skipped: 0 };
  #pool: ProxyPool | null = null;
  #discovery: ActorThread<DiscoveryToSupervisor, SupervisorToDiscovery> | null = null;
  /** The election thread, or with discovery off the election's rule run here (#startSoloElection). */
  #election: Pick<ActorThread<ElectionToSupervisor, SupervisorToElection>, 'send' | 'stop'> | null = null;
  readonly #discoveryStats = new PendingReplies<DiscoveryStats>();
  #discoveryInfo: { port: number; group: string; multicast: boolean; broadcast: boolean; interfaces: string[] } | null = null;
  readonly #cluster: ClusterView;
  readonly #clientPeers = new Map<string, PeerInfo>();
  /** Every live server node discovery reports, whatever this node's role (the leader lists them). */
  readonly #serverPeers = new Map<string, PeerInfo>();
  #view: ElectionView = { term: 0, leader: '', servers: [], conflicts: [] };
  #role: Role = 'client';
  #listen = { host: '', port: 0 };
  #table: RouteTable = { version: 0, role: 'client', upstreams: [] };
  #ollama: { healthy: boolean; version: string | null; models: string[]; checkedAt: number } =
    { healthy: false, version: null, models: [], checkedAt: 0 };
  #load = 0;
  #timers: NodeJS.Timeout[] = [];
  #stopping = false;
  #switching = false;
  /** Since when the local Ollama has not answered (server role), or null. */
  #ollamaDownSince: number | null = null;
  /** The last health check could not be made for lack of file descriptors (logged once). */
  #probeStarved = false;

  constructor(opts: SupervisorOptions) {
    super();
    this.#opts = opts;
    this.#log = opts.log.child({ actor: 'supervisor' });
    this.#target = parseOllamaHost(opts.config.ollamaUrl, '--ollama-url / OLLAMA_HOST');
    this.#id = opts.identity.id;
    this.#cluster = new ClusterView(this.#log, opts.identity, () => this.#publishRoutes());
    this.#trust = new TrustStore(opts.dataDir, opts.config.trustLan, this.#log);
    this.#trust.on('change', () => this.#onTrustChange());
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
    this.#ollama = { healthy: probe.ok, version: probe.ok ? probe.version : null, models: [], checkedAt: Date.now() };
    if (this.#role === 'server' && probe.ok) this.#ollama.models = await fetchModels(this.#target, config.probeTimeoutMs) ?? [];

    this.#listen = await this.#claimListen(this.#role);
    await this.#startPool();
    this.#trust.start();

    this.#startElection();
    if (config.discovery === 'off') this.#log.info('discovery is off: this node sends nothing to the LAN and finds no peers');
    else await this.#startDiscovery();
    // Server nodes watch their Ollama; in auto mode a client node watches for one appearing too.
    if (this.#role === 'server' || config.mode === 'auto') this.#every(HEALTH_INTERVAL_MS, () => this.#checkOllama());
    this.#every(config.heartbeatMs, () => this.#refreshLoad());
    const fds = new FdWatch(this.#log);
    this.#every(FD_CHECK_MS, () => fds.check());
    return this.#announceListening();
  }

  #announceListening(): Started {
    const { host, port } = this.#listen;
    const workers = this.#opts.config.workers;
    const scheme = this.#role === 'server' && !this.#opts.config.insecureHttp ? 'https' : 'http';
    const url = `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`;
    this.#log.info({ role: this.#role, url, host, port, workers, deviceId: this.#id },
      `ollana ${this.#role} node listening on ${url} with ${workers} proxy worker${workers === 1 ? '' : 's'}`);
    return { role: this.#role, host, port, url };
  }

  /** Claims the listen address of `role` exclusively (see claimPort), with the errors users meet. */
  async #claimListen(role: Role): Promise<{ host: string; port: number }> {
    const { config } = this.#opts;
    const listenText = config.listen ?? (role === 'server' ? SERVER_LISTEN : CLIENT_LISTEN);
    const listen = parseListen(listenText);
    if (listen === null) throw new OllanaError('OLN_BAD_FLAG', `--listen "${listenText}" must be host:port`);
    if (role === 'server' && config.insecureHttp && !isLoopback(listen.host)) {
      throw new OllanaError('OLN_BAD_FLAG', `--insecure-http would serve plain HTTP on ${listen.host}:${listen.port}, ` +
        'where the LAN could read every prompt; it is allowed only with a loopback --listen (e.g. 127.0.0.1:11435). ' +
        'Leave it out to serve the LAN over TLS');
    }
    try {
      listen.port = await claimPort(listen.host, listen.port, '--listen');
    } catch (err) {
      if (!(err instanceof OllanaError && err.code === 'OLN_PORT_IN_USE')) throw err;
      const connectHost = listen.host === '0.0.0.0' ? '127.0.0.1' : listen.host === '::' ? '::1' : listen.host;
      const origin = `http://${connectHost.includes(':') ? `[${connectHost}]` : connectHost}:${listen.port}`;
      if (await probeOllana(origin, config.probeTimeoutMs) || await probeOllanaTls(connectHost, listen.port, config.probeTimeoutMs)) {
        throw new OllanaError('OLN_PORT_IN_USE',
          `another ollana already serves on ${listen.host}:${listen.port}; stop it (\`ollana stop\`, or Ctrl-C where it runs), ` +
          'or give this one its own --listen and --pid-file', { details: { host: listen.host, port: listen.port } });
      }
      if (role === 'client') {
        const there = await probeOllama({ origin, basePath: '' }, config.probeTimeoutMs);
        if (there.ok) {
          throw new OllanaError('OLN_OLLAMA_ON_PORT',
            `an Ollama already listens on ${listen.host}:${listen.port}, so this machine should share it, not borrow one: ` +
            'run `ollana serve` (auto mode makes it a server node), or give the client node another --listen address');
        }
      }
      throw err;
    }
    return listen;
  }

  async #startPool(): Promise<void> {
    const { config } = this.#opts;
    this.#table = this.#buildTable();
    const workerData: ProxyWorkerData = {
      log: this.#opts.logSettings,
      proxy: {
        host: this.#listen.host,
        port: this.#listen.port,
        origins: config.origins,
        connectTimeoutMs: config.connectTimeoutMs,
        headersTimeoutMs: config.headersTimeoutMs,
        bodyTimeoutMs: config.bodyTimeoutMs,
        upstreamConnections: config.upstreamConnections,
        upstreamKeepAliveMs: config.upstreamKeepAliveMs,
        requestHeadersTimeoutMs: config.requestHeadersTimeoutMs,
        keepAliveTimeoutMs: config.keepAliveTimeoutMs,
        requestBodyTimeoutMs: config.requestBodyTimeoutMs,
        maxConnections: config.maxConnections,
        debugHooks: this.#opts.debugHooks,
        tls: { id: this.#id, certPem: this.#opts.identity.certPem, keyPem: this.#opts.identity.keyPem, ticketKeys: this.#ticketKeys },
        listenTls: this.#role === 'server' && !config.insecureHttp,
        trust: this.#trust.settings,
      },
    };
    const pool = new ProxyPool(config.workers, workerData, this.#table, this.#log);
    pool.on('refused', (m: { id: string; name: string; addr: string; verdict: string }) => this.#onRefused(m));
    pool.on('refused-by', (server: string) => this.#onRefusedBy(server));
    pool.on('status-request', (reply: (s: Record<string, unknown> | null, e: string | null) => void) => {
      this.status().then((s) => reply(s, null), (err: unknown) => reply(null, errorMessage(err)));
    });
    pool.on('fatal', (err: OllanaError) => this.emit('fatal', err));
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
          listen = await this.#claimListen(to);
        } catch (err) {
          this.#log.warn({ err, from, to }, `cannot become a ${to} node yet (${errorMessage(err)}); staying a ${from} node`);
          return;
        }
      }
      this.#log.info({ from, to, why }, `${why}: this node turns from ${from} into ${to}`);
      const old = this.#pool;
      this.#pool = null;
      await old?.stop(SWITCH_DRAIN_MS);
      this.#role = to;
      this.#listen = listen;
      this.#load = 0;
      // The servers heard while this node was one are the new client's upstreams at once.
      if (to === 'client') for (const peer of this.#serverPeers.values()) this.#useServer(peer);
      await this.#startPool();
      this.#sendSelfToElection();
      this.#configureDiscovery();
      this.#announceListening();
      this.emit('role-changed', to);
    } finally {
      this.#switching = false;
    }
  }

  #every(ms: number, fn: () => Promise<void> | void): void {
    const loop = (): void => {
      const t = setTimeout(() => {
        void Promise.resolve(fn()).catch((err: unknown) => this.#log.error({ err }, 'periodic task failed'))
          .finally(() => { if (!this.#stopping) loop(); });
      }, ms);
      t.unref();
      this.#timers.push(t);
      if (this.#timers.length > 16) this.#timers = this.#timers.slice(-8);
    };
    loop();
  }

  #startElection(): void {
    if (this.#opts.config.discovery === 'off') {
      this.#startSoloElection();
      return;
    }
    const data: ElectionWorkerData = { log: this.#opts.logSettings, conflictTtlMs: 30_000 };
    const election = new ActorThread<ElectionToSupervisor, SupervisorToElection>({
      name: 'election', file: ELECTION_FILE, workerData: data, accepts: ['election.view'], log: this.#log,
      onStart: () => {
        this.#sendSelfToElection();
        for (const peer of this.#clientPeers.values()) this.#election?.send({ type: 'election.peer', peer });
        for (const peer of this.#serverPeers.values()) this.#election?.send({ type: 'election.peer', peer });
      },
    });
    election.on('message', (msg: ElectionToSupervisor) => this.#onView(msg.view));
    election.on('fatal', (err: Error) => this.emit('fatal', err instanceof OllanaError ? err : new OllanaError('OLN_WORKER_FAILED', err.message)));
    this.#election = election;
    election.start();
  }

  /**
   * Discovery off: this node hears no peer, so there is nothing to elect and no thread is started
   * for it (a thread's isolate costs 18-35 MB). The election actor runs here instead, fed only this
   * node's own state: a server node whose Ollama answers is its own leader, as the thread would say.
   * Conflicts come from peers only, so there is no tick to expire them.
   */
  #startSoloElection(): void {
    const actor = new ElectionActor({ send: (msg) => this.#onView(msg.view), clock: systemClock,
      log: this.#opts.log.child({ actor: 'election' }), conflictTtlMs: 30_000 });
    this.#election = { send: (msg) => actor.handle(msg), stop: () => Promise.resolve() };
    this.#sendSelfToElection();
  }

  #onView(view: ElectionView): void {
    this.#view = view;
    this.#cluster.setView(view);
    this.#configureDiscovery();
  }

  #sendSelfToElection(): void {
    this.#election?.send({ type: 'election.self', id: this.#id, boot: this.#boot, role: this.#role,
      healthy: this.#role === 'server' && this.#ollama.healthy });
  }

  async #startDiscovery(): Promise<void> {
    const { config } = this.#opts;
    const data: DiscoveryWorkerData = {
      log: this.#opts.logSettings,
      options: {
        ...DISCOVERY_DEFAULTS,
        port: config.discoveryPort,
        multicast: config.discovery !== 'broadcast',
        broadcast: config.discovery !== 'multicast',
        heartbeatMs: config.heartbeatMs,
        deadAfterMs: Math.round(config.heartbeatMs * DEAD_AFTER_HEARTBEATS),
        queryIntervalMs: config.heartbeatMs,
        answerJitterMs: Math.min(DISCOVERY_DEFAULTS.answerJitterMs, config.heartbeatMs / 4),
      },
      identity: { certPem: this.#opts.identity.certPem, keyPem: this.#opts.identity.keyPem },
    };
    let ready: ((v: void) => void) | null = null;
    const readyP = new Promise<void>((resolve) => { ready = resolve; });
    const discovery = new ActorThread<DiscoveryToSupervisor, SupervisorToDiscovery>({
      name: 'discovery', file: DISCOVERY_FILE, workerData: data, accepts: DISCOVERY_TO_SUPERVISOR, log: this.#log,
      onStart: () => this.#configureDiscovery(),
    });
    discovery.on('message', (msg: DiscoveryToSupervisor) => {
      switch (msg.type) {
        case 'discovery.ready':
          this.#discoveryInfo = { port: msg.port, group: msg.group, multicast: msg.multicast, broadcast: msg.broadcast, interfaces: msg.interfaces };
          this.#log.info({ discovery: this.#discoveryInfo }, `discovery on UDP ${msg.port} (${[msg.multicast ? `multicast ${msg.group}` : '', msg.broadcast ? 'broadcast' : ''].filter(Boolean).join(' + ')})`);
          ready?.();
          break;
        case 'peer.seen':
          if (msg.peer.role === 'server') {
            this.#serverPeers.set(msg.peer.id, msg.peer);
            if (this.#role === 'client') this.#useServer(msg.peer);
          } else {
            this.#clientPeers.set(msg.peer.id, msg.peer);
          }
          this.#election?.send({ type: 'election.peer', peer: msg.peer });
          break;
        case 'peer.gone':
          this.#serverPeers.delete(msg.id);
          this.#cluster.gone(msg.id, msg.reason);
          this.#clientPeers.delete(msg.id);
          this.#election?.send({ type: 'election.gone', id: msg.id, reason: msg.reason });
          break;
        case 'peer.clone':
          this.#election?.send({ type: 'election.clone', id: msg.id, addr: msg.addr, boot: msg.boot });
          break;
        case 'discovery.stats.report':
          this.#discoveryStats.settle(msg.id, msg.stats);
          break;
        case 'discovery.stopped':
          this.emit('discovery-stopped');
          break;
        default: {
          const never: never = msg;
          this.#log.error({ msg: never }, 'unhandled discovery message');
        }
      }
    });
    let failed: ((err: OllanaError) => void) | null = null;
    const failedP = new Promise<never>((_resolve, reject) => { failed = reject; });
    discovery.on('fatal', (err: Error) => {
      const e = err instanceof OllanaError ? err : new OllanaError('OLN_WORKER_FAILED', err.message);
      if (this.#discoveryInfo === null && failed !== null) failed(e); // still starting: start() fails with it
      else this.emit('fatal', e);
    });
    this.#discovery = discovery;
    discovery.start();
    try {
      await Promise.race([readyP, failedP, new Promise((r) => setTimeout(r, 5_000).unref())]);
    } catch (err) {
      await this.stop('discovery cannot start');
      throw err;
    } finally {
      failed = null;
    }
    if (this.#discoveryInfo === null) this.#log.warn('discovery did not report ready within 5 s; the node serves, but may not find peers');
  }

  #self(): SelfInfo {
    return {
      id: this.#id,
      boot: this.#boot,
      role: this.#role,
      port: this.#role === 'server' ? this.#listen.port : 0,
      fp: this.#opts.identity.fingerprint,
      load: { inFlight: this.#load, workers: this.#opts.config.workers },
      models: this.#role === 'server' ? modelsDigest(this.#ollama.models) : '',
      term: this.#view.term,
      leader: this.#view.leader,
      draining: this.#role === 'server' && this.#stopping,
    };
  }

  /**
   * A client node uses a server node only if it trusts its device id; otherwise it logs, once, the
   * command that allows it, and lists it under `ollana device pending`.
   */
  #useServer(peer: PeerInfo): void {
    if (this.#trust.trusts(peer.id)) {
      this.#cluster.seen(peer);
      return;
    }
    // Discovery reports only ids whose datagrams were signed by that id's certificate, so what goes
    // into pending.json is a well-formed device id; the budget bounds how many new ones a minute.
    // One already told about is noted again (its last-seen time), as the trust store's file may
    // have been rewritten since.
    if (this.#told.has(peer.id)) {
      this.#trust.notePending(peer.id, '', peer.addr, 'server-seen');
      return;
    }
    if (!this.#mayTell()) return;
    this.#remember(peer.id);
    // Logged once pending.json lists it, so `ollana device pending` right after the line shows it.
    this.#trust.notePending(peer.id, '', peer.addr, 'server-seen', () => {
      const why = this.#trust.isDisabled(peer.id) ? 'it is disabled here' : 'it is not allowed yet';
      this.#log.info({ peer: { id: peer.id, addr: peer.addr, port: peer.port } },
        `server node ${peer.id} found at ${peer.addr}:${peer.port}, not used: ${why}; to use it run: ollana device allow ${peer.id}`);
    });
  }

  /** Whether one more "found / refused" line fits this minute's budget; sums up what did not. */
  #mayTell(): boolean {
    const now = Date.now();
    const w = this.#toldWindow;
    if (now - w.at >= 60_000) {
      if (w.skipped > 0) {
        this.#log.info({ skipped: w.skipped }, `${w.skipped} more server nodes this device does not use were heard in the last minute ` +
          '(not logged, not listed as pending); `ollana status` lists the peers');
      }
      this.#toldWindow = { at: now, count: 0, skipped: 0 };
    }
    if (this.#toldWindow.count >= TOLD_PER_MINUTE) {
      this.#toldWindow.skipped++;
      return false;
    }
    this.#toldWindow.count++;
    return true;
  }

  #remember(key: string): void {
    this.#told.add(key);
    if (this.#told.size > MAX_TOLD) this.#told.delete(this.#told.values().next().value ?? '');
  }

  #onTrustChange(): void {
    this.#pool?.setTrust(this.#trust.settings);
    if (this.#role !== 'client') return;
    for (const peer of this.#serverPeers.values()) {
      if (this.#trust.trusts(peer.id)) this.#cluster.seen(peer);
      else this.#cluster.gone(peer.id, 'no longer allowed');
    }
  }

  /** A server node's worker turned a device away after the handshake. */
  #onRefused(m: { id: string; name: string; addr: string; verdict: string }): void {
    if (m.verdict === 'bad-handshake') {
      this.#log.info({ addr: m.addr, reason: m.name },
        `refused a connection from ${m.addr}: TLS handshake failed (${m.name}); plain HTTP to the TLS port, or not an ollana node`);
      return;
    }
    if (m.verdict === 'no-certificate') {
      this.#log.info({ addr: m.addr }, `refused a connection from ${m.addr} without a device certificate (not an ollana node)`);
      return;
    }
    this.#trust.notePending(m.id, m.name, m.addr, 'client-refused', (first) => {
      this.#log.info({ device: m.id, name: m.name, addr: m.addr, verdict: m.verdict, first },
        m.verdict === 'disabled'
          ? `refused disabled device ${m.id} (${m.name || 'no name'}) from ${m.addr}`
          : `refused device ${m.id} (${m.name || 'no name'}) from ${m.addr}: not allowed; to allow it run: ollana device allow ${m.id}`);
    });
  }

  /** A server node answered that it does not allow this device. */
  #onRefusedBy(server: string): void {
    const key = `by ${server}`;
    if (this.#told.has(key)) return;
    this.#remember(key);
    this.#log.warn({ peer: { id: server } },
      `server node ${server} does not allow this device yet; on that server run: ollana device allow ${this.#id}`);
  }

  #configureDiscovery(): void {
    // A server node announces only while its Ollama answers; a client node always (it is cheap, and
    // lets the cluster see clone conflicts among clients too).
    const announce = this.#role === 'client' || this.#ollama.healthy;
    this.#discovery?.send({ type: 'discovery.configure', self: this.#self(), announce });
  }

  async #checkOllama(): Promise<void> {
    const { config } = this.#opts;
    if (this.#role === 'client') {
      // Auto mode: an Ollama that appears makes this a server node. Not at our own listener's address,
      // where the answer would be this node itself.
      if (config.mode !== 'auto' || this.#isOwnAddress(this.#target.origin)) return;
      const probe = await probeOllama(this.#target, config.probeTimeoutMs);
      if (!probe.ok || this.#stopping) return;
      this.#ollama = { healthy: true, version: probe.version, models: await fetchModels(this.#target, config.probeTimeoutMs) ?? [],
        checkedAt: Date.now() };
      this.#ollamaDownSince = null;
      await this.#switchRole('server', `Ollama ${probe.version} now answers at ${this.#target.origin}`);
      return;
    }
    const probe = await probeOllama(this.#target, config.probeTimeoutMs);
    if (this.#stopping) return;
    if (!probe.ok && probe.outOfFiles === true) {
      // This node could not open a connection to ask, which says nothing about Ollama: leaving the
      // cluster (or, in auto mode, becoming a client) would be wrong. Asked again next round.
      if (!this.#probeStarved) this.#log.error({ ollama: this.#target.origin }, `cannot check the local Ollama at ${this.#target.origin}: ${outOfFilesAdvice()}`);
      this.#probeStarved = true;
      return;
    }
    this.#probeStarved = false;
    const was = this.#ollama.healthy;
    const models = probe.ok ? await fetchModels(this.#target, config.probeTimeoutMs) : null;
    const modelsChanged = models !== null && modelsDigest(models) !== modelsDigest(this.#ollama.models);
    this.#ollama = { healthy: probe.ok, version: probe.ok ? probe.version : this.#ollama.version,
      models: models ?? this.#ollama.models, checkedAt: Date.now() };
    if (probe.ok) this.#ollamaDownSince = null;
    else this.#ollamaDownSince ??= Date.now();
    if (was !== probe.ok) {
      if (probe.ok) this.#log.info({ ollama: this.#target.origin }, `local Ollama at ${this.#target.origin} answers again: announcing this server node`);
      else this.#log.warn({ ollama: this.#target.origin, reason: probe.reason },
        `local Ollama at ${this.#target.origin} stopped answering (${probe.reason}): this node leaves the cluster until it is back`);
      this.#publishRoutes();
      this.#sendSelfToElection();
    }
    if (was !== probe.ok || modelsChanged) this.#configureDiscovery();
    if (config.mode === 'auto' && this.#ollamaDownSince !== null && Date.now() - this.#ollamaDownSince >= config.roleSwitchAfterMs) {
      await this.#switchRole('client', `the local Ollama has not answered for ${Math.round((Date.now() - this.#ollamaDownSince) / 1000)} s`);
    }
  }

  /** Whether `origin` (http://host:port) is this node's own listener. */
  #isOwnAddress(origin: string): boolean {
    const u = new URL(origin);
    if (Number(u.port || 80) !== this.#listen.port) return false;
    const host = u.hostname.replace(/^\[|\]$/g, '');
    const local = new Set(['127.0.0.1', 'localhost', '::1', '0.0.0.0', '::']);
    return host === this.#listen.host || (local.has(host) && local.has(this.#listen.host)) || this.#listen.host === '0.0.0.0';
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
    if (this.#role === 'client') {
      return { version: this.#table.version + 1, role: 'client', upstreams: this.#cluster.upstreams() };
    }
    return {
      version: this.#table.version + 1,
      role: 'server',
      upstreams: [{ id: 'local', url: this.#target.origin, device: '', basePath: this.#target.basePath, healthy: this.#ollama.healthy,
        models: this.#ollama.models, leader: true, load: 0 }],
    };
  }

  #publishRoutes(): void {
    const next = this.#buildTable();
    if (JSON.stringify(next.upstreams) === JSON.stringify(this.#table.upstreams)) return;
    this.#table = next;
    this.#pool?.setRoutes(next);
  }

  async #discoveryStatsNow(): Promise<DiscoveryStats | null> {
    if (this.#discovery === null) return null;
    const { id, reply } = this.#discoveryStats.open(1_000, 'discovery stats');
    this.#discovery.send({ type: 'discovery.stats.request', id });
    try {
      return await reply;
    } catch {
      return null;
    }
  }

  async status(): Promise<Record<string, unknown>> {
    const [workers, discoveryStats] = await Promise.all([
      this.#pool?.stats() ?? Promise.resolve([] as WorkerReport[]),
      this.#discoveryStatsNow(),
    ]);
    const live = workers.filter((w) => 'requests' in w);
    const sum = (f: (w: (typeof live)[number]) => number): number => live.reduce((acc, w) => acc + f(w), 0);
    const now = Date.now();
    const servers = this.#role === 'client'
      ? this.#cluster.peers().map((p) => ({
          id: p.id, addr: p.addr, url: peerUrl(p), role: p.role, lastSeenMsAgo: now - p.lastSeen, healthy: !p.draining,
          draining: p.draining,
          leader: p.id === this.#view.leader, load: p.load, models: this.#cluster.models(p.id),
        }))
      : [];
    const clients = [...this.#clientPeers.values()].map((p) => ({ id: p.id, addr: p.addr, role: p.role, lastSeenMsAgo: now - p.lastSeen }));
    return {
      ollana: { version: this.#opts.version, pid: process.pid, uptimeS: Math.round((now - this.#startedAt) / 1000) },
      node: { id: this.#id, boot: this.#boot, name: this.#opts.identity.name, fingerprint: this.#opts.identity.fingerprint },
      trust: { trustLan: this.#opts.config.trustLan, allowed: this.#trust.settings.allowed.length,
        disabled: this.#trust.settings.disabled.length, pending: this.#trust.pendingCount,
        tls: this.#role === 'server' ? !this.#opts.config.insecureHttp : null },
      mode: this.#opts.config.mode,
      role: this.#role,
      listen: { host: this.#listen.host, port: this.#listen.port },
      ollama: this.#role === 'server'
        ? { url: this.#target.origin, healthy: this.#ollama.healthy, version: this.#ollama.version, models: this.#ollama.models,
            checkedAt: new Date(this.#ollama.checkedAt).toISOString() }
        : null,
      cluster: {
        term: this.#view.term,
        leader: this.#view.leader,
        isLeader: this.#view.leader !== '' && this.#view.leader === this.#id,
        servers: this.#view.servers,
        conflicts: this.#view.conflicts,
      },
      peers: [...servers, ...clients],
      discovery: this.#discoveryInfo === null ? null : { ...this.#discoveryInfo, stats: discoveryStats },
      upstreams: this.#table.upstreams,
      connections: { open: this.#pool?.openConnections() ?? 0, max: this.#opts.config.maxConnections },
      workers: {
        configured: this.#opts.config.workers,
        live: live.length,
        restarts: this.#pool?.restarts ?? 0,
        totals: {
          requests: sum((w) => w.requests), inFlight: sum((w) => w.inFlight), completed: sum((w) => w.completed),
          clientAborts: sum((w) => w.clientAborts), upstreamErrors: sum((w) => w.upstreamErrors),
          bytesIn: sum((w) => w.bytesIn), bytesOut: sum((w) => w.bytesOut),
          tlsHandshakes: sum((w) => w.tlsHandshakes), tlsResumed: sum((w) => w.tlsResumed),
          fastRequests: sum((w) => w.fastRequests), handedToNode: sum((w) => w.handedToNode),
        },
        list: workers,
      },
      memory: { rssBytes: rssBytes() },
    };
  }

  /**
   * Announces draining on the LAN (a server node: client nodes send it no new requests but let the
   * running ones finish), drains the proxy workers, then says bye and ends every actor.
   */
  async stop(reason: string): Promise<void> {
    if (this.#stopping) return;
    this.#stopping = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#trust.stop();
    this.#cluster.close();
    const deadline = this.#opts.config.drainTimeoutMs;
    this.#log.info({ reason, drainTimeoutMs: deadline }, `stopping (${reason}); in-flight requests have ${deadline} ms to finish`);
    // Draining first (#self says so now that #stopping is set): clients stop sending new requests
    // here while the in-flight ones finish; the bye, which makes them drop this node, comes after.
    this.#configureDiscovery();
    await this.#pool?.stop(deadline);
    await this.#discovery?.stop(500, () => new Promise<void>((resolve) => {
      this.once('discovery-stopped', resolve);
      this.#discovery?.send({ type: 'discovery.stop' });
    }));
    await this.#election?.stop();
    this.#discoveryStats.rejectAll(new Error('stopping'));
    this.#log.info('stopped');
  }
}
