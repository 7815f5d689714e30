/**
 * The peers discovery reports, as the supervisor keeps them: every live server node (whatever this
 * node's role: the leader lists them, and they become a new client node's upstreams at once) and the
 * client nodes; which server nodes a client node uses (the trusted ones, into the cluster view); and
 * the trust notices: a server node found but not allowed, a device refused, a server that refuses
 * this one, each logged once, with a budget a minute against floods of made-up nodes.
 */
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { NodeRole, PeerInfo } from '../protocol/lan.ts';
import type { MessageOf } from '../protocol/messages.ts';
import type { ClusterView } from './cluster.ts';
import type { TrustStore } from './trust-store.ts';

/** Server nodes remembered as told about at most. */
export const MAX_TOLD = 256;
/** "Found, not used" lines a minute at most (a flood of made-up server nodes). */
export const TOLD_PER_MINUTE = 8;

/** What the book needs of the trust store and of the cluster view. */
export type TrustBook = Pick<TrustStore, 'trusts' | 'isDisabled' | 'notePending'>;
export type ClusterBook = Pick<ClusterView, 'seen' | 'gone'>;

export type TrustRefused = MessageOf<'trust.refused'>;

export class PeerBook {
  readonly #id: string;
  readonly #trust: TrustBook;
  readonly #cluster: ClusterBook;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #clientPeers = new Map<string, PeerInfo>();
  /** Every live server node discovery reports, whatever this node's role (the leader lists them). */
  readonly #serverPeers = new Map<string, PeerInfo>();
  /**
   * Server nodes already told about (not allowed yet / refusing this device): one log line each, at
   * most TOLD_PER_MINUTE a minute (a flood of made-up server nodes), and at most MAX_TOLD remembered.
   */
  readonly #told = new Set<string>();
  #toldWindow = { at: 0, count: 0, skipped: 0 };

  /** `id` is this node's device id, which a refusing server must be told to allow. */
  constructor(id: string, trust: TrustBook, cluster: ClusterBook, clock: Clock, log: Logger) {
    this.#id = id;
    this.#trust = trust;
    this.#cluster = cluster;
    this.#clock = clock;
    this.#log = log;
  }

  get servers(): Iterable<PeerInfo> {
    return this.#serverPeers.values();
  }

  get clients(): Iterable<PeerInfo> {
    return this.#clientPeers.values();
  }

  /** Discovery's peer.seen; a client node uses a server node it trusts. */
  seen(peer: PeerInfo, role: NodeRole): void {
    if (peer.role === 'server') {
      this.#serverPeers.set(peer.id, peer);
      if (role === 'client') this.useServer(peer);
    } else {
      this.#clientPeers.set(peer.id, peer);
    }
  }

  /** Discovery's peer.gone. */
  gone(id: string, reason: 'bye' | 'timeout'): void {
    this.#serverPeers.delete(id);
    this.#cluster.gone(id, reason);
    this.#clientPeers.delete(id);
  }

  /**
   * A client node uses a server node only if it trusts its device id; otherwise it logs, once, the
   * command that allows it, and lists it under `ollana device pending`.
   */
  useServer(peer: PeerInfo): void {
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
      this.#log.info(
        { peer: { id: peer.id, addr: peer.addr, port: peer.port } },
        `server node ${peer.id} found at ${peer.addr}:${peer.port}, not used: ${why}; to use it run: ollana device allow ${peer.id}`,
      );
    });
  }

  /** The allow list changed: a client node uses the server nodes it now trusts, and drops the others. */
  trustChanged(role: NodeRole): void {
    if (role !== 'client') return;
    for (const peer of this.#serverPeers.values()) {
      if (this.#trust.trusts(peer.id)) this.#cluster.seen(peer);
      else this.#cluster.gone(peer.id, 'no longer allowed');
    }
  }

  /** Whether one more "found / refused" line fits this minute's budget; sums up what did not. */
  #mayTell(): boolean {
    const now = this.#clock.now();
    const w = this.#toldWindow;
    if (now - w.at >= 60_000) {
      if (w.skipped > 0) {
        this.#log.info(
          { skipped: w.skipped },
          `${w.skipped} more server nodes this device does not use were heard in the last minute ` +
            '(not logged, not listed as pending); `ollana status` lists the peers',
        );
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

  /** A server node's worker turned a device away after the handshake. */
  refused(m: TrustRefused): void {
    if (m.verdict === 'bad-handshake') {
      this.#log.info(
        { addr: m.addr, reason: m.name },
        `refused a connection from ${m.addr}: TLS handshake failed (${m.name}); plain HTTP to the TLS port, or not an ollana node`,
      );
      return;
    }
    if (m.verdict === 'no-certificate') {
      this.#log.info(
        { addr: m.addr },
        `refused a connection from ${m.addr} without a device certificate (not an ollana node)`,
      );
      return;
    }
    this.#trust.notePending(m.id, m.name, m.addr, 'client-refused', (first) => {
      this.#log.info(
        { device: m.id, name: m.name, addr: m.addr, verdict: m.verdict, first },
        m.verdict === 'disabled'
          ? `refused disabled device ${m.id} (${m.name || 'no name'}) from ${m.addr}`
          : `refused device ${m.id} (${m.name || 'no name'}) from ${m.addr}: not allowed; to allow it run: ollana device allow ${m.id}`,
      );
    });
  }

  /** A server node answered that it does not allow this device. */
  refusedBy(server: string): void {
    const key = `by ${server}`;
    if (this.#told.has(key)) return;
    this.#remember(key);
    this.#log.warn(
      { peer: { id: server } },
      `server node ${server} does not allow this device yet; on that server run: ollana device allow ${this.#id}`,
    );
  }
}
