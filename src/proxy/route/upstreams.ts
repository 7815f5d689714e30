/**
 * A proxy worker's connections to its upstreams: undici pools (one per server and identity), the
 * relay's raw sockets to a server node's local Ollama, the pinned connectors of server nodes and the
 * connections opened ahead to them, the upstreams that refused a connection lately, and this worker's
 * in-flight requests per upstream (for least-busy routing).
 */
import type { Pool } from '../../net/undici.ts';
import type { Logger } from '../../log.ts';
import type { RouteTable, Upstream } from '../../protocol/messages.ts';
import { pinnedConnector, type PinnedConnector, type TlsServerSettings } from '../../net/tls.ts';
import { UpstreamSockets } from '../relay/upstream-sockets.ts';
import { UpstreamError } from '../../errors.ts';

type Undici = typeof import('../../net/undici.ts');
let undici: Undici | null = null;
let undiciLoading: Promise<Undici> | null = null;

/**
 * undici, loaded the first time a worker needs a pool: a client node as soon as it knows a server, a
 * server node only for what goes through node:http to its Ollama without the relay (an HTTP/1.0
 * client). A server node's workers then never carry it (~7 MB each).
 */
export function loadUndici(): Promise<Undici> {
  undiciLoading ??= import('../../net/undici.ts').then((m) => {
    undici = m;
    return m;
  });
  return undiciLoading;
}

/** Whether undici is loaded (loadUndici has resolved): until then no pool can be made. */
export function undiciLoaded(): boolean {
  return undici !== null;
}

/** How long an upstream that refused a connection is tried last. */
const UNREACHABLE_MS = 2_000;

/** One pool per server and identity: another device at the same address gets fresh connections. */
function poolKey(u: Upstream): string {
  return u.device === '' ? u.url : `${u.url}#${u.device}`;
}

/** The settings (ProxySettings) the upstream connections are made with. */
export interface UpstreamSettings {
  readonly connectTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  readonly upstreamConnections: number;
  readonly upstreamKeepAliveMs: number;
  readonly tls: TlsServerSettings | null;
}

export class Upstreams {
  readonly #settings: UpstreamSettings;
  readonly #log: Logger;
  /** Whether the worker is draining: no connection ahead is started then. */
  readonly #draining: () => boolean;
  #table: RouteTable = { version: 0, role: 'server', upstreams: [] };
  readonly #pools = new Map<string, Pool>();
  /** A server node's connections to its local Ollama for the relay (relay/), by upstream URL. */
  readonly #sockets = new Map<string, UpstreamSockets>();
  /** The pinned connectors of #pools (server nodes reached over TLS), by pool key: #warm uses them. */
  readonly #connectors = new Map<string, PinnedConnector>();
  /** Connection-ahead attempts still running, by pool key (see #warm). */
  readonly #warming = new Map<string, AbortController>();
  /** Upstreams that refused a connection lately, until when (ms): tried last, not skipped. */
  readonly #unreachableUntil = new Map<string, number>();
  readonly onUnreachable = (u: Upstream): void => {
    this.#unreachableUntil.set(u.id, Date.now() + UNREACHABLE_MS);
  };
  readonly onRefusedBy: (u: Upstream) => void;
  /** This worker's in-flight requests per upstream id, for least-busy routing. */
  readonly inFlight = new Map<string, number>();
  readonly onAttempt = (u: Upstream, delta: 1 | -1): void => {
    this.inFlight.set(u.id, (this.inFlight.get(u.id) ?? 0) + delta);
  };

  /** `refusedBy`: a server node answered that it does not allow this device (ProxyHost.refusedBy). */
  constructor(settings: UpstreamSettings, log: Logger, draining: () => boolean, refusedBy: (server: string) => void) {
    this.#settings = settings;
    this.#log = log;
    this.#draining = draining;
    this.onRefusedBy = (u: Upstream): void => {
      this.#unreachableUntil.set(u.id, Date.now() + UNREACHABLE_MS);
      refusedBy(u.id);
    };
  }

  /**
   * Follows a new route table: the pools and sockets of upstreams no longer in it are closed, their
   * marks dropped, and a connection is opened ahead to every healthy server node new in it.
   */
  setRoutes(table: RouteTable): void {
    this.#table = table;
    const live = new Set(table.upstreams.map(poolKey));
    for (const id of this.#unreachableUntil.keys())
      if (!table.upstreams.some((u) => u.id === id)) this.#unreachableUntil.delete(id);
    for (const [key, warming] of this.#warming) if (!live.has(key)) warming.abort();
    for (const [url, pool] of this.#pools) {
      if (!live.has(url)) {
        // A server that left (dead, cut off, its Ollama stopped): fail what is in flight there now
        // instead of waiting on a connection that may never answer. Requests still before their first
        // byte move to another server; streams end with an error line.
        this.#pools.delete(url);
        this.#connectors.delete(url);
        const gone = new UpstreamError('OLN_UPSTREAM_GONE', `${url.split('#', 1)[0]} left the cluster`);
        void pool.destroy(gone).catch(() => undefined);
      }
    }
    for (const [url, sockets] of this.#sockets) {
      if (!live.has(url)) {
        this.#sockets.delete(url);
        sockets.destroy(new UpstreamError('OLN_UPSTREAM_GONE', `${url} is no longer this node's upstream`));
      }
    }
    for (const u of table.upstreams) if (u.healthy && !this.#pools.has(poolKey(u))) this.#warm(u);
  }

  /**
   * A server node just entered the route table (client nodes only): one pinned connection ahead of
   * the first request, so this worker holds a session ticket and the connections the first requests
   * open resume rather than each paying a full handshake. No HTTP request is sent. Failing is harmless: the requests connect as they would have.
   */
  #warm(u: Upstream): void {
    if (u.device === '' || this.#settings.tls === null || this.#draining()) return;
    if (undici === null) {
      void loadUndici().then(() => {
        if (this.#table.upstreams.includes(u) && !this.#pools.has(poolKey(u))) this.#warm(u);
      });
      return;
    }
    const key = poolKey(u);
    this.pool(u);
    const connector = this.#connectors.get(key);
    if (connector === undefined) return;
    const ac = new AbortController();
    this.#warming.set(key, ac);
    const t0 = performance.now();
    connector
      .warm(u.url, ac.signal)
      .then(
        (ticket) =>
          this.#log.debug(
            { server: u.id, ticket, ms: Math.round(performance.now() - t0) },
            `connected ahead to server node ${u.id}`,
          ),
        (err: Error & { code?: string }) =>
          this.#log.debug(
            { server: u.id, err, code: err.code },
            `no connection ahead to server node ${u.id}: ${err.message}`,
          ),
      )
      .finally(() => {
        if (this.#warming.get(key) === ac) this.#warming.delete(key);
      });
  }

  /** The undici pool for `upstream`, made on first use; undici must be loaded (loadUndici). */
  pool(upstream: Upstream): Pool {
    const key = poolKey(upstream);
    let pool = this.#pools.get(key);
    if (pool === undefined) {
      const s = this.#settings;
      // A server node: TLS with this node's certificate, pinned to the device id discovery announced.
      const pinned =
        upstream.device !== '' && s.tls !== null
          ? pinnedConnector({ self: s.tls, expectedId: upstream.device, timeoutMs: s.connectTimeoutMs })
          : null;
      if (pinned !== null) this.#connectors.set(key, pinned);
      if (undici === null) throw new Error('undici is not loaded yet (loadUndici)');
      pool = new undici.Pool(upstream.url, {
        connections: s.upstreamConnections,
        pipelining: 1,
        keepAliveTimeout: s.upstreamKeepAliveMs,
        keepAliveMaxTimeout: Math.max(s.upstreamKeepAliveMs, 600_000),
        headersTimeout: s.headersTimeoutMs,
        bodyTimeout: s.bodyTimeoutMs,
        connect: pinned ?? { timeout: s.connectTimeoutMs, noDelay: true, keepAlive: true },
      });
      this.#pools.set(key, pool);
    }
    return pool;
  }

  /** The relay's connections to the local Ollama `up` (a server node), made on first use. */
  sockets(up: Upstream): UpstreamSockets {
    const s = this.#settings;
    let sockets = this.#sockets.get(up.url);
    if (sockets === undefined) {
      const target = new URL(up.url);
      sockets = new UpstreamSockets({
        host: target.hostname.replace(/^\[|\]$/g, ''),
        port: Number(target.port || 80),
        hostHeader: target.host,
        max: s.upstreamConnections,
        keepAliveMs: s.upstreamKeepAliveMs,
        connectTimeoutMs: s.connectTimeoutMs,
      });
      this.#sockets.set(up.url, sockets);
    }
    return sockets;
  }

  /**
   * Moves upstreams that refused a connection in the last UNREACHABLE_MS to the end: until discovery
   * declares a dead server gone, the requests in between go where they will be answered instead of
   * each paying a refused connection and a retry.
   */
  reachableFirst(list: Upstream[]): Upstream[] {
    if (this.#unreachableUntil.size === 0 || list.length < 2) return list;
    const now = Date.now();
    const bad = (u: Upstream): boolean => {
      const until = this.#unreachableUntil.get(u.id);
      if (until === undefined) return false;
      if (until > now) return true;
      this.#unreachableUntil.delete(u.id);
      return false;
    };
    return [...list.filter((u) => !bad(u)), ...list.filter(bad)];
  }

  /** The worker stops: connections ahead are given up, relay sockets and pools closed. */
  async close(): Promise<void> {
    for (const warming of this.#warming.values()) warming.abort();
    const closing = new UpstreamError('OLN_UPSTREAM_GONE', 'this node is shutting down');
    for (const sockets of this.#sockets.values()) sockets.destroy(closing);
    await Promise.all([...this.#pools.values()].map((p) => p.destroy().catch(() => undefined)));
  }
}
