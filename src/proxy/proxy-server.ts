/**
 * The proxy worker's HTTP server: accepts on the shared port (reusePort, so every worker thread has
 * its own listening socket and the kernel spreads connections), answers ollana's own /ollana/ paths,
 * applies the browser rules, and forwards everything else to an upstream through its own undici pool.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { http, https } from '../net/node-http.ts';
import { once } from 'node:events';
import type { TLSSocket } from 'node:tls';
import type { Pool } from '../net/undici.ts';
import type { Logger } from '../log.ts';
import type { RouteTable, Upstream, WorkerStats } from '../protocol/messages.ts';
import { CORS_ALLOW_HEADERS, CORS_ALLOW_METHODS, CORS_MAX_AGE, OriginPolicy, hostAllowedOnLoopback } from './listen/cors.ts';
import { sendError, sendJson } from './http/errors-http.ts';
import { aggregate } from './route/aggregate.ts';
import { ConnectionGuard, afterBody, guardedServerOptions } from './listen/connection-guard.ts';
import type { Socket } from 'node:net';
import { Forward } from './route/forward.ts';
import { affineTarget, candidates, classify, modelOf, retryableStatus } from './route/router.ts';
import { ModelScan } from './route/model-scan.ts';
import { Readable } from 'node:stream';
import { upstreamRequestHeaders } from './http/headers.ts';
import { StatsCollector } from './stats.ts';
import { HANDSHAKE_TIMEOUT_MS, countHandshake, pinnedConnector, tlsServerOptions, type PinnedConnector, type TlsServerSettings } from '../net/tls.ts';
import { TrustGate, type Admission } from './listen/trust-gate.ts';
import type { TrustSettings } from '../protocol/messages.ts';
import { refusalReply } from './listen/refusal.ts';
import { Relay, type RelayOptions } from './relay/relay.ts';
import { NodeDownstream, relayable } from './relay/node-downstream.ts';
import { UpstreamSockets } from './relay/upstream-sockets.ts';
import { downstreamResponseHeaders } from './http/headers.ts';
import { FastFront } from './fast/front.ts';
import { MAX_HEADER_BYTES } from './listen/connection-guard.ts';

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
  /** Client side: time to send request headers, idle time between requests, open connections per node (connection-guard.ts). */
  readonly requestHeadersTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly requestBodyTimeoutMs: number;
  readonly maxConnections: number;
  /** Shared by the workers: their open connections, against maxConnections (connection-cap.ts). */
  readonly connectionBoard?: Int32Array;
  /** Enables POST /ollana/v1/debug/crash, which kills this worker thread (tests of supervision). */
  readonly debugHooks: boolean;
  /**
   * This node's certificate: the listener speaks TLS and admits only allowed devices (a server node),
   * and server nodes are reached over pinned TLS (a client node). null: plain HTTP listener
   * (a client node's loopback port, or --insecure-http on a loopback address).
   */
  readonly tls: TlsServerSettings | null;
  /** Whether the listener itself speaks TLS (the server node's LAN port). */
  readonly listenTls: boolean;
  readonly trust: TrustSettings;
  /** Shared with the supervisor: slot `worker` holds this worker's in-flight requests (see StatsCollector). */
  readonly loadBoard?: Int32Array;
}

/** What the server needs from its thread: status comes from the supervisor, which sees all workers. */
export interface ProxyHost {
  status(): Promise<Record<string, unknown>>;
  crash(): void;
  /** A device was refused after the handshake (the supervisor logs it and lists it as pending). */
  refused(a: Admission, addr: string): void;
  /** A server node answered that it does not allow this device. */
  refusedBy(server: string): void;
}

type Undici = typeof import('../net/undici.ts');
let undici: Undici | null = null;
let undiciLoading: Promise<Undici> | null = null;

/**
 * undici, loaded the first time a worker needs a pool: a client node as soon as it knows a server, a
 * server node only for what goes through node:http to its Ollama without the relay (an HTTP/1.0
 * client). A server node's workers then never carry it (~7 MB each).
 */
function loadUndici(): Promise<Undici> {
  return undiciLoading ??= import('../net/undici.ts').then((m) => (undici = m));
}

/** How long an upstream that refused a connection is tried last. */
const UNREACHABLE_MS = 2_000;

/**
 * How much of a JSON body a client node reads, at most, to find the model it routes by (model-scan.ts);
 * clients send `model` first, but a chat may put megabytes of base64 images before it. Past this the
 * request goes to the least busy server, as one naming no model does.
 */
const MODEL_SCAN_BYTES = 1024 * 1024;

/**
 * Largest declared body a server node reads whole before forwarding. Handing undici a Buffer instead
 * of the request stream saves the stream plumbing per request (bench: CPU per request 0.76x for
 * generate, 0.93x for embed, peak RSS halved); a chat with images in base64 is above it and streams.
 */
const SMALL_BODY = 64 * 1024;

const DROP_UPSTREAM_CORS = new Set(['access-control-allow-origin', 'access-control-allow-credentials',
  'access-control-expose-headers', 'vary']);

/** One pool per server and identity: another device at the same address gets fresh connections. */
function poolKey(u: Upstream): string {
  return u.device === '' ? u.url : `${u.url}#${u.device}`;
}

/**
 * Reads a request body of a declared small size whole. The HTTP parser enforces Content-Length, so
 * no size check is needed here; a client that goes away mid-body never gets its request forwarded.
 * One chunk (the usual case) is passed on without a copy.
 */
function readWhole(req: IncomingMessage, then: (body: Buffer) => void): void {
  let first: Buffer | null = null;
  let rest: Buffer[] | null = null;
  req.on('data', (chunk: Buffer) => {
    if (first === null) first = chunk;
    else (rest ??= [first]).push(chunk);
  });
  req.once('end', () => then(rest !== null ? Buffer.concat(rest) : first ?? Buffer.alloc(0)));
}

/**
 * The body of `req` from its start again: the chunks already read, then the rest as it comes, with
 * backpressure (the request is read only as fast as the upstream takes it). An error or abort of the
 * request ends the stream with that error, which aborts the upstream request.
 */
function prepended(head: Buffer[], req: IncomingMessage): Readable {
  let queued: Buffer[] | null = head;
  const out = new Readable({
    read() {
      if (queued !== null) {
        const first = queued;
        queued = null;
        for (const chunk of first) out.push(chunk);
      }
      req.resume();
    },
    destroy(err, done) {
      req.off('data', onData);
      req.off('end', onEnd);
      done(err);
    },
  });
  const onData = (chunk: Buffer): void => {
    if (!out.push(chunk)) req.pause();
  };
  const onEnd = (): void => { out.push(null); };
  req.on('data', onData);
  req.once('end', onEnd);
  req.once('close', () => { if (!req.complete) out.destroy(new Error('the client went away during its request body')); });
  return out;
}

function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}

export class ProxyServer {
  readonly stats: StatsCollector;
  readonly #settings: ProxySettings;
  readonly #log: Logger;
  readonly #host: ProxyHost;
  readonly #server: Server;
  readonly #gate: TrustGate | null;
  readonly #guard: ConnectionGuard;
  /** The first reader of every connection: relays the local Ollama's requests itself (fast/front.ts). */
  readonly #front: FastFront;
  /** How the front relays now: to this server node's one local Ollama, else null (all to node:http). */
  #fastTarget: RelayOptions | null = null;
  readonly #origins: OriginPolicy;
  readonly #hostCheck: boolean;
  #table: RouteTable = { version: 0, role: 'server', upstreams: [] };
  readonly #pools = new Map<string, Pool>();
  /** A server node's connections to its local Ollama for the relay (relay/), by upstream URL. */
  readonly #sockets = new Map<string, UpstreamSockets>();
  /** The pinned connectors of #pools (server nodes reached over TLS), by pool key: #warm uses them. */
  readonly #connectors = new Map<string, PinnedConnector>();
  /** Connection-ahead attempts still running, by pool key (see #warm). */
  readonly #warming = new Map<string, AbortController>();
  #draining = false;
  #drained: (() => void) | null = null;
  readonly #onFinish = (): void => this.#afterRequest();
  #turn = 0;
  /** Upstreams that refused a connection lately, until when (ms): tried last, not skipped. */
  readonly #unreachableUntil = new Map<string, number>();
  readonly #onUnreachable = (u: Upstream): void => { this.#unreachableUntil.set(u.id, Date.now() + UNREACHABLE_MS); };
  readonly #onRefusedBy = (u: Upstream): void => {
    this.#unreachableUntil.set(u.id, Date.now() + UNREACHABLE_MS);
    this.#host.refusedBy(u.id);
  };
  /** This worker's in-flight requests per upstream id, for least-busy routing. */
  readonly #upInFlight = new Map<string, number>();
  readonly #onAttempt = (u: Upstream, delta: 1 | -1): void => {
    this.#upInFlight.set(u.id, (this.#upInFlight.get(u.id) ?? 0) + delta);
  };

  constructor(settings: ProxySettings, log: Logger, host: ProxyHost) {
    this.#settings = settings;
    this.#log = log;
    this.#host = host;
    this.stats = new StatsCollector(settings.worker, settings.loadBoard ?? null);
    this.#origins = new OriginPolicy(settings.origins);
    this.#hostCheck = isLoopbackHost(settings.host);
    this.#guard = new ConnectionGuard(settings, log, settings.worker);
    this.#front = new FastFront({
      maxHeaderBytes: MAX_HEADER_BYTES,
      smallBody: SMALL_BODY,
      headersTimeoutMs: settings.requestHeadersTimeoutMs,
      keepAliveTimeoutMs: settings.keepAliveTimeoutMs,
      requestBodyTimeoutMs: settings.requestBodyTimeoutMs,
      hostCheck: this.#hostCheck,
    }, this.#guard, this.stats, () => this.#fastTarget, () => this.#draining);
    this.#guard.evictAlso(() => {
      this.#front.closeIdle();
      this.#front.closeStalled(this.#guard.stalledBodyEvictMs);
    });
    const httpOptions = {
      noDelay: true,
      keepAliveTimeout: settings.keepAliveTimeoutMs,
      // No requestTimeout: a streamed generation may run for many minutes. Header size and header
      // time stay bounded (connection-guard.ts) so a slow-header client cannot hold a socket.
      requestTimeout: 0,
      ...guardedServerOptions(settings),
    };
    const handler = (req: IncomingMessage, res: ServerResponse): void => this.#handle(req, res);
    if (settings.listenTls && settings.tls !== null) {
      this.#gate = new TrustGate(settings.tls.id, settings.trust);
      this.#server = https().createServer({ ...httpOptions, ...tlsServerOptions(settings.tls) }, handler);
      this.#guardHandshakes(this.#server as Server & { on: Server['on'] });
    } else {
      this.#gate = null;
      this.#server = http.createServer(httpOptions, handler);
      const parse = this.#server.listeners('connection')[0] as ((socket: Socket) => void) | undefined;
      if (parse === undefined) throw new Error('http server without a connection listener');
      this.#server.removeAllListeners('connection');
      this.#server.on('connection', (socket: Socket) => this.#front.adopt(socket, () => parse.call(this.#server, socket)));
    }
    // The https server is the HTTP server too: one connection cap, one clientError handler.
    this.#guard.attach(this.#server, settings.listenTls && settings.tls !== null);
  }

  /**
   * The https server hands every finished handshake to its HTTP parser through one 'secureConnection'
   * listener. It is taken out and called only for allowed devices: a refused one gets a fixed 403 and
   * is closed, and not one byte it sent is parsed.
   */
  #guardHandshakes(server: Server): void {
    const parse = server.listeners('secureConnection')[0] as ((socket: TLSSocket) => void) | undefined;
    if (parse === undefined) throw new Error('https server without a secureConnection listener');
    server.removeAllListeners('secureConnection');
    server.on('secureConnection', (socket: TLSSocket) => {
      countHandshake(socket);
      // The TCP socket the guard admitted is the TLS socket's parent (node:tls wraps it).
      const raw = (socket as TLSSocket & { _parent?: Socket | null })._parent;
      if (raw) this.#guard.established(raw);
      const admission = this.#gate!.admit(socket);
      if (admission.verdict === 'allowed') {
        this.#front.adopt(socket, () => parse.call(server, socket));
        return;
      }
      this.stats.status(403);
      this.#host.refused(admission, socket.remoteAddress ?? '?');
      socket.setTimeout(2_000, () => socket.destroy());
      socket.end(refusalReply(admission, this.#settings.tls!.id));
    });
    server.on('tlsClientError', (err: Error & { code?: string }, socket) => {
      // Plain HTTP on the TLS port, a port scanner, a handshake that stalled: nothing was served.
      const name = err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT'
        ? `no handshake within ${HANDSHAKE_TIMEOUT_MS / 1000} s, ${err.code}` : err.code ?? err.message;
      this.#host.refused({ verdict: 'bad-handshake', id: null, name }, socket.remoteAddress ?? '?');
      socket.destroy();
    });
  }

  /** Applies a new allow list at once: connections of devices no longer allowed are cut. */
  setTrust(trust: TrustSettings): void {
    const cut = this.#gate?.update(trust) ?? [];
    if (cut.length > 0) this.#log.info({ devices: cut }, `cut the connections of ${cut.length} device(s) no longer allowed`);
  }

  async listen(): Promise<void> {
    this.#server.listen({ host: this.#settings.host, port: this.#settings.port, reusePort: true, backlog: 4096 });
    await once(this.#server, 'listening');
  }

  setRoutes(table: RouteTable): void {
    this.#table = table;
    const live = new Set(table.upstreams.map(poolKey));
    for (const id of this.#unreachableUntil.keys()) if (!table.upstreams.some((u) => u.id === id)) this.#unreachableUntil.delete(id);
    for (const [key, warming] of this.#warming) if (!live.has(key)) warming.abort();
    for (const [url, pool] of this.#pools) {
      if (!live.has(url)) {
        // A server that left (dead, cut off, its Ollama stopped): fail what is in flight there now
        // instead of waiting on a connection that may never answer. Requests still before their first
        // byte move to another server; streams end with an error line.
        this.#pools.delete(url);
        this.#connectors.delete(url);
        const gone = Object.assign(new Error(`${url.split("#", 1)[0]} left the cluster`), { code: 'UND_ERR_DESTROYED' });
        void pool.destroy(gone).catch(() => undefined);
      }
    }
    for (const [url, sockets] of this.#sockets) {
      if (!live.has(url)) {
        this.#sockets.delete(url);
        sockets.destroy(Object.assign(new Error(`${url} is no longer this node's upstream`), { code: 'UND_ERR_DESTROYED' }));
      }
    }
    for (const u of table.upstreams) if (u.healthy && !this.#pools.has(poolKey(u))) this.#warm(u);
    const only = table.upstreams.length === 1 ? table.upstreams[0]! : null;
    this.#fastTarget = table.role === 'server' && only !== null && only.device === '' && only.url.startsWith('http://')
      ? this.#relayOptions(only, null) : null;
  }

  /**
   * A server node just entered the route table (client nodes only): one pinned connection ahead of
   * the first request, so this worker holds a session ticket and the connections the first requests
   * open resume instead of each paying a full handshake (a cold burst of 200 streams opened 200 at
   * once). No HTTP request is sent. Failing is harmless: the requests connect as they would have.
   */
  #warm(u: Upstream): void {
    if (u.device === '' || this.#settings.tls === null || this.#draining) return;
    if (undici === null) {
      void loadUndici().then(() => { if (this.#table.upstreams.includes(u) && !this.#pools.has(poolKey(u))) this.#warm(u); });
      return;
    }
    const key = poolKey(u);
    this.#pool(u);
    const connector = this.#connectors.get(key);
    if (connector === undefined) return;
    const ac = new AbortController();
    this.#warming.set(key, ac);
    const t0 = performance.now();
    connector.warm(u.url, ac.signal).then(
      (ticket) => this.#log.debug({ server: u.id, ticket, ms: Math.round(performance.now() - t0) }, `connected ahead to server node ${u.id}`),
      (err: Error & { code?: string }) => this.#log.debug({ server: u.id, err, code: err.code }, `no connection ahead to server node ${u.id}: ${err.message}`),
    ).finally(() => { if (this.#warming.get(key) === ac) this.#warming.delete(key); });
  }

  snapshot(): WorkerStats {
    return this.stats.snapshot();
  }

  #pool(upstream: Upstream): Pool {
    const key = poolKey(upstream);
    let pool = this.#pools.get(key);
    if (pool === undefined) {
      const s = this.#settings;
      // A server node: TLS with this node's certificate, pinned to the device id discovery announced.
      const pinned = upstream.device !== '' && s.tls !== null
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

  #handle(req: IncomingMessage, res: ServerResponse): void {
    if (this.#draining) res.shouldKeepAlive = false;
    // Before anything reads req.url or Host: an absolute-form target becomes a path here.
    if (this.#guard.refuses(req, res)) return;
    const url = req.url ?? '/';

    // ollana's own answers wait for the request body (afterBody): a body the parser then rejects is
    // answered 400 alone, not 400 behind a 403 or 503 on the same request.
    if (this.#hostCheck && !hostAllowedOnLoopback(req.headers.host)) {
      // As Ollama does: a foreign Host on a loopback listener is DNS rebinding; 403 with no body.
      this.stats.status(403);
      afterBody(req, () => res.writeHead(403, ['content-length', '0']).end());
      return;
    }

    let cors: string[] | null = null;
    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (!this.#origins.allows(origin, req.headers.host)) {
        this.#log.debug({ origin }, 'browser origin refused');
        this.stats.status(403);
        afterBody(req, () => res.writeHead(403, ['content-length', '0']).end());
        return;
      }
      const allow = ['access-control-allow-origin', origin, 'vary', 'Origin'];
      cors = allow;
      if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
        this.stats.status(204);
        afterBody(req, () => res.writeHead(204, [...allow, 'access-control-allow-methods', CORS_ALLOW_METHODS,
          'access-control-allow-headers', CORS_ALLOW_HEADERS, 'access-control-max-age', CORS_MAX_AGE]).end());
        return;
      }
    }

    if (url.startsWith('/ollana/')) {
      const own = cors ?? [];
      afterBody(req, () => this.#own(req, res, url, own));
      return;
    }

    const ups = this.#table.upstreams;
    if (ups.length === 0) {
      const body = this.#table.role === 'client'
        ? 'ollana: no Ollama server found on the LAN yet; still looking (is `ollana serve` running on a machine with Ollama?)'
        : 'ollana: no upstream Ollama is configured';
      this.stats.status(503);
      const extra = ['retry-after', '1', ...(cors ?? [])];
      afterBody(req, () => sendError(res, url, 503, body, extra));
      return;
    }
    const hasBody = req.headers['content-length'] !== undefined ? req.headers['content-length'] !== '0'
      : req.headers['transfer-encoding'] !== undefined;
    // A server node (one upstream): nothing to decide. Small bodies are read whole first; large or
    // chunked ones stream with backpressure so a 1 GiB upload never sits in memory.
    if (ups.length === 1) {
      const up = ups[0]!;
      // The server node's own Ollama, over plain HTTP: relayed on raw connections (relay/relay.ts).
      const relay = this.#table.role === 'server' && up.device === '' && up.url.startsWith('http://') && relayable(req);
      const send = (body: Buffer | IncomingMessage | null): void => {
        if (relay) this.#relay(req, res, up, body, cors);
        else this.#forward(req, res, [up], body, null, cors);
      };
      if (hasBody && Number(req.headers['content-length'] ?? SMALL_BODY + 1) <= SMALL_BODY) readWhole(req, send);
      else send(hasBody ? req : null);
      return;
    }
    const method = req.method ?? 'GET';
    const path = url.split('?', 1)[0]!;
    const cls = classify(method, path);
    switch (cls) {
      case 'tags':
      case 'ps':
      case 'models':
        afterBody(req, () => this.#aggregate(cls, req, res, cors));
        return;
      case 'affine': {
        const target = affineTarget(ups);
        if (target === null) { this.#noServer(res, url, cors); return; }
        this.#forward(req, res, [target], hasBody ? req : null, null, cors);
        return;
      }
      case 'by-model':
        this.#routeByModel(req, (model, body) => {
          const list = candidates(this.#table.upstreams, model, this.#upInFlight, this.#turn++);
          if (list.length === 0) {
            if (body instanceof Readable) body.destroy();
            this.#noServer(res, url, cors);
            return;
          }
          // A body read whole can be sent again to the next server; one still streaming cannot.
          if (body === null || Buffer.isBuffer(body)) this.#forward(req, res, list, body, (status) => retryableStatus(status, cls), cors);
          else this.#forward(req, res, [list[0]!], body, null, cors);
        });
        return;
      case 'any': {
        const list = candidates(ups, null, this.#upInFlight, this.#turn++);
        if (list.length === 0) { this.#noServer(res, url, cors); return; }
        // Without a body a request can be replayed on the next server; with one, it goes to the first.
        if (hasBody) this.#forward(req, res, [list[0]!], req, null, cors);
        else this.#forward(req, res, list, null, (status) => retryableStatus(status, cls), cors);
        return;
      }
      default: {
        const never: never = cls;
        throw new Error(`unhandled route class ${String(never)}`);
      }
    }
  }

  #noServer(res: ServerResponse, url: string, cors: string[] | null): void {
    this.stats.status(503);
    afterBody(res.req, () => sendError(res, url, 503, 'ollana: no healthy Ollama server node right now; retry shortly', ['retry-after', '1', ...(cors ?? [])]));
  }

  #forward(req: IncomingMessage, res: ServerResponse, list: Upstream[], body: Readable | Buffer | null,
    retryable: ((status: number) => boolean) | null, cors: string[] | null): void {
    if (undici === null) {
      // The first request of this worker that needs a pool waits for undici to load (a few ms, once).
      loadUndici().then(() => {
        if (!res.destroyed) this.#forward(req, res, list, body, retryable, cors);
      }, (err: Error) => {
        this.stats.status(500);
        sendError(res, req.url ?? '/', 500, `ollana: cannot load its HTTP client: ${err.message}`, cors ?? []);
      });
      return;
    }
    const headers = upstreamRequestHeaders(req, 'http');
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const handler = new Forward(req, res, {
      stats: this.stats,
      log: this.#log,
      candidates: this.#reachableFirst(list),
      describe: (u) => (u.id === 'local' ? `Ollama at ${u.url}` : `server node ${u.id} at ${u.url}`),
      dispatch: (u, h) => this.#pool(u).dispatch({
        path: u.basePath === '' ? url : u.basePath + url,
        method,
        headers,
        body,
        // Never let undici retry or pipeline behind a generation: each request is its own exchange.
        idempotent: false,
        blocking: true,
      }, h),
      retryable,
      unreachable: this.#onUnreachable,
      refusedBy: this.#onRefusedBy,
      extraHeaders: cors,
      dropHeaders: cors === null ? null : DROP_UPSTREAM_CORS,
      attempt: this.#onAttempt,
      onFinish: this.#onFinish,
      clientBroken: this.#guard.broken,
      outOfFiles: this.#guard.outOfFiles,
    });
    handler.start();
  }

  #relay(req: IncomingMessage, res: ServerResponse, up: Upstream, body: Buffer | IncomingMessage | null, cors: string[] | null): void {
    const relay = new Relay(new NodeDownstream(req, res, body, this.#guard.broken), this.#relayOptions(up, cors), downstreamResponseHeaders);
    res.once('close', () => relay.clientGone());
    // node:http hands over a request as soon as its head is parsed and parses the rest of the same
    // read afterwards, so bad bytes behind the head (broken chunk framing, a smuggled request) reach
    // the connection guard before anything goes out: setImmediate runs after that.
    setImmediate(() => relay.start());
  }

  /** How requests to the local Ollama `up` are relayed (CORS headers `cors`, or null). */
  #relayOptions(up: Upstream, cors: string[] | null): RelayOptions {
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
    return {
      stats: this.stats,
      log: this.#log,
      sockets,
      basePath: up.basePath,
      upstream: `Ollama at ${up.url}`,
      headersTimeoutMs: s.headersTimeoutMs,
      bodyTimeoutMs: s.bodyTimeoutMs,
      extraHeaders: cors,
      dropHeaders: cors === null ? null : DROP_UPSTREAM_CORS,
      onFinish: this.#onFinish,
      outOfFiles: this.#guard.outOfFiles,
    };
  }

  /**
   * Moves upstreams that refused a connection in the last UNREACHABLE_MS to the end: until discovery
   * declares a dead server gone, the requests in between go where they will be answered instead of
   * each paying a refused connection and a retry.
   */
  #reachableFirst(list: Upstream[]): Upstream[] {
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

  /**
   * Reads a JSON request body only until its model is known (model-scan.ts), then hands on the model
   * and the body: whole (a Buffer, or null for none) if it ended meanwhile, else a stream of the bytes
   * read so far followed by the rest, with backpressure. No body is held whole, however large.
   */
  #routeByModel(req: IncomingMessage, then: (model: string | null, body: Buffer | Readable | null) => void): void {
    const declared = Number(req.headers['content-length'] ?? '-1');
    if (declared >= 0 && declared <= MODEL_SCAN_BYTES) {
      // Small enough to hold (nearly every request): read whole, so it can go to the next server too.
      readWhole(req, (body) => then(body.length === 0 ? null : modelOf(body), body.length === 0 ? null : body));
      return;
    }
    const scan = new ModelScan(MODEL_SCAN_BYTES);
    const chunks: Buffer[] = [];
    let size = 0;
    let decided = false;
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      size += chunk.length;
      if (scan.feed(chunk) === 'more') return;
      decided = true;
      req.off('data', onData);
      req.off('end', onEnd);
      req.pause();
      then(scan.model, prepended(chunks, req));
    };
    const onEnd = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      if (decided) return;
      then(scan.model, size === 0 ? null : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    req.on('data', onData);
    req.on('end', onEnd);
  }

  #aggregate(cls: 'tags' | 'ps' | 'models', req: IncomingMessage, res: ServerResponse, cors: string[] | null): void {
    if (undici === null) {
      loadUndici().then(() => { if (!res.destroyed) this.#aggregate(cls, req, res, cors); }, (err: Error) => {
        this.stats.status(500);
        sendError(res, req.url ?? '/', 500, `ollana: cannot load its HTTP client: ${err.message}`, cors ?? []);
      });
      return;
    }
    const url = req.url ?? '/';
    const ups = this.#table.upstreams.filter((u) => u.healthy);
    this.stats.requests += 1;
    aggregate(cls, ups, (u) => this.#pool(u)).then((result) => {
      if (result.answered === 0) {
        this.stats.status(502);
        sendError(res, url, 502, `ollana: no server node answered ${url}: ${result.failures.join('; ')}`, cors ?? []);
        return;
      }
      if (result.failures.length > 0) this.#log.debug({ failures: result.failures }, 'some server nodes did not answer');
      this.stats.status(200);
      this.stats.completed += 1;
      if (req.method === 'HEAD') {
        res.writeHead(200, ['content-type', 'application/json; charset=utf-8', ...(cors ?? [])]).end();
        return;
      }
      sendJson(res, 200, result.body, cors ?? []);
    }, (err: Error) => {
      this.stats.status(502);
      sendError(res, url, 502, `ollana: ${err.message}`, cors ?? []);
    });
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
    this.#front.closeIdle();
    if (this.stats.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadlineMs);
        this.#drained = () => { clearTimeout(timer); resolve(); };
      });
    }
    const cut = this.stats.inFlight;
    this.#server.closeAllConnections();
    this.#front.closeAll();
    this.#front.stop();
    this.#guard.close();
    for (const warming of this.#warming.values()) warming.abort();
    const closing = Object.assign(new Error('this node is shutting down'), { code: 'UND_ERR_DESTROYED' });
    for (const sockets of this.#sockets.values()) sockets.destroy(closing);
    await Promise.all([...this.#pools.values()].map((p) => p.destroy().catch(() => undefined)));
    return cut;
  }
}
