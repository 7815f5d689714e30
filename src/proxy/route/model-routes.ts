/**
 * A client node's requests that depend on where a model lives (issue #17): generation and embedding
 * go warm-first (placement.ts, residency.ts); an unload (`ollama stop`: an empty prompt, or no
 * messages, with keep_alive 0) goes to every server that has the model; delete goes to every server
 * that has it (success if any succeeded, else the first error); copy (by `source`) and push go to a
 * server that has the model. Pull, create and blobs stay on the leader (router.ts), so that a blob
 * upload and the create that uses it meet on one machine.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import type { Logger } from '../../log.ts';
import type { Upstream } from '../../protocol/messages.ts';
import { sendError } from '../http/errors-http.ts';
import { upstreamRequestHeaders } from '../http/headers.ts';
import type { StatsCollector } from '../stats.ts';
import { lists, place } from './placement.ts';
import { Residency } from './residency.ts';
import { candidates, retryableStatus } from './router.ts';
import { parseModel } from './model-name.ts';
import { normalizeModel } from './model-name.ts';
import type { Upstreams } from './upstreams.ts';

/** Requests that load their model where they run. */
const LOADING = new Set([
  '/api/generate',
  '/api/chat',
  '/api/embed',
  '/api/embeddings',
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
  '/v1/responses',
  '/v1/messages',
]);

/** Model management that goes where the model is, and the body field naming the model. */
const MANAGED: Readonly<Record<string, readonly string[]>> = {
  '/api/delete': ['model', 'name'],
  '/api/copy': ['source'],
  '/api/push': ['model', 'name'],
};

const FAN_OUT_TIMEOUT_MS = 30_000;

/** keep_alive as Ollama reads it (a number of seconds, or a Go duration string) is zero. */
function zeroKeepAlive(v: unknown): boolean {
  if (typeof v === 'number') return v === 0;
  return typeof v === 'string' && /^[+]?0*(\.0*)?(ns|us|µs|ms|s|m|h)?$/.test(v.trim()) && /0/.test(v);
}

/** Whether a /api/generate or /api/chat body only unloads its model (Ollama answers it without loading). */
export function isUnload(path: string, body: Buffer): boolean {
  if (path !== '/api/generate' && path !== '/api/chat') return false;
  let j: Record<string, unknown>;
  try {
    j = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
  } catch {
    return false;
  }
  if (j === null || typeof j !== 'object' || !zeroKeepAlive(j.keep_alive)) return false;
  if (path === '/api/generate') return j.prompt === undefined || j.prompt === '';
  return j.messages === undefined || (Array.isArray(j.messages) && j.messages.length === 0);
}

/** The model a management body names (`source` for copy), or null. */
export function managedModel(path: string, body: Buffer): string | null {
  const keys = MANAGED[path];
  if (keys === undefined) return null;
  try {
    const j = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    for (const k of keys) if (typeof j[k] === 'string' && j[k] !== '') return j[k];
  } catch {}
  return null;
}

export function isManaged(path: string): boolean {
  return Object.hasOwn(MANAGED, path);
}

interface Answer {
  readonly u: Upstream;
  readonly status: number;
  readonly contentType: string;
  readonly body: Buffer;
}

/** How the handler sends a request on (handler.ts): forward with retries before the first byte, or 503. */
export interface Sender {
  forward(
    req: IncomingMessage,
    res: ServerResponse,
    list: Upstream[],
    body: Buffer | Readable | null,
    retryable: ((status: number) => boolean) | null,
    cors: string[] | null,
    model: string | null,
    onServed: ((u: Upstream, status: number) => void) | null,
  ): void;
  noServer(res: ServerResponse, url: string, cors: string[] | null): void;
}

export class ModelRoutes {
  readonly residency: Residency;
  readonly #upstreams: Upstreams;
  readonly #stats: StatsCollector;
  readonly #log: Logger;
  readonly #spillAfter: number;
  readonly #send: Sender;

  constructor(upstreams: Upstreams, stats: StatsCollector, log: Logger, spillAfter: number, send: Sender) {
    this.#upstreams = upstreams;
    this.#stats = stats;
    this.#log = log;
    this.#spillAfter = spillAfter;
    this.#send = send;
    this.residency = new Residency((u) => upstreams.pool(u));
  }

  /**
   * A request naming `model` in its body (null: none found): an unload goes to every server that has
   * the model, anything else to the candidates warm first; without a model, the least busy server
   * (`turn` rotates equally idle ones).
   */
  byModel(
    req: IncomingMessage,
    res: ServerResponse,
    ups: readonly Upstream[],
    model: string | null,
    body: Buffer | Readable | null,
    cors: string[] | null,
    turn: number,
  ): void {
    if (model !== null && Buffer.isBuffer(body) && this.#unload(req, res, ups, model, body, cors ?? [])) return;
    const list = model === null ? candidates(ups, null, this.#upstreams.inFlight, turn) : this.order(ups, model);
    if (list.length === 0) {
      if (body instanceof Readable) body.destroy();
      this.#send.noServer(res, req.url ?? '/', cors);
      return;
    }
    const served = this.served((req.url ?? '/').split('?', 1)[0]!, model, res);
    // A body read whole can be sent again to the next server; one still streaming cannot.
    const cloud = model !== null && parseModel(model).cloud;
    if (body === null || Buffer.isBuffer(body))
      this.#send.forward(
        req,
        res,
        list,
        body,
        (status) => retryableStatus(status, 'by-model', cloud),
        cors,
        model,
        served,
      );
    else this.#send.forward(req, res, [list[0]!], body, null, cors, model, served);
  }

  /** Candidates for a request naming `model`, warm first. */
  order(ups: readonly Upstream[], model: string): Upstream[] {
    return place(ups, model, {
      inFlight: this.#upstreams.inFlight,
      loaded: (u) => this.residency.loaded(u),
      spillAfter: this.#spillAfter,
    });
  }

  /**
   * What to do once a server answered a request for `model` on `path`: a loading request answered 200
   * where the model was not known loaded has loaded it there (noted at once, and /api/ps read again
   * when the request ends: the load can have evicted another model). Null when nothing can change.
   */
  served(path: string, model: string | null, res: ServerResponse): ((u: Upstream, status: number) => void) | null {
    if (model === null || !LOADING.has(path)) return null;
    return (u, status) => {
      if (status !== 200 || this.residency.loaded(u).has(normalizeModel(model))) return;
      this.residency.mark(u, model, true);
      res.once('close', () => this.residency.refresh(u));
    };
  }

  /** An unload: sent to every server that has the model; true if `body` is one (and it was taken). */
  #unload(
    req: IncomingMessage,
    res: ServerResponse,
    ups: readonly Upstream[],
    model: string,
    body: Buffer,
    cors: string[],
  ): boolean {
    if (!isUnload((req.url ?? '/').split('?', 1)[0]!, body)) return false;
    this.#fanOut(req, res, this.#holders(ups, model), body, cors, (ok) => {
      for (const u of ok) this.residency.mark(u, model, false);
    });
    return true;
  }

  /** Delete, copy, push: where the model is. `body` is the whole request body. */
  manage(
    req: IncomingMessage,
    res: ServerResponse,
    ups: readonly Upstream[],
    body: Buffer,
    cors: string[] | null,
  ): void {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    const model = managedModel(path, body);
    if (path === '/api/delete' && model !== null) {
      this.#fanOut(req, res, this.#holders(ups, model), body, cors ?? [], (ok) => {
        for (const u of ok) {
          this.residency.mark(u, model, false);
          this.residency.refresh(u);
        }
      });
      return;
    }
    const list = model === null ? ups.filter((u) => u.healthy) : this.order(ups, model);
    if (list.length === 0) {
      this.#send.noServer(res, req.url ?? '/', cors);
      return;
    }
    // A server without the model answers 404 before any byte: the next one is tried.
    const retry = (status: number): boolean => status === 404 || status === 502 || status === 503;
    this.#send.forward(req, res, list, body, retry, cors, model, null);
  }

  /** Healthy servers that list `model`; every healthy one when none does (their lists may be stale). */
  #holders(ups: readonly Upstream[], model: string): Upstream[] {
    const healthy = ups.filter((u) => u.healthy);
    const want = normalizeModel(model);
    const having = healthy.filter((u) => lists(u, want) || this.residency.loaded(u).has(want));
    return having.length > 0 ? having : healthy;
  }

  /**
   * Sends the request to every target at once and answers with the first success (in target order),
   * else the first error; `done` gets the servers that succeeded.
   */
  #fanOut(
    req: IncomingMessage,
    res: ServerResponse,
    targets: Upstream[],
    body: Buffer,
    cors: string[],
    done: (ok: Upstream[]) => void,
  ): void {
    const url = req.url ?? '/';
    this.#stats.requests += 1;
    if (targets.length === 0) {
      this.#stats.status(503);
      sendError(res, url, 503, 'ollana: no healthy Ollama server node right now; retry shortly', [
        'retry-after',
        '1',
        ...cors,
      ]);
      return;
    }
    const headers = upstreamRequestHeaders(req, 'http');
    const method = (req.method ?? 'POST') as 'POST' | 'DELETE';
    const ask = async (u: Upstream): Promise<Answer> => {
      const r = await this.#upstreams.pool(u).request({
        path: u.basePath + url,
        method,
        headers,
        body,
        headersTimeout: FAN_OUT_TIMEOUT_MS,
        bodyTimeout: FAN_OUT_TIMEOUT_MS,
      });
      const ct = r.headers['content-type'];
      return {
        u,
        status: r.statusCode,
        contentType: (Array.isArray(ct) ? ct[0] : ct) ?? 'application/json; charset=utf-8',
        body: Buffer.from(await r.body.arrayBuffer()),
      };
    };
    void Promise.allSettled(targets.map(ask)).then((results) => {
      const answers = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const ok = answers.filter((a) => a.status >= 200 && a.status < 300);
      done(ok.map((a) => a.u));
      const pick = ok[0] ?? answers[0];
      if (pick === undefined) {
        const why = results.map((r, i) => `${targets[i]!.id}: ${(r as PromiseRejectedResult).reason?.message}`);
        this.#stats.status(502);
        sendError(res, url, 502, `ollana: no server node answered ${url}: ${why.join('; ')}`, cors);
        return;
      }
      this.#log.debug(
        { path: url, servers: targets.map((u) => u.id), ok: ok.length },
        'sent to every server that has the model',
      );
      this.#stats.status(pick.status);
      this.#stats.completed += 1;
      if (res.destroyed) return;
      res.writeHead(pick.status, [
        'content-type',
        pick.contentType,
        'content-length',
        String(pick.body.length),
        ...cors,
      ]);
      res.end(pick.body);
    });
  }
}
