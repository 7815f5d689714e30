/**
 * The node:http path of a proxy worker: every request the fast front does not relay itself (a client
 * node's requests, and a server node's that need node:http). Checks the Host and browser rules,
 * answers ollana's own /ollana/ paths (own-endpoints.ts), and forwards the rest: a server node's to
 * its local Ollama through the relay (relay/) or an undici pool, a client node's by route class to
 * the server nodes through their pools (route/).
 */
import type { SchedGate } from '../sched/gate.ts';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
import type { Logger } from '../log.ts';
import type { RouteTable, Upstream } from '../protocol/messages.ts';
import {
  CORS_ALLOW_HEADERS,
  CORS_ALLOW_METHODS,
  CORS_MAX_AGE,
  OriginPolicy,
  hostAllowedOnLoopback,
} from './listen/cors.ts';
import { sendError, sendJson } from './http/errors-http.ts';
import { aggregate } from './route/aggregate.ts';
import { afterBody } from './listen/body-watch.ts';
import type { ConnectionGuard } from './listen/connection-guard.ts';
import { Forward } from './route/forward.ts';
import { affineTarget, candidates, classify, retryableStatus } from './route/router.ts';
import { routeByModel } from './route/body-model.ts';
import { ModelRoutes, isManaged } from './route/model-routes.ts';
import { DEFAULTS } from '../config/defaults.ts';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './http/headers.ts';
import { readWhole } from './http/request-body.ts';
import type { StatsCollector } from './stats.ts';
import { Relay } from './relay/relay.ts';
import type { RelayOptions } from './relay/relay-contract.ts';
import { NodeDownstream, relayable } from './relay/node-downstream.ts';
import { type Upstreams, loadUndici, undiciLoaded } from './route/upstreams.ts';
import { OwnEndpoints } from './own-endpoints.ts';
import type { ProxyHost, ProxySettings } from './proxy-server.ts';

/**
 * Largest declared body a server node reads whole before forwarding. Handing undici a Buffer instead
 * of the request stream saves the stream plumbing per request (bench: CPU per request 0.76x for
 * generate, 0.93x for embed, peak RSS halved); a chat with images in base64 is above it and streams.
 */
export const SMALL_BODY = 64 * 1024;

const DROP_UPSTREAM_CORS = new Set([
  'access-control-allow-origin',
  'access-control-allow-credentials',
  'access-control-expose-headers',
  'vary',
]);

export class NodeHandler {
  readonly #settings: ProxySettings;
  readonly #log: Logger;
  readonly #stats: StatsCollector;
  readonly #guard: ConnectionGuard;
  readonly #upstreams: Upstreams;
  readonly #own: OwnEndpoints;
  readonly #origins: OriginPolicy;
  readonly #hostCheck: boolean;
  readonly #onFinish: () => void;
  /** Where each model lives, and the requests that go there (a client node). */
  readonly #models: ModelRoutes;
  /** The routes now (ProxyServer.setRoutes). */
  table: RouteTable = { version: 0, role: 'server', upstreams: [] };
  /** Set when the worker drains: answers close their connections. */
  draining = false;
  /** Admission of the local Ollama's inference requests (sched/gate.ts), or null. */
  admission: SchedGate | null = null;
  #turn = 0;

  /**
   * `hostCheck`: the listener is on loopback, so a foreign Host is refused. `onFinish`: called when a
   * forwarded request ends (the drain waits on it).
   */
  constructor(
    settings: ProxySettings,
    log: Logger,
    host: ProxyHost,
    stats: StatsCollector,
    guard: ConnectionGuard,
    upstreams: Upstreams,
    hostCheck: boolean,
    onFinish: () => void,
  ) {
    this.#settings = settings;
    this.#log = log;
    this.#stats = stats;
    this.#guard = guard;
    this.#upstreams = upstreams;
    this.#own = new OwnEndpoints(settings.debugHooks, log, host);
    this.#origins = new OriginPolicy(settings.origins);
    this.#hostCheck = hostCheck;
    this.#onFinish = onFinish;
    this.#models = new ModelRoutes(upstreams, stats, log, settings.spillAfter ?? DEFAULTS.spillAfter, {
      forward: (...a) => this.#forward(...a),
      noServer: (res, url, cors) => this.#noServer(res, url, cors),
    });
  }

  handle(req: IncomingMessage, res: ServerResponse): void {
    if (this.draining) res.shouldKeepAlive = false;
    // Before anything reads req.url or Host: an absolute-form target becomes a path here.
    if (this.#guard.refuses(req, res)) return;
    const url = req.url ?? '/';

    // ollana's own answers wait for the request body (afterBody): a body the parser then rejects is
    // answered 400 alone, not 400 behind a 403 or 503 on the same request.
    if (this.#hostCheck && !hostAllowedOnLoopback(req.headers.host)) {
      // As Ollama does: a foreign Host on a loopback listener is DNS rebinding; 403 with no body.
      this.#stats.status(403);
      afterBody(req, () => res.writeHead(403, ['content-length', '0']).end());
      return;
    }

    let cors: string[] | null = null;
    const origin = req.headers.origin;
    if (origin !== undefined) {
      if (!this.#origins.allows(origin, req.headers.host)) {
        this.#log.debug({ origin }, 'browser origin refused');
        this.#stats.status(403);
        afterBody(req, () => res.writeHead(403, ['content-length', '0']).end());
        return;
      }
      const allow = ['access-control-allow-origin', origin, 'vary', 'Origin'];
      cors = allow;
      if (req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined) {
        this.#stats.status(204);
        afterBody(req, () =>
          res
            .writeHead(204, [
              ...allow,
              'access-control-allow-methods',
              CORS_ALLOW_METHODS,
              'access-control-allow-headers',
              CORS_ALLOW_HEADERS,
              'access-control-max-age',
              CORS_MAX_AGE,
            ])
            .end(),
        );
        return;
      }
    }

    if (url.startsWith('/ollana/')) {
      const own = cors ?? [];
      afterBody(req, () => this.#own.answer(req, res, url, own, this.table.role, this.draining));
      return;
    }

    const ups = this.table.upstreams;
    if (ups.length === 0) {
      const body =
        this.table.role === 'client'
          ? 'ollana: no Ollama server found on the LAN yet; still looking (is `ollana serve` running on a machine with Ollama?)'
          : 'ollana: no upstream Ollama is configured';
      this.#stats.status(503);
      const extra = ['retry-after', '1', ...(cors ?? [])];
      afterBody(req, () => sendError(res, url, 503, body, extra));
      return;
    }
    const hasBody =
      req.headers['content-length'] !== undefined
        ? req.headers['content-length'] !== '0'
        : req.headers['transfer-encoding'] !== undefined;
    // A server node (one upstream): nothing to decide. Small bodies are read whole first; large or
    // chunked ones stream with backpressure so a 1 GiB upload never sits in memory.
    if (ups.length === 1) {
      const up = ups[0]!;
      // The server node's own Ollama, over plain HTTP: relayed on raw connections (relay/relay.ts).
      const relay = this.table.role === 'server' && up.device === '' && up.url.startsWith('http://') && relayable(req);
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
        if (isManaged(path) && hasBody && Number(req.headers['content-length'] ?? SMALL_BODY + 1) <= SMALL_BODY) {
          readWhole(req, (body) => this.#models.manage(req, res, this.table.upstreams, body, cors));
          return;
        }
        const target = affineTarget(ups);
        if (target === null) {
          this.#noServer(res, url, cors);
          return;
        }
        this.#forward(req, res, [target], hasBody ? req : null, null, cors);
        return;
      }
      case 'by-model':
        routeByModel(req, (model, body) =>
          this.#models.byModel(req, res, this.table.upstreams, model, body, cors, this.#turn++),
        );
        return;
      case 'any': {
        const list = candidates(ups, null, this.#upstreams.inFlight, this.#turn++);
        if (list.length === 0) {
          this.#noServer(res, url, cors);
          return;
        }
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
    this.#stats.status(503);
    afterBody(res.req, () =>
      sendError(res, url, 503, 'ollana: no healthy Ollama server node right now; retry shortly', [
        'retry-after',
        '1',
        ...(cors ?? []),
      ]),
    );
  }

  #forward(
    req: IncomingMessage,
    res: ServerResponse,
    list: Upstream[],
    body: Readable | Buffer | null,
    retryable: ((status: number) => boolean) | null,
    cors: string[] | null,
    model: string | null = null,
    onServed: ((u: Upstream, status: number) => void) | null = null,
  ): void {
    if (!undiciLoaded()) {
      // The first request of this worker that needs a pool waits for undici to load (a few ms, once).
      loadUndici().then(
        () => {
          if (!res.destroyed) this.#forward(req, res, list, body, retryable, cors, model, onServed);
        },
        (err: Error) => {
          this.#stats.status(500);
          sendError(res, req.url ?? '/', 500, `ollana: cannot load its HTTP client: ${err.message}`, cors ?? []);
        },
      );
      return;
    }
    const headers = upstreamRequestHeaders(req, 'http');
    const method = req.method ?? 'GET';
    const url = req.url ?? '/';
    const handler = new Forward(req, res, {
      stats: this.#stats,
      log: this.#log,
      model,
      candidates: this.#upstreams.reachableFirst(list),
      describe: (u) => (u.id === 'local' ? `Ollama at ${u.url}` : `server node ${u.id} at ${u.url}`),
      dispatch: (u, h) =>
        this.#upstreams.pool(u).dispatch(
          {
            path: u.basePath === '' ? url : u.basePath + url,
            method,
            headers,
            body,
            // Never let undici retry or pipeline behind a generation: each request is its own exchange.
            idempotent: false,
            blocking: true,
          },
          h,
        ),
      retryable,
      unreachable: this.#upstreams.onUnreachable,
      refusedBy: this.#upstreams.onRefusedBy,
      extraHeaders: cors,
      dropHeaders: cors === null ? null : DROP_UPSTREAM_CORS,
      attempt: this.#upstreams.onAttempt,
      onFinish: this.#onFinish,
      onServed,
      clientBroken: this.#guard.broken,
      outOfFiles: this.#guard.outOfFiles,
    });
    handler.start();
  }

  #relay(
    req: IncomingMessage,
    res: ServerResponse,
    up: Upstream,
    body: Buffer | IncomingMessage | null,
    cors: string[] | null,
  ): void {
    const relay = new Relay(
      new NodeDownstream(req, res, body, this.#guard.broken),
      this.relayOptions(up, cors),
      downstreamResponseHeaders,
    );
    res.once('close', () => relay.clientGone());
    // node:http hands over a request as soon as its head is parsed and parses the rest of the same
    // read afterwards, so bad bytes behind the head (broken chunk framing, a smuggled request) reach
    // the connection guard before anything goes out: setImmediate runs after that.
    setImmediate(() => relay.start());
  }

  /** How requests to the local Ollama `up` are relayed (CORS headers `cors`, or null). */
  relayOptions(up: Upstream, cors: string[] | null): RelayOptions {
    const s = this.#settings;
    const sockets = this.#upstreams.sockets(up);
    return {
      stats: this.#stats,
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
      admission: this.admission,
    };
  }

  #aggregate(cls: 'tags' | 'ps' | 'models', req: IncomingMessage, res: ServerResponse, cors: string[] | null): void {
    if (!undiciLoaded()) {
      loadUndici().then(
        () => {
          if (!res.destroyed) this.#aggregate(cls, req, res, cors);
        },
        (err: Error) => {
          this.#stats.status(500);
          sendError(res, req.url ?? '/', 500, `ollana: cannot load its HTTP client: ${err.message}`, cors ?? []);
        },
      );
      return;
    }
    const url = req.url ?? '/';
    const ups = this.table.upstreams.filter((u) => u.healthy);
    this.#stats.requests += 1;
    aggregate(cls, ups, (u) => this.#upstreams.pool(u)).then(
      (result) => {
        if (result.answered === 0) {
          this.#stats.status(502);
          sendError(res, url, 502, `ollana: no server node answered ${url}: ${result.failures.join('; ')}`, cors ?? []);
          return;
        }
        if (result.failures.length > 0)
          this.#log.debug({ failures: result.failures }, 'some server nodes did not answer');
        this.#stats.status(200);
        this.#stats.completed += 1;
        if (req.method === 'HEAD') {
          res.writeHead(200, ['content-type', 'application/json; charset=utf-8', ...(cors ?? [])]).end();
          return;
        }
        sendJson(res, 200, result.body, cors ?? []);
      },
      (err: Error) => {
        this.#stats.status(502);
        sendError(res, url, 502, `ollana: ${err.message}`, cors ?? []);
      },
    );
  }
}
