/**
 * The proxy worker's HTTP server: accepts on the shared port (reusePort, so every worker thread has
 * its own listening socket and the kernel spreads connections), answers ollana's own /ollana/ paths,
 * applies the browser rules, and forwards everything else to an upstream through its own undici pool.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import { Pool } from 'undici';
import type { Logger } from '../log.ts';
import type { RouteTable, Upstream, WorkerStats } from '../protocol/messages.ts';
import { CORS_ALLOW_HEADERS, CORS_ALLOW_METHODS, CORS_MAX_AGE, OriginPolicy, hostAllowedOnLoopback } from './cors.ts';
import { sendError, sendJson } from './errors-http.ts';
import { Forward } from './forward.ts';
import { upstreamRequestHeaders } from './headers.ts';
import { StatsCollector } from './stats.ts';

export interface ProxySettings {
  readonly worker: number;
  readonly host: string;
  readonly port: number;
  readonly origins: readonly string[];
  readonly connectTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  readonly upstreamConnections: number;
  readonly upstreamKeepAliveMs: number;
  /** Enables POST /ollana/v1/debug/crash, which kills this worker thread (tests of supervision). */
  readonly debugHooks: boolean;
}

/** What the server needs from its thread: status comes from the supervisor, which sees all workers. */
export interface ProxyHost {
  status(): Promise<Record<string, unknown>>;
  crash(): void;
}

const DROP_UPSTREAM_CORS = new Set(['access-control-allow-origin', 'access-control-allow-credentials',
  'access-control-expose-headers', 'vary']);

const MALFORMED_BODY = '{"error":"ollana: malformed HTTP request"}';
const MALFORMED_REPLY = 'HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-type: application/json\r\n' +
  `content-length: ${MALFORMED_BODY.length}\r\n\r\n${MALFORMED_BODY}`;

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

export class ProxyServer {
  readonly stats: StatsCollector;
  readonly #settings: ProxySettings;
  readonly #log: Logger;
  readonly #host: ProxyHost;
  readonly #server: Server;
  readonly #origins: OriginPolicy;
  readonly #hostCheck: boolean;
  #table: RouteTable = { version: 0, role: 'server', upstreams: [] };
  readonly #pools = new Map<string, Pool>();
  #draining = false;
  #drained: (() => void) | null = null;
  readonly #onFinish = (): void => this.#afterRequest();

  constructor(settings: ProxySettings, log: Logger, host: ProxyHost) {
    this.#settings = settings;
    this.#log = log;
    this.#host = host;
    this.stats = new StatsCollector(settings.worker);
    this.#origins = new OriginPolicy(settings.origins);
    this.#hostCheck = isLoopbackHost(settings.host);
    this.#server = createServer({
      noDelay: true,
      keepAliveTimeout: 65_000,
      // No requestTimeout: a streamed generation may run for many minutes. Header read time stays
      // bounded so a slow-header client cannot hold a socket forever.
      requestTimeout: 0,
      headersTimeout: 60_000,
      maxHeaderSize: 64 * 1024,
    }, (req, res) => this.#handle(req, res));
    this.#server.on('clientError', (err: Error & { code?: string }, socket) => {
      // Malformed request bytes: answer 400 when the socket still can, and never crash the worker.
      if (err.code === 'ECONNRESET' || !socket.writable) { socket.destroy(); return; }
      this.#log.debug({ code: err.code }, 'malformed request refused');
      socket.end(MALFORMED_REPLY);
    });
  }

  async listen(): Promise<void> {
    this.#server.listen({ host: this.#settings.host, port: this.#settings.port, reusePort: true, backlog: 4096 });
    await once(this.#server, 'listening');
  }

  setRoutes(table: RouteTable): void {
    this.#table = table;
    const live = new Set(table.upstreams.map((u) => u.url));
    for (const [url, pool] of this.#pools) {
      if (!live.has(url)) {
        this.#pools.delete(url);
        void pool.close().catch(() => undefined);
      }
    }
  }

  snapshot(): WorkerStats {
    return this.stats.snapshot();
  }

  #pool(upstream: Upstream): Pool {
    let pool = this.#pools.get(upstream.url);
    if (pool === undefined) {
      const s = this.#settings;
      pool = new Pool(upstream.url, {
        connections: s.upstreamConnections,
        pipelining: 1,
        keepAliveTimeout: s.upstreamKeepAliveMs,
        keepAliveMaxTimeout: Math.max(s.upstreamKeepAliveMs, 600_000),
        headersTimeout: s.headersTimeoutMs,
        bodyTimeout: s.bodyTimeoutMs,
        connect: { timeout: s.connectTimeoutMs, noDelay: true, keepAlive: true },
      });
      this.#pools.set(upstream.url, pool);
    }
    return pool;
  }

  #pick(): Upstream | null {
    const ups = this.#table.upstreams;
    if (ups.length === 0) return null;
    // One upstream on a server node; the LAN cluster chooses among several by load and model.
    return ups.find((u) => u.healthy) ?? ups[0]!;
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    const url = req.url ?? '/';
    if (this.#draining) res.shouldKeepAlive = false;

    if (this.#hostCheck && !hostAllowedOnLoopback(req.headers.host)) {
      // As Ollama does: a foreign Host on a loopback listener is DNS rebinding; 403 with no body.
      this.stats.status(403);
      res.writeHead(403, ['content-length', '0']).end();
      return;
    }

    let cors: string[] | null = null;
    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (!this.#origins.allows(origin, req.headers.host)) {
        this.#log.debug({ origin }, 'browser origin refused');
        this.stats.status(403);
        res.writeHead(403, ['content-length', '0']).end();
        return;
      }
      cors = ['access-control-allow-origin', origin, 'vary', 'Origin'];
      if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
        this.stats.status(204);
        res.writeHead(204, [...cors, 'access-control-allow-methods', CORS_ALLOW_METHODS,
          'access-control-allow-headers', CORS_ALLOW_HEADERS, 'access-control-max-age', CORS_MAX_AGE]).end();
        return;
      }
    }

    if (url.startsWith('/ollana/')) {
      this.#own(req, res, url, cors ?? []);
      return;
    }

    const upstream = this.#pick();
    if (upstream === null) {
      const body = this.#table.role === 'client'
        ? 'ollana: no Ollama server found on the LAN yet; still looking (is `ollana serve` running on a machine with Ollama?)'
        : 'ollana: no upstream Ollama is configured';
      this.stats.status(503);
      sendError(res, url, 503, body, ['retry-after', '1', ...(cors ?? [])]);
      return;
    }

    const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0'
      : req.headers['transfer-encoding'] !== undefined;
    const handler = new Forward(req, res, {
      stats: this.stats,
      log: this.#log,
      upstreamName: `Ollama at ${upstream.url}`,
      extraHeaders: cors,
      dropHeaders: cors === null ? null : DROP_UPSTREAM_CORS,
      onFinish: this.#onFinish,
    });
    this.#pool(upstream).dispatch({
      path: upstream.basePath === '' ? url : upstream.basePath + url,
      method: req.method ?? 'GET',
      headers: upstreamRequestHeaders(req, 'http'),
      body: hasBody ? req : null,
      // Never let undici retry or pipeline behind a generation: each request is its own exchange.
      idempotent: false,
      blocking: true,
    }, handler);
  }

  #own(req: IncomingMessage, res: ServerResponse, url: string, cors: string[]): void {
    const path = url.split('?', 1)[0];
    if (path === '/ollana/v1/health' && (req.method === 'GET' || req.method === 'HEAD')) {
      sendJson(res, 200, { ok: true, role: this.#table.role, draining: this.#draining }, cors);
      return;
    }
    if (path === '/ollana/v1/status' && req.method === 'GET') {
      this.#host.status().then(
        (status) => sendJson(res, 200, status, cors),
        (err: Error) => sendError(res, url, 503, `ollana: status unavailable: ${err.message}`, cors),
      );
      return;
    }
    if (path === '/ollana/v1/debug/crash' && req.method === 'POST' && this.#settings.debugHooks) {
      this.#log.warn('crash requested through the debug hook');
      this.#host.crash();
      return;
    }
    sendError(res, url, 404, `ollana: no such ollana endpoint ${path}; see /ollana/v1/status`, cors);
  }

  #afterRequest(): void {
    if (this.#draining && this.stats.inFlight === 0) this.#drained?.();
  }

  /**
   * Stops accepting, lets in-flight requests finish until the deadline, then cuts what remains.
   * Resolves with the number of requests that had to be cut.
   */
  async drain(deadlineMs: number): Promise<number> {
    this.#draining = true;
    this.#server.close();
    this.#server.closeIdleConnections();
    if (this.stats.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadlineMs);
        this.#drained = () => { clearTimeout(timer); resolve(); };
      });
    }
    const cut = this.stats.inFlight;
    this.#server.closeAllConnections();
    await Promise.all([...this.#pools.values()].map((p) => p.destroy().catch(() => undefined)));
    return cut;
  }
}
