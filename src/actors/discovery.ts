/**
 * The discovery actor: owns the UDP socket of the LAN protocol (DESIGN.md, "LAN protocol"), keeps
 * the table of peers heard on it and tells the supervisor when one appears, changes or goes.
 *
 * Pure logic over injected dependencies (socket, clock, random, logger, outbox), so unit tests drive
 * it with a fake socket and a fake clock; src/workers/discovery.worker.ts wires the real ones.
 */
import { decodeDatagram, encodeDatagram } from '../net/datagram.ts';
import { directedBroadcast, lanInterfaces, type LanInterface } from '../net/lan-interfaces.ts';
import { SourceRateLimiter, type RateLimit } from '../net/rate-limiter.ts';
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
}

/** Bounds on what peers can make us hold. */
const MAX_PEERS = 1_024;
const MAX_SEQ_TRACKED = 4_096;
const MAX_PENDING_ANSWERS = 64;
const CLONE_REPORT_MS = 10_000;
const LIMITED_BROADCAST = '255.255.255.255';

type State = 'idle' | 'starting' | 'running' | 'stopping' | 'stopped';

interface PeerEntry {
  info: PeerInfo;
  /** when peer.seen last went out for it */
  reportedAt: number;
  /** when a datagram (even a duplicate copy) last came from info.addr */
  addrHeardAt: number;
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

  #state: State = 'idle';
  #startPromise: Promise<void> | null = null;
  #stopPromise: Promise<void> | null = null;
  #port = 0;
  #interfaces: LanInterface[] = [];
  /** joined the group without an interface address (there was no LAN interface) */
  #joinedDefault = false;
  #self: SelfInfo | null = null;
  #announce = false;
  #seq = 0;
  readonly #peers = new Map<string, PeerEntry>();
  /** highest seq seen per `${id} ${boot}`, to drop the second copy (multicast + broadcast) of a datagram */
  readonly #lastSeq = new Map<string, { seq: number; at: number }>();
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
    dropped: { magic: 0, version: 0, malformed: 0, oversize: 0, rateLimited: 0, duplicate: 0 },
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
      encodeDatagram(this.#datagram('announce', self, true));
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
    this.#applyAnnounce(wasAnnouncing && before !== null && selfChanged(before, self));
  }

  #announcing(): boolean {
    return this.#state === 'running' && this.#announce && this.#self !== null;
  }

  /** Starts or stops the heartbeat and the query loop after a change of self, announce or peers. */
  #applyAnnounce(selfChanged: boolean): void {
    if (!this.#announcing()) {
      this.#stopHeartbeat?.();
      this.#stopHeartbeat = null;
      this.#cancelAnswers();
      this.#updateQuerying();
      return;
    }
    if (this.#stopHeartbeat === null || selfChanged) {
      // A new announcer, or news (role, models, leader...): tell the LAN now, then keep the cadence.
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
      if (d.boot !== self.boot) this.#reportClone(rinfo.address, d.boot, now);
      return; // our own, looped back
    }
    const key = `${d.id} ${d.boot}`;
    const last = this.#lastSeq.get(key);
    if (last !== undefined && d.seq <= last.seq) {
      this.#stats.dropped.duplicate++;
      const peer = this.#peers.get(d.id);
      if (peer !== undefined && peer.info.addr === rinfo.address) peer.addrHeardAt = now;
      return;
    }
    this.#lastSeq.delete(key); // re-insert: the Map's order is then least recently heard first
    this.#lastSeq.set(key, { seq: d.seq, at: now });
    if (this.#lastSeq.size > MAX_SEQ_TRACKED) this.#lastSeq.delete(this.#lastSeq.keys().next().value ?? '');

    switch (d.kind) {
      case 'bye': {
        const peer = this.#peers.get(d.id);
        // A bye from an earlier boot must not remove the process that replaced it.
        if (peer !== undefined && peer.info.boot === d.boot) this.#forget(d.id, 'bye');
        break;
      }
      case 'query':
        this.#upsert(d, rinfo.address, now);
        if (this.#announcing() && self?.role === 'server') this.#scheduleAnswer(d.id, rinfo);
        break;
      case 'announce':
        this.#upsert(d, rinfo.address, now);
        if (d.members !== undefined && d.role === 'server' && d.leader === d.id) this.#adoptMembers(d, now);
        break;
      default: {
        const never: never = d.kind;
        throw new Error(`unhandled datagram kind ${String(never)}`);
      }
    }
  }

  /** Adds or refreshes a peer from one of its own datagrams; `addr` is the datagram's source address. */
  #upsert(d: LanDatagram, addr: string, now: number): void {
    const entry = this.#peers.get(d.id);
    if (entry === undefined) {
      if (this.#peers.size >= MAX_PEERS) {
        this.#log.warn({ peer: { id: d.id, addr } }, `peer table full (${MAX_PEERS}); new peer ignored`);
        return;
      }
      const info = peerInfo(d, addr, now);
      this.#peers.set(d.id, { info, reportedAt: now, addrHeardAt: now });
      this.#log.info({ peer: { id: d.id, addr, role: d.role, port: d.port } }, 'peer seen');
      this.#out({ type: 'peer.seen', peer: info });
      if (d.role === 'server') this.#updateQuerying();
      return;
    }
    // A multi-homed peer reaches us through several paths, first copy wins: keep the address in use
    // while it is still heard, so the reported address does not flap between heartbeats.
    let useAddr = entry.info.addr;
    if (addr === useAddr) {
      entry.addrHeardAt = now;
    } else if (entry.info.boot !== d.boot || now - entry.addrHeardAt > this.#opts.deadAfterMs / 2) {
      useAddr = addr;
      entry.addrHeardAt = now;
    }
    const before = entry.info;
    entry.info = peerInfo(d, useAddr, now);
    if (peerChanged(before, entry.info) || now - entry.reportedAt >= this.#opts.refreshMs) {
      entry.reportedAt = now;
      this.#out({ type: 'peer.seen', peer: entry.info });
    }
    if (before.role !== d.role) this.#updateQuerying();
  }

  /** The leader's list of live servers: usable at once, but only until they would time out. */
  #adoptMembers(d: LanDatagram, now: number): void {
    for (const m of d.members ?? []) {
      if (m.id === this.#self?.id || this.#peers.has(m.id) || this.#peers.size >= MAX_PEERS) continue;
      const info: PeerInfo = { id: m.id, boot: '', role: 'server', addr: m.addr, port: m.port, fp: '',
        load: { inFlight: 0, workers: 0 }, models: '', term: d.term, leader: d.id, lastSeen: now };
      this.#peers.set(m.id, { info, reportedAt: now, addrHeardAt: now });
      this.#out({ type: 'peer.seen', peer: info });
    }
    this.#updateQuerying();
  }

  #forget(id: string, reason: 'bye' | 'timeout'): void {
    if (!this.#peers.delete(id)) return;
    this.#log.info({ peer: { id }, reason }, 'peer gone');
    this.#out({ type: 'peer.gone', id, reason });
    this.#updateQuerying(); // that may have been the last server a client knew
  }

  #reportClone(addr: string, boot: string, now: number): void {
    const last = this.#cloneReports.get(boot);
    if (last !== undefined && now - last < CLONE_REPORT_MS) return;
    this.#cloneReports.set(boot, now);
    this.#log.warn({ peer: { addr, boot } }, 'another process announces this node id');
    this.#out({ type: 'peer.clone', addr, boot });
  }

  #scheduleAnswer(querier: string, to: { address: string; port: number }): void {
    if (this.#pendingAnswers.has(querier) || this.#pendingAnswers.size >= MAX_PENDING_ANSWERS) return;
    const delay = Math.floor(this.#random() * this.#opts.answerJitterMs);
    const handle = this.#clock.setTimeout(() => {
      this.#pendingAnswers.delete(querier);
      if (!this.#announcing() || this.#self?.role !== 'server') return;
      this.#enqueue('announce', [{ address: to.address, port: to.port }], true);
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
    const forgetAfter = 2 * this.#opts.deadAfterMs;
    for (const [key, last] of this.#lastSeq) {
      if (now - last.at <= forgetAfter) break; // least recently heard first
      this.#lastSeq.delete(key);
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

  #datagram(kind: LanKind, self: SelfInfo, withMembers: boolean): LanDatagram {
    const d: LanDatagram = { kind, id: self.id, boot: self.boot, role: self.role, port: self.port, fp: self.fp,
      seq: this.#seq, load: self.load, models: self.models, term: self.term, leader: self.leader };
    return withMembers && self.leader === self.id ? { ...d, members: self.members } : d;
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
    this.#enqueue(kind, this.#lanTargets(), false);
  }

  /** Builds the datagram now (its seq fixes its place), sends it after everything queued before. */
  #enqueue(kind: LanKind, targets: readonly Target[], withMembers: boolean): void {
    const self = this.#self;
    if (self === null) return;
    this.#seq++;
    let buf: Buffer;
    try {
      buf = encodeDatagram(this.#datagram(kind, self, withMembers));
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

function peerInfo(d: LanDatagram, addr: string, now: number): PeerInfo {
  return { id: d.id, boot: d.boot, role: d.role, addr, port: d.port, fp: d.fp, load: d.load, models: d.models,
    term: d.term, leader: d.leader, lastSeen: now };
}

/** Anything but lastSeen and load: what makes a peer.seen worth sending before the refresh is due. */
function peerChanged(a: PeerInfo, b: PeerInfo): boolean {
  return a.boot !== b.boot || a.role !== b.role || a.addr !== b.addr || a.port !== b.port || a.fp !== b.fp
    || a.models !== b.models || a.term !== b.term || a.leader !== b.leader;
}

/** Anything but load: what makes an announce worth sending before the next heartbeat. */
function selfChanged(a: SelfInfo, b: SelfInfo): boolean {
  return a.id !== b.id || a.boot !== b.boot || a.role !== b.role || a.port !== b.port || a.fp !== b.fp
    || a.models !== b.models || a.term !== b.term || a.leader !== b.leader
    || JSON.stringify(a.members) !== JSON.stringify(b.members);
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
