/**
 * A client node's picture of the cluster: the server nodes discovery reports, each with the models
 * its /api/tags lists (fetched when the server appears and whenever its models digest changes), and
 * the leader from the election. It turns into the route table the proxy workers use.
 */
import type { Client } from '../net/undici.ts';
import type { Logger } from '../log.ts';
import { pinnedConnector, type TlsIdentity } from '../net/tls.ts';
import type { PeerInfo } from '../protocol/lan.ts';
import type { ElectionView, Upstream } from '../protocol/messages.ts';

const TAGS_TIMEOUT_MS = 5_000;

interface ServerEntry {
  peer: PeerInfo;
  models: string[];
  /** digest the models were fetched for; differs from peer.models while a fetch is due */
  modelsFor: string | null;
  fetching: boolean;
  /**
   * Where the model lists are fetched: one keep-alive connection, pinned to this server's device id,
   * made at the first fetch and kept until the server leaves or moves. Its connector keeps the session
   * ticket, so a later fetch reuses the connection or, once it has closed, resumes the session instead
   * of paying a full handshake.
   */
  client: Client | null;
}

/** Drops the entry's connection; a fetch still running on it ends first (within TAGS_TIMEOUT_MS). */
function closeClient(entry: ServerEntry): void {
  void entry.client?.close().catch(() => undefined);
  entry.client = null;
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
  readonly #self: TlsIdentity;
  #view: ElectionView = { term: 0, leader: '', servers: [], conflicts: [] };

  constructor(log: Logger, self: TlsIdentity, onChange: () => void) {
    this.#log = log;
    this.#self = self;
    this.#onChange = onChange;
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
    if (known === undefined) {
      this.#servers.set(peer.id, { peer, models: [], modelsFor: null, fetching: false, client: null });
      this.#log.info({ peer: { id: peer.id, addr: peer.addr, port: peer.port } }, `server node ${peer.id} found at ${peerUrl(peer)}`);
    } else {
      const moved = known.peer.addr !== peer.addr || known.peer.port !== peer.port;
      known.peer = peer;
      if (moved) {
        known.modelsFor = null;
        closeClient(known);
      }
    }
    this.#fetchModels(peer.id);
    this.#onChange();
  }

  gone(id: string, reason: string): void {
    const known = this.#servers.get(id);
    if (known === undefined) return;
    this.#servers.delete(id);
    closeClient(known);
    this.#log.warn({ peer: { id, addr: known.peer.addr }, reason }, `server node ${id} at ${peerUrl(known.peer)} is gone (${reason})`);
    this.#onChange();
  }

  setView(view: ElectionView): void {
    this.#view = view;
    this.#onChange();
  }

  upstreams(): Upstream[] {
    return [...this.#servers.values()].map((s) => ({
      id: s.peer.id,
      url: peerUrl(s.peer),
      device: s.peer.id,
      basePath: '',
      healthy: true,
      models: s.models,
      leader: s.peer.id === this.#view.leader,
      load: s.peer.load.inFlight,
    })).sort((a, b) => a.id.localeCompare(b.id));
  }

  /** Models per server, for status. */
  models(id: string): string[] {
    return this.#servers.get(id)?.models ?? [];
  }

  /** Closes the connections the model lists were fetched on (the node stops). */
  close(): void {
    for (const entry of this.#servers.values()) closeClient(entry);
  }

  #fetchModels(id: string): void {
    const entry = this.#servers.get(id);
    if (entry === undefined || entry.fetching || entry.modelsFor === entry.peer.models) return;
    entry.fetching = true;
    const digest = entry.peer.models;
    const origin = peerUrl(entry.peer);
    const url = `${origin}/api/tags`;
    void (async () => {
      try {
        // undici is loaded the first time a server node is met: a server node's main thread never needs it.
        const { Client, request } = await import('../net/undici.ts');
        if (this.#servers.get(id) !== entry) return; // it left (or moved) meanwhile
        const client = entry.client ??= new Client(origin, {
          connect: pinnedConnector({ self: this.#self, expectedId: id, timeoutMs: TAGS_TIMEOUT_MS }),
        });
        const res = await request(url, { dispatcher: client, headersTimeout: TAGS_TIMEOUT_MS, bodyTimeout: TAGS_TIMEOUT_MS });
        const body = await res.body.json() as { models?: { name?: unknown }[] };
        if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
        const models = (body.models ?? []).map((m) => m.name).filter((n): n is string => typeof n === 'string');
        const now = this.#servers.get(id);
        if (now === undefined) return;
        now.models = models;
        now.modelsFor = digest;
        this.#log.debug({ peer: { id }, models }, 'models of a server node');
        this.#onChange();
      } catch (err) {
        this.#log.warn({ peer: { id }, url, err }, `cannot list the models of server node ${id}: ${(err as Error).message}`);
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
