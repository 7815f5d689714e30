/**
 * A client node's picture of the cluster: the server nodes discovery reports, each with the models
 * its /api/tags lists (fetched when the server appears and whenever its models digest changes), and
 * the leader from the election. It turns into the route table the proxy workers use.
 */
import { isIP } from 'node:net';
import { networkInterfaces } from 'node:os';
import { systemClock, unrefTimer, type Clock, type TimerHandle } from '../clock.ts';
import type { Logger } from '../log.ts';
import { directedBroadcast } from '../net/lan-interfaces.ts';
import { LogBudget } from './log-budget.ts';
import { ResidencyPoll } from './residency-poll.ts';
import { pinnedConnector, type TlsIdentity } from '../net/tls.ts';
import type { PeerInfo } from '../protocol/lan.ts';
import type { ElectionView, Upstream } from '../protocol/messages.ts';

const TAGS_TIMEOUT_MS = 5_000;
/**
 * Server nodes in the route table at most. Each costs connections (a model list fetch, and one per
 * proxy worker made ahead of the first request); with --trust-lan a flood of made-up server nodes
 * would otherwise have this node open connections wherever they say they are.
 */
export const MAX_SERVERS = 32;
/**
 * A server's model list is fetched at most this often, however often its models digest changes;
 * after failed fetches the wait doubles, up to TAGS_MAX_INTERVAL_MS (a server that announces itself
 * where nothing answers is not connected to on every announce).
 */
const TAGS_MIN_INTERVAL_MS = 2_000;
const TAGS_MAX_INTERVAL_MS = 16_000;
const WARN_EVERY_MS = 60_000;

/**
 * Whether a server node heard at `addr` may be connected to: a unicast address of another machine.
 * Loopback, unspecified, multicast and broadcast addresses, and this machine's own addresses, are
 * refused: a datagram that claims them (spoofed, or looped back) must not make this node connect to
 * its own services.
 */
export function routableAddress(addr: string, own: ReadonlySet<string>): boolean {
  const family = isIP(addr);
  if (family === 0 || own.has(addr)) return false;
  if (family === 4) {
    const first = Number(addr.split('.', 1)[0]);
    return first !== 0 && first !== 127 && first < 224; // 224/4 multicast, 240/4 reserved and 255.255.255.255
  }
  const a = addr.toLowerCase();
  if (a === '::' || a === '::1' || a.startsWith('ff')) return false;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  return mapped === null || routableAddress(mapped[1]!, own);
}

/** This machine's addresses and its interfaces' directed broadcast addresses. */
export function ownAddresses(): Set<string> {
  const own = new Set<string>();
  for (const list of Object.values(networkInterfaces())) {
    for (const info of list ?? []) {
      own.add(info.address);
      if (info.family === 'IPv4') {
        const broadcast = directedBroadcast({ address: info.address, netmask: info.netmask });
        if (broadcast !== null) own.add(broadcast);
      }
    }
  }
  return own;
}

/** A kept connection to one server node, for its model lists. */
export interface TagsConnection {
  /** The model names its GET /api/tags lists; rejects (the message is logged) when it cannot. */
  tags(): Promise<string[]>;
  /** The model names its GET /api/ps lists (loaded now); absent: residency is not followed. */
  ps?(): Promise<string[]>;
  close(): Promise<void>;
}

/** Opens a TagsConnection to `origin`, pinned to device `expectedId`. */
export type TagsConnector = (origin: string, expectedId: string) => TagsConnection;

export interface ClusterViewDeps {
  /** this machine's addresses, never connected to; ownAddresses() by default */
  readonly ownAddresses?: () => ReadonlySet<string>;
  /** time for the fetch pacing and the once-a-minute warnings; real time by default */
  readonly clock?: Clock;
  /** loads the connector the model lists are fetched with; undici over TLS pinned to each server by default */
  readonly connector?: () => Promise<TagsConnector>;
}

/** The model lists over undici, TLS pinned to each server's device id, as `self`. */
function undiciConnector(self: TlsIdentity): () => Promise<TagsConnector> {
  return async () => {
    // undici is loaded the first time a server node is met: a server node's main thread never needs it.
    const { Client, request } = await import('../net/undici.ts');
    return (origin, expectedId) => {
      const client = new Client(origin, {
        connect: pinnedConnector({ self, expectedId, timeoutMs: TAGS_TIMEOUT_MS }),
      });
      const names = async (path: string): Promise<string[]> => {
        const res = await request(`${origin}${path}`, {
          dispatcher: client,
          headersTimeout: TAGS_TIMEOUT_MS,
          bodyTimeout: TAGS_TIMEOUT_MS,
        });
        const body = (await res.body.json()) as { models?: { name?: unknown }[] };
        if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
        return (body.models ?? []).map((m) => m.name).filter((n): n is string => typeof n === 'string');
      };
      return {
        tags: () => names('/api/tags'),
        ps: () => names('/api/ps'),
        close: () => client.close(),
      };
    };
  };
}

interface ServerEntry {
  peer: PeerInfo;
  models: string[];
  /** digest the models were fetched for; differs from peer.models while a fetch is due */
  modelsFor: string | null;
  fetching: boolean;
  /** when the last model list fetch started; a later one waits for TAGS_MIN_INTERVAL_MS (more after failures) */
  fetchedAt: number;
  /** model list fetches failed in a row */
  failures: number;
  /** a fetch put off by TAGS_MIN_INTERVAL_MS is due */
  deferred: TimerHandle | null;
  /**
   * Where the model lists are fetched: one keep-alive connection, pinned to this server's device id,
   * made at the first fetch and kept until the server leaves or moves. Its connector keeps the session
   * ticket, so a later fetch reuses the connection or, once it has closed, resumes the session instead
   * of paying a full handshake.
   */
  client: TagsConnection | null;
  /** Reads its loaded models (/api/ps) while it is in the table. */
  residency: ResidencyPoll | null;
}

/** Server nodes speak TLS on their LAN port. */
export function peerUrl(peer: { addr: string; port: number }): string {
  return `https://${peer.addr.includes(':') ? `[${peer.addr}]` : peer.addr}:${peer.port}`;
}

/** Emits nothing itself: `onChange` is called whenever the route table would differ. */
export class ClusterView {
  readonly #servers = new Map<string, ServerEntry>();
  readonly #log: Logger;
  readonly #onChange: () => void;
  readonly #ownAddresses: () => ReadonlySet<string>;
  readonly #clock: Clock;
  readonly #connector: () => Promise<TagsConnector>;
  /** when a refused address or a full table was last warned about */
  #warnedAt = { address: -Infinity, full: -Infinity };
  readonly #lines: LogBudget;
  #view: ElectionView = { term: 0, leader: '', servers: [], conflicts: [] };

  constructor(log: Logger, self: TlsIdentity, onChange: () => void, deps: ClusterViewDeps = {}) {
    this.#log = log;
    this.#onChange = onChange;
    this.#ownAddresses = deps.ownAddresses ?? ownAddresses;
    this.#clock = deps.clock ?? systemClock;
    this.#connector = deps.connector ?? undiciConnector(self);
    this.#lines = new LogBudget(log, 'server node lines (found, gone, models not listed)');
  }

  get view(): ElectionView {
    return this.#view;
  }

  peers(): PeerInfo[] {
    return [...this.#servers.values()].map((s) => s.peer);
  }

  seen(peer: PeerInfo): void {
    if (peer.role !== 'server') return;
    const known = this.#servers.get(peer.id);
    if (!routableAddress(peer.addr, this.#ownAddresses())) {
      this.#warn(
        'address',
        { peer: { id: peer.id, addr: peer.addr, port: peer.port } },
        `server node ${peer.id} was heard from ${peer.addr}, which is this machine or no unicast address; not used`,
      );
      if (known !== undefined) this.gone(peer.id, `heard from ${peer.addr}`);
      return;
    }
    if (known === undefined) {
      if (this.#servers.size >= MAX_SERVERS) {
        this.#warn(
          'full',
          { peer: { id: peer.id, addr: peer.addr }, max: MAX_SERVERS },
          `server node ${peer.id} at ${peerUrl(peer)} not used: ${MAX_SERVERS} server nodes are in use already`,
        );
        return;
      }
      const entry: ServerEntry = {
        peer,
        models: [],
        modelsFor: null,
        fetching: false,
        client: null,
        fetchedAt: -Infinity,
        failures: 0,
        deferred: null,
        residency: null,
      };
      this.#servers.set(peer.id, entry);
      entry.residency = new ResidencyPoll(this.#clock, () => this.#loadedOn(peer.id, entry), this.#onChange);
      this.#lines.line(
        'info',
        { peer: { id: peer.id, addr: peer.addr, port: peer.port } },
        `server node ${peer.id} found at ${peerUrl(peer)}`,
        this.#clock.now(),
      );
    } else {
      const moved = known.peer.addr !== peer.addr || known.peer.port !== peer.port;
      known.peer = peer;
      if (moved) {
        known.modelsFor = null;
        this.#closeClient(known);
      }
    }
    this.#fetchModels(peer.id);
    this.#onChange();
  }

  gone(id: string, reason: string): void {
    const known = this.#servers.get(id);
    if (known === undefined) return;
    this.#servers.delete(id);
    known.residency?.stop();
    this.#closeClient(known);
    this.#lines.line(
      'warn',
      { peer: { id, addr: known.peer.addr }, reason },
      `server node ${id} at ${peerUrl(known.peer)} is gone (${reason})`,
      this.#clock.now(),
    );
    this.#onChange();
  }

  /** A warning of one kind at most once a minute: a flood of made-up nodes does not flood the log. */
  #warn(kind: 'address' | 'full', fields: Record<string, unknown>, msg: string): void {
    const now = this.#clock.now();
    if (now - this.#warnedAt[kind] < WARN_EVERY_MS) {
      this.#log.debug(fields, msg);
      return;
    }
    this.#warnedAt[kind] = now;
    this.#log.warn(fields, `${msg} (said once a minute)`);
  }

  setView(view: ElectionView): void {
    this.#view = view;
    this.#onChange();
  }

  upstreams(): Upstream[] {
    return [...this.#servers.values()]
      .map((s) => ({
        id: s.peer.id,
        url: peerUrl(s.peer),
        device: s.peer.id,
        basePath: '',
        // A draining server keeps its place (its streams keep their connections) but gets no new request.
        healthy: !s.peer.draining,
        models: s.models,
        leader: s.peer.id === this.#view.leader,
        load: s.peer.load.inFlight,
        loaded: s.residency?.loaded ?? [],
        loadedAt: s.residency?.at ?? 0,
      }))
      .sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Models per server, for status. */
  models(id: string): string[] {
    return this.#servers.get(id)?.models ?? [];
  }

  /** Closes the connections the model lists were fetched on (the node stops). */
  close(): void {
    for (const entry of this.#servers.values()) {
      entry.residency?.stop();
      this.#closeClient(entry);
    }
  }

  /** The models server `id` has loaded, over the connection its model lists are fetched on. */
  async #loadedOn(id: string, entry: ServerEntry): Promise<string[]> {
    const connect = await this.#connector();
    if (this.#servers.get(id) !== entry) return [];
    entry.client ??= connect(peerUrl(entry.peer), id);
    return (await entry.client.ps?.()) ?? [];
  }

  /** Drops the entry's connection; a fetch still running on it ends first (within TAGS_TIMEOUT_MS). */
  #closeClient(entry: ServerEntry): void {
    void entry.client?.close().catch(() => undefined);
    entry.client = null;
    if (entry.deferred !== null) this.#clock.clearTimeout(entry.deferred);
    entry.deferred = null;
  }

  #fetchModels(id: string): void {
    const entry = this.#servers.get(id);
    if (entry === undefined || entry.fetching || entry.modelsFor === entry.peer.models || entry.deferred !== null)
      return;
    const interval = Math.min(TAGS_MAX_INTERVAL_MS, TAGS_MIN_INTERVAL_MS * 2 ** entry.failures);
    const wait = entry.fetchedAt + interval - this.#clock.now();
    if (wait > 0) {
      entry.deferred = this.#clock.setTimeout(() => {
        entry.deferred = null;
        this.#fetchModels(id);
      }, wait);
      unrefTimer(entry.deferred);
      return;
    }
    entry.fetching = true;
    entry.fetchedAt = this.#clock.now();
    const digest = entry.peer.models;
    const origin = peerUrl(entry.peer);
    const url = `${origin}/api/tags`;
    void (async () => {
      try {
        const connect = await this.#connector();
        if (this.#servers.get(id) !== entry) return; // it left (or moved) meanwhile
        entry.client ??= connect(origin, id);
        const client = entry.client;
        const models = await client.tags();
        const now = this.#servers.get(id);
        if (now === undefined) return;
        now.models = models;
        now.modelsFor = digest;
        now.failures = 0;
        this.#log.debug({ peer: { id }, models }, 'models of a server node');
        this.#onChange();
      } catch (err) {
        if (this.#servers.get(id) === entry) entry.failures++;
        this.#lines.line(
          'warn',
          { peer: { id }, url, err },
          `cannot list the models of server node ${id}: ${(err as Error).message}`,
          this.#clock.now(),
        );
      } finally {
        const now = this.#servers.get(id);
        if (now !== undefined) {
          now.fetching = false;
          // The digest moved on while fetching: fetch again.
          if (now.modelsFor !== now.peer.models && now.modelsFor === digest) this.#fetchModels(id);
        }
      }
    })();
  }
}
