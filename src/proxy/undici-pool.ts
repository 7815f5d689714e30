/**
 * undici's Pool without the rest of undici, for the proxy workers. The package's entry (index.js)
 * loads all of it, fetch, WebSocket, EventSource, caches and mocks included, and each proxy worker is
 * an isolate of its own: the entry cost every worker ~10 MB of memory more than the Pool's modules.
 * undici is pinned and has no "exports" map, so the Pool's file can be required by its path; it is
 * the very class the entry exports, typed from the entry (test/unit/worker-imports.test.ts).
 */
import { createRequire } from 'node:module';
import type { Pool as UndiciPool } from 'undici';

const require = createRequire(import.meta.url);
// The one thing the entry does besides exporting: it puts the convenience API (request, stream,
// pipeline, upgrade, connect) on Dispatcher.prototype. aggregate.ts calls pool.request. Doing it
// again where the entry is loaded too assigns the same functions.
Object.assign(require('undici/lib/dispatcher/dispatcher.js').prototype, require('undici/lib/api/index.js'));

export const Pool = require('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
export type Pool = UndiciPool;
