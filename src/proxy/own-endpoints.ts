/**
 * ollana's own endpoints under /ollana/ (health, status, metrics, the debug crash hook), answered by every
 * proxy worker; the status itself comes from the supervisor, which sees all workers (ProxyHost).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.ts';
import type { RouteTable } from '../protocol/messages.ts';
import { sendError, sendJson } from './http/errors-http.ts';
import type { ProxyHost } from './proxy-server.ts';
import { sendMetrics } from '../metrics/exposition.ts';

export class OwnEndpoints {
  readonly #debugHooks: boolean;
  readonly #log: Logger;
  readonly #host: ProxyHost;

  /** `debugHooks`: POST /ollana/v1/debug/crash is served (ProxySettings.debugHooks). */
  constructor(debugHooks: boolean, log: Logger, host: ProxyHost) {
    this.#debugHooks = debugHooks;
    this.#log = log;
    this.#host = host;
  }

  /** Answers `req` for `url` under /ollana/ with the headers `cors`; `role` and `draining` are the worker's now. */
  answer(
    req: IncomingMessage,
    res: ServerResponse,
    url: string,
    cors: string[],
    role: RouteTable['role'],
    draining: boolean,
  ): void {
    const path = url.split('?', 1)[0];
    if (path === '/ollana/v1/health' && (req.method === 'GET' || req.method === 'HEAD')) {
      sendJson(res, 200, { ok: true, role, draining }, cors);
      return;
    }
    if (path === '/ollana/v1/status' && req.method === 'GET') {
      this.#host.status().then(
        (status) => sendJson(res, 200, status, cors),
        (err: Error) => sendError(res, url, 503, `ollana: status unavailable: ${err.message}`, cors),
      );
      return;
    }
    if (path === '/ollana/v1/metrics' && (req.method === 'GET' || req.method === 'HEAD')) {
      this.#host.metrics().then(
        (text) => sendMetrics(res, text, cors),
        (err: Error) => sendError(res, url, 503, `ollana: metrics unavailable: ${err.message}`, cors),
      );
      return;
    }
    if (path === '/ollana/v1/debug/crash' && req.method === 'POST' && this.#debugHooks) {
      this.#log.warn('crash requested through the debug hook');
      this.#host.crash();
      return;
    }
    sendError(res, url, 404, `ollana: no such ollana endpoint ${path}; see /ollana/v1/status`, cors);
  }
}
