/**
 * The table of peers heard on the LAN, pure logic with no socket: it takes decoded datagrams (with
 * their source address and the time), checks them against what it knows (sequence numbers, other
 * boots, signatures), and tells the supervisor when a peer appears, changes, goes or has a clone.
 */
import type { DatagramVerifier } from '../../net/datagram-auth.ts';
import type { DecodedDatagram } from '../../net/datagram.ts';
import { SourceRateLimiter } from '../../net/rate-limiter.ts';
import type { Logger } from '../../log.ts';
import type { LanDatagram, PeerInfo } from '../../protocol/lan.ts';
import type { DiscoveryStats, DiscoveryToSupervisor } from '../../protocol/messages.ts';
import { LogBudget } from '../log-budget.ts';
import { MAX_PEERS, NEW_PEER_LIMIT, type ResolvedOptions } from './options.ts';

const MAX_OTHER_BOOTS = 4;
const MAX_CLONE_REPORTS = 16;
const CLONE_REPORT_MS = 10_000;
/** Peer lifecycle lines (seen, gone) at info: this many a minute, then one summary line. */
const PEER_LOG_PER_MINUTE = 16;
const MINUTE_MS = 60_000;

/** The drop counters of discovery's stats, which the table adds to. */
export type DropCounts = { -readonly [K in keyof DiscoveryStats['dropped']]: number };

export interface PeerTableDeps {
  readonly log: Logger;
  readonly verifier: DatagramVerifier;
  readonly opts: Pick<ResolvedOptions, 'deadAfterMs' | 'heartbeatMs' | 'refreshMs'>;
  readonly dropped: DropCounts;
  readonly send: (msg: DiscoveryToSupervisor) => void;
  /** A server node may have appeared, changed role or left: whether to query is decided again. */
  readonly serversChanged: () => void;
}

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

type From = { address: string; port: number };

export class PeerTable {
  readonly #log: Logger;
  readonly #verifier: DatagramVerifier;
  readonly #opts: PeerTableDeps['opts'];
  readonly #dropped: DropCounts;
  readonly #out: (msg: DiscoveryToSupervisor) => void;
  readonly #serversChanged: () => void;
  /** admission of ids not in the table yet, for all sources together */
  readonly #newPeers = new SourceRateLimiter(NEW_PEER_LIMIT, 1);
  readonly #peers = new Map<string, PeerEntry>();
  /** peer lines (seen, gone) at info: PEER_LOG_PER_MINUTE a minute */
  readonly #peerLog: LogBudget;
  #peerLimitWarnedAt = -Infinity;
  readonly #cloneReports = new Map<string, number>();

  constructor(deps: PeerTableDeps) {
    this.#log = deps.log;
    this.#verifier = deps.verifier;
    this.#opts = deps.opts;
    this.#dropped = deps.dropped;
    this.#out = deps.send;
    this.#serversChanged = deps.serversChanged;
    this.#peerLog = new LogBudget(this.#log, 'peer lines (seen, gone)', PEER_LOG_PER_MINUTE, MINUTE_MS);
  }

  get size(): number {
    return this.#peers.size;
  }

  /** The peers known now. */
  peers(): PeerInfo[] {
    return [...this.#peers.values()].map((p) => p.info);
  }

  hasServer(): boolean {
    return [...this.#peers.values()].some((p) => p.info.role === 'server');
  }

  /**
   * Takes a well-formed datagram from `from`. `self` is this node (null before it is configured) and
   * `firstSeq` the first number this process sent. Returns 'query' when it was a query of a peer now
   * in the table (a server node answers it), else null.
   */
  take(
    decoded: DecodedDatagram,
    from: From,
    now: number,
    self: { id: string; boot: string } | null,
    firstSeq: number,
  ): 'query' | null {
    const d = decoded.datagram;
    if (self !== null && d.id === self.id) {
      if (d.boot === self.boot) return null; // our own, looped back
      // Another process with our key, if the signature holds; a replay of an earlier boot of ours
      // (numbers below our first) is not a clone.
      if (this.#verified(decoded, from, now) !== null && d.seq > firstSeq)
        this.#reportClone(d.id, from.address, d.boot, now, true);
      return null;
    }
    const entry = this.#peers.get(d.id);
    // Sequence numbers only move after a signature verified, so nothing but the peer itself can push
    // them: copies of a datagram already taken, replays, and an earlier boot's datagrams (its numbers
    // are below the later boot's) are dropped here, before any checking.
    if (entry !== undefined && d.seq <= entry.seq) {
      if (d.boot === entry.info.boot) this.#dropped.duplicate++;
      else this.#staleBoot(entry, decoded, from, now);
      return null;
    }
    const fp = this.#verified(decoded, from, now);
    if (fp === null) return null;

    switch (d.kind) {
      case 'bye':
        // A bye of the boot we know, or of a later one (it restarted and stopped): that process is gone.
        if (entry !== undefined) this.#forget(d.id, 'bye', now);
        return null;
      case 'query':
        return this.#upsert(d, fp, from.address, now) ? 'query' : null;
      case 'announce':
        this.#upsert(d, fp, from.address, now);
        return null;
      default: {
        const never: never = d.kind;
        throw new Error(`unhandled datagram kind ${String(never)}`);
      }
    }
  }

  /** Forgets peers not heard for the dead-after time, and old clone reports. */
  sweep(now: number): void {
    for (const [id, entry] of this.#peers) {
      if (now - entry.info.lastSeen > this.#opts.deadAfterMs) this.#forget(id, 'timeout', now);
    }
    for (const [boot, at] of this.#cloneReports) {
      if (now - at >= CLONE_REPORT_MS) this.#cloneReports.delete(boot);
    }
  }

  /**
   * A datagram of another boot of a known peer, numbered below the boot in use: an earlier process
   * (a replay, or one that restarted) is never taken as the peer again. But when that boot, verified,
   * sends a number above the last one heard from it within the dead-after time, it is alive next to
   * the boot in use: two processes share the id (a cloned identity), reported as a conflict. A replay
   * has only numbers already heard, and nobody else can sign new ones.
   */
  #staleBoot(entry: PeerEntry, decoded: DecodedDatagram, from: From, now: number): void {
    const d = decoded.datagram;
    const other = entry.otherBoots.get(d.boot);
    if (other !== undefined && d.seq <= other.seq) {
      this.#dropped.stale++;
      return;
    }
    if (this.#verified(decoded, from, now) === null) return;
    this.#dropped.stale++;
    this.#rememberBoot(entry, d.boot, d.seq, now);
    if (other !== undefined && now - other.at <= this.#opts.deadAfterMs)
      this.#reportClone(d.id, from.address, d.boot, now, false);
  }

  #rememberBoot(entry: PeerEntry, boot: string, seq: number, now: number): void {
    entry.otherBoots.delete(boot);
    entry.otherBoots.set(boot, { seq, at: now });
    if (entry.otherBoots.size > MAX_OTHER_BOOTS) entry.otherBoots.delete(entry.otherBoots.keys().next().value ?? '');
  }

  /** The certificate fingerprint when the datagram is its claimed sender's; null (counted) otherwise. */
  #verified(decoded: DecodedDatagram, from: From, now: number): string | null {
    const result = this.#verifier.verify(decoded, now);
    if (result.ok) return result.fp;
    this.#dropped[result.reason]++;
    if (this.#log.isLevelEnabled('debug')) {
      this.#log.debug(
        { from: { addr: from.address, port: from.port }, reason: result.reason, peer: { id: decoded.datagram.id } },
        'datagram dropped',
      );
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
        this.#dropped.peerLimit++;
        if (now - this.#peerLimitWarnedAt >= MINUTE_MS) {
          this.#peerLimitWarnedAt = now;
          this.#log.warn(
            { peers: this.#peers.size, max: MAX_PEERS, perSecond: NEW_PEER_LIMIT.perSecond },
            `more new nodes on the LAN than discovery takes (${MAX_PEERS} in all, ${NEW_PEER_LIMIT.perSecond} new a second); ` +
              'the rest are ignored until known ones leave (a flood of made-up nodes?); counted as dropped.peerLimit in status',
          );
        }
        return false;
      }
      const info = peerInfo(d, fp, addr, now);
      this.#peers.set(d.id, {
        info,
        seq: d.seq,
        otherBoots: new Map(),
        reportedAt: now,
        reported: info,
        addrFreshAt: now,
      });
      this.#peerLog.line('info', { peer: { id: d.id, addr, role: d.role, port: d.port } }, 'peer seen', now);
      this.#out({ type: 'peer.seen', peer: info });
      if (d.role === 'server') this.#serversChanged();
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
    if (
      identityChanged(entry.reported, entry.info) ||
      (peerChanged(entry.reported, entry.info) && since >= this.#opts.heartbeatMs / 2) ||
      since >= this.#opts.refreshMs
    ) {
      entry.reportedAt = now;
      entry.reported = entry.info;
      this.#out({ type: 'peer.seen', peer: entry.info });
    }
    if (before.role !== d.role) this.#serversChanged();
    return true;
  }

  #forget(id: string, reason: 'bye' | 'timeout', now: number): void {
    if (!this.#peers.delete(id)) return;
    this.#peerLog.line('info', { peer: { id }, reason }, 'peer gone', now);
    this.#out({ type: 'peer.gone', id, reason });
    this.#serversChanged(); // that may have been the last server a client knew
  }

  /** `self`: the id is this node's own. */
  #reportClone(id: string, addr: string, boot: string, now: number, self: boolean): void {
    const last = this.#cloneReports.get(boot);
    if (last !== undefined && now - last < CLONE_REPORT_MS) return;
    if (last === undefined && this.#cloneReports.size >= MAX_CLONE_REPORTS) return;
    this.#cloneReports.set(boot, now);
    this.#log.warn(
      { peer: { id, addr, boot } },
      self ? 'another process announces this node id' : 'two processes announce one node id',
    );
    this.#out({ type: 'peer.clone', id, addr, boot });
  }
}

function peerInfo(d: LanDatagram, fp: string, addr: string, now: number): PeerInfo {
  return {
    id: d.id,
    boot: d.boot,
    role: d.role,
    addr,
    port: d.port,
    fp,
    load: d.load,
    models: d.models,
    term: d.term,
    leader: d.leader,
    draining: d.draining,
    lastSeen: now,
  };
}

/** Where a peer is and what it is: a change goes to the supervisor at once. */
function identityChanged(a: PeerInfo, b: PeerInfo): boolean {
  return (
    a.boot !== b.boot ||
    a.role !== b.role ||
    a.addr !== b.addr ||
    a.port !== b.port ||
    a.fp !== b.fp ||
    a.draining !== b.draining
  );
}

/** Anything but lastSeen and load: what makes a peer.seen worth sending before the refresh is due. */
function peerChanged(a: PeerInfo, b: PeerInfo): boolean {
  return (
    a.boot !== b.boot ||
    a.role !== b.role ||
    a.addr !== b.addr ||
    a.port !== b.port ||
    a.fp !== b.fp ||
    a.models !== b.models ||
    a.term !== b.term ||
    a.leader !== b.leader ||
    a.draining !== b.draining
  );
}
