/**
 * The discovery actor: owns the UDP socket of the LAN protocol (DESIGN.md, "LAN protocol"), keeps
 * the table of peers heard on it and tells the supervisor when one appears, changes or goes.
 *
 * Pure logic over injected dependencies (socket, clock, random, logger, outbox), so unit tests drive
 * it with a fake socket and a fake clock; src/workers/discovery.worker.ts wires the real ones.
 */
import { DatagramVerifier } from '../net/datagram-auth.ts';
import { decodeDatagram, encodeDatagram, type DatagramSigner, type DecodedDatagram } from '../net/datagram.ts';
import { directedBroadcast, lanInterfaces, type LanInterface } from '../net/lan-interfaces.ts';
import { SourceRateLimiter, type RateLimit } from '../net/rate-limiter.ts';
import { LogBudget } from './log-budget.ts';
import { OllanaError, errorMessage, systemCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import { DEFAULT_DISCOVERY_PORT, DEFAULT_GROUP, type LanDatagram, type LanKind, type PeerInfo } from '../protocol/lan.ts';
import type { DiscoveryStats, DiscoveryToSupervisor, SelfInfo, SupervisorToDiscovery } from '../protocol/messages.ts';

/** Settings of the discovery actor; the optional ones default as in DISCOVERY_DEFAULTS. */
export interface DiscoveryOptions {
  /** UDP port shared by every node (bound with SO_REUSEADDR); 0 = any free port (tests) */
  readonly port: number;
  /** IPv4 multicast group */
  readonly group: string;
  /** send to the multicast group */
  readonly multicast: boolean;
  /** send to each interface's directed broadcast address (the fallback for networks that drop multicast) */
  readonly broadcast: boolean;
  readonly heartbeatMs: number;
  /** a peer not heard for this long is gone */
  readonly deadAfterMs: number;
  /** how often a client node that knows no server queries again */
  readonly queryIntervalMs: number;
  /** a server answers a query after a random delay in [0, answerJitterMs), so answers do not collide */
  readonly answerJitterMs: number;
  /** per source address */
  readonly rateLimit: RateLimit;
  /** with broadcast, also send to 255.255.255.255 (routed by the OS: the default route's interface) */
  readonly limitedBroadcast?: boolean;
  /** a live peer is reported again (peer.seen) at least this often, so its load figures stay fresh */
  readonly refreshMs?: number;
  /** null: every non-internal IPv4 interface, rescanned every rescanMs; a list: exactly these (tests) */
  readonly interfaces?: readonly LanInterface[] | null;
  readonly rescanMs?: number;
}

type ResolvedOptions = Required<DiscoveryOptions>;

export const DISCOVERY_DEFAULTS: ResolvedOptions = Object.freeze({
  port: DEFAULT_DISCOVERY_PORT,
  group: DEFAULT_GROUP,
  multicast: true,
  broadcast: true,
  limitedBroadcast: true,
  heartbeatMs: 1_000,
  deadAfterMs: 3_500,
  queryIntervalMs: 1_000,
  answerJitterMs: 200,
  refreshMs: 5_000,
  // Legitimate traffic from one address is a few datagrams a second (each heartbeat arrives once per
  // path: multicast, directed and limited broadcast); several nodes may share one address.
  rateLimit: Object.freeze({ perSecond: 100, burst: 200 }),
  interfaces: null,
  rescanMs: 5_000,
});

/** The subset of node:dgram's Socket that discovery uses; a dgram.Socket satisfies it. */
export interface DatagramSocketLike {
  bind(port: number, address: string, callback: () => void): unknown;
  on(event: 'message', listener: (msg: Buffer, rinfo: { address: string; port: number }) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  address(): { address: string; port: number };
  addMembership(group: string, iface?: string): void;
  dropMembership(group: string, iface?: string): void;
  setBroadcast(flag: boolean): void;
  setMulticastTTL(ttl: number): unknown;
  setMulticastLoopback(flag: boolean): unknown;
  setMulticastInterface(iface: string): void;
  send(msg: Uint8Array, port: number, address: string, callback: (err: Error | null) => void): void;
  close(callback?: () => void): unknown;
}

export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

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

/**
 * Bounds on what peers can make us hold and do. A LAN of a few hundred ollana nodes stays inside
 * them; a flood of made-up nodes (each with a key of its own, so each verifies) fills the table at
 * NEW_PEER_LIMIT a second until MAX_PEERS, and never further.
 */
export const MAX_PEERS = 256;
export const NEW_PEER_LIMIT: RateLimit = Object.freeze({ perSecond: 20, burst: 64 });
const MAX_PENDING_ANSWERS = 64;
const MAX_OTHER_BOOTS = 4;
const MAX_CLONE_REPORTS = 16;
const CLONE_REPORT_MS = 10_000;
/** Peer lifecycle lines (seen, gone) at info: this many a minute, then one summary line. */
const PEER_LOG_PER_MINUTE = 16;
const MINUTE_MS = 60_000;
const LIMITED_BROADCAST = '255.255.255.255';

type State = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped';

interface PeerEntry {
  info: PeerInfo;
  /** highest seq verified from info.boot: copies and replays at or below it are dropped unchecked */
  seq: number;
  /**
   * Other boots of this id (an earlier one it replaced, or one heard only with numbers below
   * info.boot's), with the highest seq verified from each and when: at most MAX_OTHER_BOOTS.
   */
  otherBoots: Map<string, { seq: number; at: number }>;
  /** when peer.seen last went out for it, and what it said */
  reportedAt: number;
  reported: PeerInfo;
  /** when info.addr last delivered the first copy of a datagram (duplicates do not count: a replay is one) */
  addrFreshAt: number;
}

interface Target {
  readonly address: string;
  readonly port: number;
  /** multicast: the interface to send through */
  readonly via?: string;
}

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
  readonly #verifier: DatagramVerifier;
  /** admission of ids not in the table yet, for all sources together */
  readonly #newPeers: SourceRateLimiter;
  /** the first seq this process sends: a datagram with our id, another boot and a seq above it is from a live clone */
  readonly #firstSeq: number;

  #state: State = 'idle';
  #startPromise: Promise<void> | null = null;
  #stopPromise: Promise<void> | null = null;
  #port = 0;
  #interfaces: LanInterface[] = [];
  /** joined the group without an interface address (there was no LAN interface) */
  #joinedDefault = false;
  #self: SelfInfo | null = null;
  #announce = false;
  #seq: number;
  /** when an announce last went out ahead of the heartbeat (news), to allow one such a heartbeat interval */
  #extraAt = -Infinity;
  readonly #peers = new Map<string, PeerEntry>();
  /** peer lines (seen, gone) at info: PEER_LOG_PER_MINUTE a minute */
  readonly #peerLog: LogBudget;
  #peerLimitWarnedAt = -Infinity;
  readonly #cloneReports = new Map<string, number>();
  readonly #pendingAnswers = new Map<string, unknown>();
  readonly #failingTargets = new Set<string>();
  #stopHeartbeat: (() => void) | null = null;
  #stopQuerying: (() => void) | null = null;
  #stopSweep: (() => void) | null = null;
  #stopRescan: (() => void) | null = null;
  /** sends run one after another: setMulticastInterface applies to the next send only once it ran */
  #sendChain: Promise<void> = Promise.resolve();
  readonly #stats = {
    received: 0, sent: 0, sendErrors: 0,
    dropped: { magic: 0, version: 0, malformed: 0, oversize: 0, rateLimited: 0, duplicate: 0,
      forged: 0, verifyLimited: 0, stale: 0, peerLimit: 0 },
  };

  constructor(deps: DiscoveryDeps) {
    this.#socket = deps.socket;
    this.#clock = deps.clock;
    this.#random = deps.random;
    this.#log = deps.log;
    this.#out = deps.send;
    // An option given as undefined keeps its default (a plain spread would overwrite it).
    const given = Object.fromEntries(Object.entries(deps.options ?? {}).filter(([, v]) => v !== undefined));
    this.#opts = checkOptions({ ...DISCOVERY_DEFAULTS, ...given });
    this.#scan = deps.scanInterfaces ?? lanInterfaces;
    this.#limiter = new SourceRateLimiter(this.#opts.rateLimit);
    this.#signer = deps.signer;
    this.#verifier = deps.verifier ?? new DatagramVerifier();
    this.#newPeers = new SourceRateLimiter(NEW_PEER_LIMIT, 1);
    // Starting at the clock makes every boot (and a restarted discovery thread) continue above the
    // numbers an earlier one sent, so receivers never take its datagrams for old copies.
    this.#seq = Math.max(0, Math.floor(this.#clock.now()));
    this.#firstSeq = this.#seq;
    this.#peerLog = new LogBudget(this.#log, 'peer lines (seen, gone)', PEER_LOG_PER_MINUTE, MINUTE_MS);
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
      case 'discovery.configure': this.#configure(msg.self, msg.announce); break;
      case 'discovery.stop': void this.stop(); break;
      case 'discovery.stats.request': this.#out({ type: 'discovery.stats.report', id: msg.id, stats: this.stats() }); break;
      default: {
        const never: never = msg;
        throw new Error(`unhandled message ${JSON.stringify(never)}`);
      }
    }
  }

  stats(): DiscoveryStats {
    return { received: this.#stats.received, sent: this.#stats.sent, sendErrors: this.#stats.sendErrors,
      peers: this.#peers.size, dropped: { ...this.#stats.dropped } };
  }

  /** The peers known now. */
  peers(): PeerInfo[] {
    return [...this.#peers.values()].map((p) => p.info);
  }

  /** Resolves once every datagram queued so far has been handed to the socket (tests await it). */
  flushed(): Promise<void> {
    return this.#sendChain;
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
    this.#try('setBroadcast', () => this.#socket.setBroadcast(true));
    this.#try('setMulticastTTL', () => this.#socket.setMulticastTTL(1));
    this.#try('setMulticastLoopback', () => this.#socket.setMulticastLoopback(true));
    this.#interfaces = [];
    this.#adoptInterfaces(this.#opts.interfaces ?? this.#scan());
    this.#state = 'running';
    this.#stopSweep = this.#repeat(Math.max(10, Math.floor(this.#opts.deadAfterMs / 10)), () => this.#sweep());
    if (this.#opts.interfaces === null) {
      this.#stopRescan = this.#repeat(this.#opts.rescanMs, () => this.#adoptInterfaces(this.#scan()));
    }
    const interfaces = this.#interfaces.map((i) => i.address);
    this.#log.info({ port: this.#port, group: this.#opts.group, multicast: this.#opts.multicast,
      broadcast: this.#opts.broadcast, interfaces }, 'discovery listening');
    this.#out({ type: 'discovery.ready', port: this.#port, group: this.#opts.group, multicast: this.#opts.multicast,
      broadcast: this.#opts.broadcast, interfaces });
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
    await this.#sendChain;
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
      encodeDatagram(this.#datagram('announce', self), this.#signer);
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
    this.#applyAnnounce(wasAnnouncing && before !== null && selfChanged(before, self),
      before !== null && before.draining !== self.draining);
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
    const want = this.#announcing() && this.#self?.role === 'client'
      && ![...this.#peers.values()].some((p) => p.info.role === 'server');
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
        this.#log.debug({ from: { addr: rinfo.address, port: rinfo.port }, reason: decoded.reason, bytes: msg.length },
          'datagram dropped');
      }
      return;
    }
    const d = decoded.datagram;
    const self = this.#self;
    if (self !== null && d.id === self.id) {
      if (d.boot === self.boot) return; // our own, looped back
      // Another process with our key, if the signature holds; a replay of an earlier boot of ours
      // (numbers below our first) is not a clone.
      if (this.#verified(decoded, rinfo, now) !== null && d.seq > this.#firstSeq) this.#reportClone(d.id, rinfo.address, d.boot, now);
      return;
    }
    const entry = this.#peers.get(d.id);
    // Sequence numbers only move after a signature verified, so nothing but the peer itself can push
    // them: copies of a datagram already taken, replays, and an earlier boot's datagrams (its numbers
    // are below the later boot's) are dropped here, before any checking.
    if (entry !== undefined && d.seq <= entry.seq) {
      if (d.boot === entry.info.boot) this.#stats.dropped.duplicate++;
      else this.#staleBoot(entry, decoded, rinfo, now);
      return;
    }
    const fp = this.#verified(decoded, rinfo, now);
    if (fp === null) return;

    switch (d.kind) {
      case 'bye':
        // A bye of the boot we know, or of a later one (it restarted and stopped): that process is gone.
        if (entry !== undefined) this.#forget(d.id, 'bye');
        break;
      case 'query':
        if (!this.#upsert(d, fp, rinfo.address, now)) break;
        if (this.#announcing() && self?.role === 'server') this.#scheduleAnswer(d.id, rinfo);
        break;
      case 'announce':
        this.#upsert(d, fp, rinfo.address, now);
        break;
      default: {
        const never: never = d.kind;
        throw new Error(`unhandled datagram kind ${String(never)}`);
      }
    }
  }

  /**
   * A datagram of another boot of a known peer, numbered below the boot in use: an earlier process
   * (a replay, or one that restarted) is never taken as the peer again. But when that boot, verified,
   * sends a number above the last one heard from it within the dead-after time, it is alive next to
   * the boot in use: two processes share the id (a cloned identity), reported as a conflict. A replay
   * has only numbers already heard, and nobody else can sign new ones.
   */
  #staleBoot(entry: PeerEntry, decoded: DecodedDatagram, rinfo: { address: string; port: number }, now: number): void {
    const d = decoded.datagram;
    const other = entry.otherBoots.get(d.boot);
    if (other !== undefined && d.seq <= other.seq) {
      this.#stats.dropped.stale++;
      return;
    }
    if (this.#verified(decoded, rinfo, now) === null) return;
    this.#stats.dropped.stale++;
    this.#rememberBoot(entry, d.boot, d.seq, now);
    if (other !== undefined && now - other.at <= this.#opts.deadAfterMs) this.#reportClone(d.id, rinfo.address, d.boot, now);
  }

  #rememberBoot(entry: PeerEntry, boot: string, seq: number, now: number): void {
    entry.otherBoots.delete(boot);
    entry.otherBoots.set(boot, { seq, at: now });
    if (entry.otherBoots.size > MAX_OTHER_BOOTS) entry.otherBoots.delete(entry.otherBoots.keys().next().value ?? '');
  }

  /** The certificate fingerprint when the datagram is its claimed sender's; null (counted) otherwise. */
  #verified(decoded: DecodedDatagram, rinfo: { address: string; port: number }, now: number): string | null {
    const result = this.#verifier.verify(decoded, now);
    if (result.ok) return result.fp;
    this.#stats.dropped[result.reason]++;
    if (this.#log.isLevelEnabled('debug')) {
      this.#log.debug({ from: { addr: rinfo.address, port: rinfo.port }, reason: result.reason, peer: { id: decoded.datagram.id } },
        'datagram dropped');
    }
    return null;
  }

  /**
   * Adds or refreshes a peer from one of its own (verified) datagrams; `addr` is the datagram's
   * source address. False when a new peer was not admitted.
   */
  #upsert(d: LanDatagram, fp: string, addr: string, now: number): boolean {
    const entry = this.#peers.get(d.id);
    if (entry === undefined) {
      if (this.#peers.size >= MAX_PEERS || !this.#newPeers.admit('all', now)) {
        this.#stats.dropped.peerLimit++;
        if (now - this.#peerLimitWarnedAt >= MINUTE_MS) {
          this.#peerLimitWarnedAt = now;
          this.#log.warn({ peers: this.#peers.size, max: MAX_PEERS, perSecond: NEW_PEER_LIMIT.perSecond },
            `more new nodes on the LAN than discovery takes (${MAX_PEERS} in all, ${NEW_PEER_LIMIT.perSecond} new a second); ` +
            'the rest are ignored until known ones leave (a flood of made-up nodes?); counted as dropped.peerLimit in status');
        }
        return false;
      }
      const info = peerInfo(d, fp, addr, now);
      this.#peers.set(d.id, { info, seq: d.seq, otherBoots: new Map(), reportedAt: now, reported: info, addrFreshAt: now });
      this.#peerLog.line('info', { peer: { id: d.id, addr, role: d.role, port: d.port } }, 'peer seen', now);
      this.#out({ type: 'peer.seen', peer: info });
      if (d.role === 'server') this.#updateQuerying();
      return true;
    }
    if (entry.info.boot !== d.boot) {
      entry.otherBoots.delete(d.boot);
      this.#rememberBoot(entry, entry.info.boot, entry.seq, now);
    }
    entry.seq = d.seq;
    // A multi-homed peer reaches us through several paths, first copy wins: keep the address in use
    // while it still delivers first copies, so the reported address does not flap between heartbeats.
    // Only a new boot, or an address in use that stopped delivering, moves it: someone who replays the
    // peer's datagrams from elsewhere would have to beat the peer itself, again and again.
    let useAddr = entry.info.addr;
    if (addr === useAddr) {
      entry.addrFreshAt = now;
    } else if (entry.info.boot !== d.boot || now - entry.addrFreshAt > this.#opts.deadAfterMs / 2) {
      useAddr = addr;
      entry.addrFreshAt = now;
    }
    const before = entry.info;
    entry.info = peerInfo(d, fp, useAddr, now);
    // Where it is and what it is go out at once; other news (models, term, leader) at most every
    // half heartbeat, so a peer that changes them in every datagram (a flood of made-up nodes) does
    // not become a message to the supervisor and the election per datagram.
    const since = now - entry.reportedAt;
    if (identityChanged(entry.reported, entry.info) || (peerChanged(entry.reported, entry.info) && since >= this.#opts.heartbeatMs / 2)
      || since >= this.#opts.refreshMs) {
      entry.reportedAt = now;
      entry.reported = entry.info;
      this.#out({ type: 'peer.seen', peer: entry.info });
    }
    if (before.role !== d.role) this.#updateQuerying();
    return true;
  }

  #forget(id: string, reason: 'bye' | 'timeout'): void {
    if (!this.#peers.delete(id)) return;
    this.#peerLog.line('info', { peer: { id }, reason }, 'peer gone', this.#clock.now());
    this.#out({ type: 'peer.gone', id, reason });
    this.#updateQuerying(); // that may have been the last server a client knew
  }

  #reportClone(id: string, addr: string, boot: string, now: number): void {
    const last = this.#cloneReports.get(boot);
    if (last !== undefined && now - last < CLONE_REPORT_MS) return;
    if (last === undefined && this.#cloneReports.size >= MAX_CLONE_REPORTS) return;
    this.#cloneReports.set(boot, now);
    this.#log.warn({ peer: { id, addr, boot } }, id === this.#self?.id ? 'another process announces this node id'
      : 'two processes announce one node id');
    this.#out({ type: 'peer.clone', id, addr, boot });
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
    for (const [id, entry] of this.#peers) {
      if (now - entry.info.lastSeen > this.#opts.deadAfterMs) this.#forget(id, 'timeout');
    }
    for (const [boot, at] of this.#cloneReports) {
      if (now - at >= CLONE_REPORT_MS) this.#cloneReports.delete(boot);
    }
    this.#limiter.prune(now);
    this.#updateQuerying();
  }

  /** Joins the group on interfaces new to us; forgets vanished ones. */
  #adoptInterfaces(next: readonly LanInterface[]): void {
    const known = this.#interfaces;
    const added = next.filter((n) => !known.some((k) => k.address === n.address));
    const removed = known.filter((k) => !next.some((n) => n.address === k.address));
    if (next.length === 0 && !this.#joinedDefault) {
      // No LAN interface (yet): let the kernel pick one by route; rescans join real ones later.
      this.#joinedDefault = true;
      this.#try('addMembership', () => this.#socket.addMembership(this.#opts.group));
    }
    if (added.length === 0 && removed.length === 0) return;
    // An interface whose link is down drops out of os.networkInterfaces() while keeping its address,
    // and the kernel keeps its group membership: leaving the group here would deafen this node to
    // multicast after the cable is back, until a later rescan. So vanished interfaces only stop being
    // sent to; the kernel drops the membership itself when the address really goes. Re-joining one
    // that returns then answers EADDRINUSE, which means "already a member".
    for (const iface of added) this.#try('addMembership', () => this.#socket.addMembership(this.#opts.group, iface.address), 'EADDRINUSE');
    if (this.#state === 'running') this.#log.info({ interfaces: next.map((i) => i.address) }, 'discovery interfaces changed');
    this.#interfaces = [...next];
  }

  #try(what: string, fn: () => unknown, harmless?: string): void {
    try {
      fn();
    } catch (err) {
      if (harmless !== undefined && systemCode(err) === harmless) return;
      this.#log.warn({ err, code: systemCode(err) }, `discovery ${what} failed (${systemCode(err) ?? errorMessage(err)})`);
    }
  }

  #datagram(kind: LanKind, self: SelfInfo): LanDatagram {
    return { kind, id: self.id, boot: self.boot, role: self.role, port: self.port, seq: this.#seq, load: self.load,
      models: self.models, term: self.term, leader: self.leader, draining: self.draining };
  }

  /** "To the LAN": the group through each interface, and each broadcast address. */
  #lanTargets(): Target[] {
    const { group, port } = { group: this.#opts.group, port: this.#port };
    const targets: Target[] = [];
    if (this.#opts.multicast) {
      if (this.#interfaces.length === 0) targets.push({ address: group, port });
      for (const iface of this.#interfaces) targets.push({ address: group, port, via: iface.address });
    }
    if (this.#opts.broadcast) {
      for (const iface of this.#interfaces) {
        const address = directedBroadcast(iface);
        if (address !== null && !targets.some((t) => t.address === address)) targets.push({ address, port });
      }
      if (this.#opts.limitedBroadcast) targets.push({ address: LIMITED_BROADCAST, port });
    }
    return targets;
  }

  #sendLan(kind: LanKind): void {
    this.#enqueue(kind, this.#lanTargets());
  }

  /** Builds the datagram now (its seq fixes its place), sends it after everything queued before. */
  #enqueue(kind: LanKind, targets: readonly Target[]): void {
    const self = this.#self;
    if (self === null) return;
    this.#seq++;
    let buf: Buffer;
    try {
      buf = encodeDatagram(this.#datagram(kind, self), this.#signer);
    } catch (err) {
      this.#log.error({ err }, `cannot encode a ${kind} datagram`);
      return;
    }
    // #sendAll does not throw; the catch is what keeps one surprise from stopping every later send.
    this.#sendChain = this.#sendChain.then(() => this.#sendAll(buf, targets))
      .catch((err: unknown) => this.#log.error({ err }, 'discovery send failed unexpectedly'));
  }

  async #sendAll(buf: Buffer, targets: readonly Target[]): Promise<void> {
    for (const target of targets) {
      const name = target.via === undefined ? target.address : `${target.address} via ${target.via}`;
      const err = await new Promise<unknown>((resolve) => {
        try {
          if (target.via !== undefined) this.#socket.setMulticastInterface(target.via);
          this.#socket.send(buf, target.port, target.address, resolve);
        } catch (thrown) {
          resolve(thrown);
        }
      });
      if (err === null || err === undefined) {
        this.#stats.sent++;
        if (this.#failingTargets.delete(name)) this.#log.info({ target: name }, 'discovery sends again');
        continue;
      }
      // ENETUNREACH (no route), ENODEV, EPERM (a firewall drops it), EADDRNOTAVAIL (address gone):
      // counted, said once per target, never thrown.
      this.#stats.sendErrors++;
      const fields = { target: name, code: systemCode(err), err: errorMessage(err) };
      if (this.#failingTargets.has(name)) this.#log.debug(fields, 'discovery send failed');
      else {
        this.#failingTargets.add(name);
        this.#log.warn(fields, 'discovery send failed');
      }
    }
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

function peerInfo(d: LanDatagram, fp: string, addr: string, now: number): PeerInfo {
  return { id: d.id, boot: d.boot, role: d.role, addr, port: d.port, fp, load: d.load, models: d.models,
    term: d.term, leader: d.leader, draining: d.draining, lastSeen: now };
}

/** Where a peer is and what it is: a change goes to the supervisor at once. */
function identityChanged(a: PeerInfo, b: PeerInfo): boolean {
  return a.boot !== b.boot || a.role !== b.role || a.addr !== b.addr || a.port !== b.port || a.fp !== b.fp || a.draining !== b.draining;
}

/** Anything but lastSeen and load: what makes a peer.seen worth sending before the refresh is due. */
function peerChanged(a: PeerInfo, b: PeerInfo): boolean {
  return a.boot !== b.boot || a.role !== b.role || a.addr !== b.addr || a.port !== b.port || a.fp !== b.fp
    || a.models !== b.models || a.term !== b.term || a.leader !== b.leader || a.draining !== b.draining;
}

/** Anything but load: what makes an announce worth sending before the next heartbeat. */
function selfChanged(a: SelfInfo, b: SelfInfo): boolean {
  return a.id !== b.id || a.boot !== b.boot || a.role !== b.role || a.port !== b.port || a.fp !== b.fp
    || a.models !== b.models || a.term !== b.term || a.leader !== b.leader || a.draining !== b.draining;
}

function bindError(port: number, err: unknown): OllanaError {
  const code = systemCode(err);
  const what = code === 'EADDRINUSE' ? 'is in use by a program that does not share it'
    : code === 'EACCES' ? 'needs privileges this user lacks' : `cannot be bound (${errorMessage(err)})`;
  return new OllanaError(code === 'EADDRINUSE' ? 'OLN_PORT_IN_USE' : code === 'EACCES' ? 'OLN_PORT_DENIED' : 'OLN_INTERNAL',
    `discovery UDP port 0.0.0.0:${port} ${what}; choose another with --discovery-port (every node of the LAN must use the same one)`,
    { cause: err, details: { port, code: code ?? null } });
}

function checkOptions(o: ResolvedOptions): ResolvedOptions {
  const positive = ['heartbeatMs', 'deadAfterMs', 'queryIntervalMs', 'refreshMs', 'rescanMs'] as const;
  for (const key of positive) {
    if (!(o[key] > 0)) throw new RangeError(`discovery option ${key} must be > 0, got ${o[key]}`);
  }
  if (!(o.answerJitterMs >= 0)) throw new RangeError(`discovery option answerJitterMs must be >= 0, got ${o.answerJitterMs}`);
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65_535) throw new RangeError(`discovery port must be 0..65535, got ${o.port}`);
  if (!(o.rateLimit.perSecond > 0) || !(o.rateLimit.burst >= 1)) {
    throw new RangeError('discovery rateLimit needs perSecond > 0 and burst >= 1');
  }
  return o;
}
