/**
 * The discovery actor: owns the UDP socket of the LAN protocol (DESIGN.md, "LAN protocol"), keeps
 * the table of peers heard on it (peer-table.ts) and tells the supervisor when one appears, changes
 * or goes; announces this node, queries for servers and answers queries (lan-sender.ts sends).
 *
 * Pure logic over injected dependencies (socket, clock, random, logger, outbox), so unit tests drive
 * it with a fake socket and a fake clock; src/workers/discovery.worker.ts wires the real ones.
 */
import { DatagramVerifier } from '../../net/datagram-auth.ts';
import { decodeDatagram, encodeDatagram, type DatagramSigner } from '../../net/datagram.ts';
import { lanInterfaces, type LanInterface } from '../../net/lan-interfaces.ts';
import { SourceRateLimiter } from '../../net/rate-limiter.ts';
import type { Clock } from '../../clock.ts';
import { systemCode } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { LanKind, PeerInfo } from '../../protocol/lan.ts';
import type {
  DiscoveryStats,
  DiscoveryToSupervisor,
  SelfInfo,
  SupervisorToDiscovery,
} from '../../protocol/messages.ts';
import { LanSender, lanTargets, type DatagramSocketLike, type Target } from './lan-sender.ts';
import { resolveOptions, type DiscoveryOptions, type ResolvedOptions } from './options.ts';
import { bindError, LanMembership, trySocketOption } from './lan-membership.ts';
import { PeerTable } from './peer-table.ts';
import { selfChanged, selfDatagram } from './self-datagram.ts';

export interface DiscoveryDeps {
  readonly socket: DatagramSocketLike;
  readonly clock: Clock;
  /** in [0, 1), as Math.random */
  readonly random: () => number;
  readonly log: Logger;
  readonly send: (msg: DiscoveryToSupervisor) => void;
  readonly options?: Partial<DiscoveryOptions>;
  /** where the interface list comes from when options.interfaces is null */
  readonly scanInterfaces?: () => LanInterface[];
  /** signs this node's datagrams with its identity (the id configured must be this certificate's) */
  readonly signer: DatagramSigner;
  /** checks peers' datagrams; tests pass one with other budgets */
  readonly verifier?: DatagramVerifier;
}

const MAX_PENDING_ANSWERS = 64;

type State = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped';

export class DiscoveryActor {
  readonly #socket: DatagramSocketLike;
  readonly #clock: Clock;
  readonly #random: () => number;
  readonly #log: Logger;
  readonly #out: (msg: DiscoveryToSupervisor) => void;
  readonly #opts: ResolvedOptions;
  readonly #scan: () => LanInterface[];
  readonly #limiter: SourceRateLimiter;
  readonly #signer: DatagramSigner;
  readonly #peers: PeerTable;
  readonly #sender: LanSender;
  /** the LAN interfaces this node sends on and its group memberships */
  readonly #lan: LanMembership;
  /** the first seq this process sends: a datagram with our id, another boot and a seq above it is from a live clone */
  readonly #firstSeq: number;

  #state: State = 'idle';
  #startPromise: Promise<void> | null = null;
  #stopPromise: Promise<void> | null = null;
  #port = 0;
  #self: SelfInfo | null = null;
  #announce = false;
  #seq: number;
  /** when an announce last went out ahead of the heartbeat (news), to allow one such a heartbeat interval */
  #extraAt = -Infinity;
  readonly #pendingAnswers = new Map<string, unknown>();
  #stopHeartbeat: (() => void) | null = null;
  #stopQuerying: (() => void) | null = null;
  #stopSweep: (() => void) | null = null;
  #stopRescan: (() => void) | null = null;
  readonly #stats = {
    received: 0,
    sent: 0,
    sendErrors: 0,
    dropped: {
      magic: 0,
      version: 0,
      malformed: 0,
      oversize: 0,
      rateLimited: 0,
      duplicate: 0,
      forged: 0,
      verifyLimited: 0,
      stale: 0,
      peerLimit: 0,
    },
  };

  constructor(deps: DiscoveryDeps) {
    this.#socket = deps.socket;
    this.#clock = deps.clock;
    this.#random = deps.random;
    this.#log = deps.log;
    this.#out = deps.send;
    this.#opts = resolveOptions(deps.options);
    this.#scan = deps.scanInterfaces ?? lanInterfaces;
    this.#limiter = new SourceRateLimiter(this.#opts.rateLimit);
    this.#signer = deps.signer;
    this.#peers = new PeerTable({
      log: this.#log,
      verifier: deps.verifier ?? new DatagramVerifier(),
      opts: this.#opts,
      dropped: this.#stats.dropped,
      send: this.#out,
      serversChanged: () => this.#updateQuerying(),
    });
    this.#sender = new LanSender(this.#socket, this.#log, this.#stats);
    this.#lan = new LanMembership(this.#socket, this.#opts.group, this.#log);
    // Starting at the clock makes every boot (and a restarted discovery thread) continue above the
    // numbers an earlier one sent, so receivers never take its datagrams for old copies.
    this.#seq = Math.max(0, Math.floor(this.#clock.now()));
    this.#firstSeq = this.#seq;
  }

  /**
   * Binds the socket, joins the group, sends discovery.ready. Rejects with an OllanaError naming the
   * port and --discovery-port when the port cannot be bound.
   */
  start(): Promise<void> {
    this.#startPromise ??= this.#start();
    return this.#startPromise;
  }

  /** Says bye when announcing, closes the socket, sends discovery.stopped. Idempotent. */
  stop(): Promise<void> {
    this.#stopPromise ??= this.#stop();
    return this.#stopPromise;
  }

  /** A message from the supervisor. */
  handle(msg: SupervisorToDiscovery): void {
    switch (msg.type) {
      case 'discovery.configure':
        this.#configure(msg.self, msg.announce);
        break;
      case 'discovery.stop':
        void this.stop();
        break;
      case 'discovery.stats.request':
        this.#out({ type: 'discovery.stats.report', id: msg.id, stats: this.stats() });
        break;
      default: {
        const never: never = msg;
        throw new Error(`unhandled message ${JSON.stringify(never)}`);
      }
    }
  }

  stats(): DiscoveryStats {
    return {
      received: this.#stats.received,
      sent: this.#stats.sent,
      sendErrors: this.#stats.sendErrors,
      peers: this.#peers.size,
      dropped: { ...this.#stats.dropped },
    };
  }

  /** The peers known now. */
  peers(): PeerInfo[] {
    return this.#peers.peers();
  }

  /** Resolves once every datagram queued so far has been handed to the socket (tests await it). */
  flushed(): Promise<void> {
    return this.#sender.flushed();
  }

  async #start(): Promise<void> {
    this.#state = 'starting';
    this.#socket.on('message', (msg, rinfo) => this.#receive(msg, rinfo));
    let bindFailed: (err: Error) => void = () => undefined;
    this.#socket.on('error', (err) => {
      if (this.#state === 'starting') bindFailed(err);
      else this.#log.error({ err, code: systemCode(err) }, 'discovery socket error');
    });
    try {
      await new Promise<void>((resolve, reject) => {
        bindFailed = reject;
        this.#socket.bind(this.#opts.port, '0.0.0.0', resolve);
      });
    } catch (err) {
      this.#state = 'stopped';
      throw bindError(this.#opts.port, err);
    }
    this.#port = this.#socket.address().port;
    // Each option is best effort: a host without multicast routes still gets broadcast, and the
    // reverse. TTL 1 keeps datagrams on the link; loopback lets two nodes on one host hear each other.
    trySocketOption(this.#log, 'setBroadcast', () => this.#socket.setBroadcast(true));
    trySocketOption(this.#log, 'setMulticastTTL', () => this.#socket.setMulticastTTL(1));
    trySocketOption(this.#log, 'setMulticastLoopback', () => this.#socket.setMulticastLoopback(true));
    this.#lan.adopt(this.#opts.interfaces ?? this.#scan(), false);
    this.#state = 'running';
    this.#stopSweep = this.#repeat(Math.max(10, Math.floor(this.#opts.deadAfterMs / 10)), () => this.#sweep());
    if (this.#opts.interfaces === null) {
      this.#stopRescan = this.#repeat(this.#opts.rescanMs, () =>
        this.#lan.adopt(this.#scan(), this.#state === 'running'),
      );
    }
    const interfaces = this.#lan.interfaces.map((i) => i.address);
    this.#log.info(
      {
        port: this.#port,
        group: this.#opts.group,
        multicast: this.#opts.multicast,
        broadcast: this.#opts.broadcast,
        interfaces,
      },
      'discovery listening',
    );
    this.#out({
      type: 'discovery.ready',
      port: this.#port,
      group: this.#opts.group,
      multicast: this.#opts.multicast,
      broadcast: this.#opts.broadcast,
      interfaces,
    });
    this.#applyAnnounce(false);
  }

  async #stop(): Promise<void> {
    if (this.#startPromise !== null) await this.#startPromise.catch(() => undefined);
    const wasAnnouncing = this.#announcing();
    this.#state = 'stopping';
    for (const stop of [this.#stopHeartbeat, this.#stopQuerying, this.#stopSweep, this.#stopRescan]) stop?.();
    this.#stopHeartbeat = this.#stopQuerying = this.#stopSweep = this.#stopRescan = null;
    this.#cancelAnswers();
    if (wasAnnouncing) this.#sendLan('bye');
    await this.#sender.flushed();
    await new Promise<void>((resolve) => {
      try {
        this.#socket.close(() => resolve());
      } catch {
        resolve(); // never bound, or closed already
      }
    });
    this.#state = 'stopped';
    this.#log.info({ stats: this.stats() }, 'discovery stopped');
    this.#out({ type: 'discovery.stopped' });
  }

  #configure(self: SelfInfo, announce: boolean): void {
    try {
      encodeDatagram(selfDatagram('announce', self, this.#seq), this.#signer);
    } catch (err) {
      this.#log.error({ err }, 'discovery.configure with a self that cannot go on the wire; ignored');
      return;
    }
    const wasAnnouncing = this.#announcing();
    const before = this.#self;
    this.#self = self;
    this.#announce = announce;
    if (this.#state !== 'running') return; // start() applies it
    if (wasAnnouncing && !announce) {
      this.#log.info('announcing stopped; bye sent');
      this.#sendLan('bye');
    }
    this.#applyAnnounce(
      wasAnnouncing && before !== null && selfChanged(before, self),
      before !== null && before.draining !== self.draining,
    );
  }

  #announcing(): boolean {
    return this.#state === 'running' && this.#announce && this.#self !== null;
  }

  /**
   * Starts or stops the heartbeat and the query loop after a change of self, announce or peers. News
   * goes out at once at most once a heartbeat interval, else with the next heartbeat: a peer that
   * changes the election view many times a second (a flood of made-up nodes) cannot make this node
   * send more than two announces an interval. Starting to drain is said at once.
   */
  #applyAnnounce(selfChanged: boolean, urgent = false): void {
    if (!this.#announcing()) {
      this.#stopHeartbeat?.();
      this.#stopHeartbeat = null;
      this.#cancelAnswers();
      this.#updateQuerying();
      return;
    }
    const now = this.#clock.now();
    const news = selfChanged && (urgent || now - this.#extraAt >= this.#opts.heartbeatMs);
    if (this.#stopHeartbeat === null || news) {
      // A new announcer, or news (role, models, leader...): tell the LAN now, then keep the cadence.
      if (this.#stopHeartbeat !== null) this.#extraAt = now;
      this.#stopHeartbeat?.();
      this.#sendLan('announce');
      this.#stopHeartbeat = this.#repeat(this.#opts.heartbeatMs, () => this.#sendLan('announce'));
    }
    this.#updateQuerying();
  }

  /** A client node that knows no server queries at once, then every queryIntervalMs until it knows one. */
  #updateQuerying(): void {
    const want = this.#announcing() && this.#self?.role === 'client' && !this.#peers.hasServer();
    if (want && this.#stopQuerying === null) {
      this.#sendLan('query');
      this.#stopQuerying = this.#repeat(this.#opts.queryIntervalMs, () => this.#sendLan('query'));
    } else if (!want && this.#stopQuerying !== null) {
      this.#stopQuerying();
      this.#stopQuerying = null;
    }
  }

  #receive(msg: Buffer, rinfo: { address: string; port: number }): void {
    if (this.#state !== 'running') return;
    this.#stats.received++;
    const now = this.#clock.now();
    if (!this.#limiter.admit(rinfo.address, now)) {
      this.#stats.dropped.rateLimited++;
      return;
    }
    const decoded = decodeDatagram(msg);
    if (!decoded.ok) {
      this.#stats.dropped[decoded.reason]++;
      if (this.#log.isLevelEnabled('debug')) {
        this.#log.debug(
          { from: { addr: rinfo.address, port: rinfo.port }, reason: decoded.reason, bytes: msg.length },
          'datagram dropped',
        );
      }
      return;
    }
    const self = this.#self;
    if (
      this.#peers.take(decoded, rinfo, now, self, this.#firstSeq) === 'query' &&
      this.#announcing() &&
      self?.role === 'server'
    ) {
      this.#scheduleAnswer(decoded.datagram.id, rinfo);
    }
  }

  #scheduleAnswer(querier: string, to: { address: string; port: number }): void {
    if (this.#pendingAnswers.has(querier) || this.#pendingAnswers.size >= MAX_PENDING_ANSWERS) return;
    const delay = Math.floor(this.#random() * this.#opts.answerJitterMs);
    const handle = this.#clock.setTimeout(() => {
      this.#pendingAnswers.delete(querier);
      if (!this.#announcing() || this.#self?.role !== 'server') return;
      this.#enqueue('announce', [{ address: to.address, port: to.port }]);
    }, delay);
    this.#pendingAnswers.set(querier, handle);
  }

  #cancelAnswers(): void {
    for (const handle of this.#pendingAnswers.values()) this.#clock.clearTimeout(handle);
    this.#pendingAnswers.clear();
  }

  #sweep(): void {
    const now = this.#clock.now();
    this.#peers.sweep(now);
    this.#limiter.prune(now);
    this.#updateQuerying();
  }

  #sendLan(kind: LanKind): void {
    this.#enqueue(kind, lanTargets(this.#opts, this.#lan.interfaces, this.#port));
  }

  /** Builds the datagram now (its seq fixes its place), sends it after everything queued before. */
  #enqueue(kind: LanKind, targets: readonly Target[]): void {
    const self = this.#self;
    if (self === null) return;
    this.#seq++;
    let buf: Buffer;
    try {
      buf = encodeDatagram(selfDatagram(kind, self, this.#seq), this.#signer);
    } catch (err) {
      this.#log.error({ err }, `cannot encode a ${kind} datagram`);
      return;
    }
    this.#sender.enqueue(buf, targets);
  }

  /** Calls fn every ms until the returned function is called. */
  #repeat(ms: number, fn: () => void): () => void {
    let cancelled = false;
    let handle: unknown;
    const tick = (): void => {
      if (cancelled) return;
      fn();
      if (!cancelled) handle = this.#clock.setTimeout(tick, ms);
    };
    handle = this.#clock.setTimeout(tick, ms);
    return () => {
      cancelled = true;
      this.#clock.clearTimeout(handle);
    };
  }
}
