/**
 * The parts of undici ollana uses (Pool, Client, Agent and the request API), without the rest of
 * undici. The package's entry (index.js) loads all of it, fetch, WebSocket, EventSource, caches and
 * mocks included, and every thread is an isolate of its own: the entry cost each proxy worker ~10 MB
 * of memory more than the Pool's modules, and the main thread ~12 MB. undici is pinned and has no
 * "exports" map, so these files can be required by their paths; they are the very classes the entry
 * exports, typed from the entry (test/unit/worker-imports.test.ts holds them to that).
 */
import { createRequire } from 'node:module';
import type { Agent as UndiciAgent, Client as UndiciClient, Dispatcher, Pool as UndiciPool } from 'undici';

const require = createRequire(import.meta.url);
// The one thing the entry does besides exporting: it puts the convenience API (request, stream,
// pipeline, upgrade, connect) on Dispatcher.prototype. aggregate.ts calls pool.request. Doing it
// again where the entry is loaded too assigns the same functions.
Object.assign(require('undici/lib/dispatcher/dispatcher.js').prototype, require('undici/lib/api/index.js'));

export const Pool = require('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
export type Pool = UndiciPool;
export const Client = require('undici/lib/dispatcher/client.js') as typeof UndiciClient;
export type Client = UndiciClient;
export const Agent = require('undici/lib/dispatcher/agent.js') as typeof UndiciAgent;
export type Agent = UndiciAgent;

export type RequestOptions = Omit<Dispatcher.RequestOptions, 'origin' | 'path' | 'method'> & {
  readonly method?: Dispatcher.HttpMethod;
  /** where the request goes through (default: one Agent shared by this thread, as undici's global one) */
  readonly dispatcher?: Dispatcher;
};

let shared: UndiciAgent | null = null;

/** undici's `request(url, options)`: the origin and path come from the URL. */
export function request(url: string, options: RequestOptions = {}): Promise<Dispatcher.ResponseData> {
  const { dispatcher, ...rest } = options;
  const target = new URL(url);
  if (dispatcher === undefined) shared ??= new Agent();
  return (dispatcher ?? (shared as UndiciAgent)).request({
    ...rest,
    origin: target.origin,
    path: `${target.pathname}${target.search}`,
    method: rest.method ?? 'GET',
  });
}
