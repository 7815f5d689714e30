/**
 * undici's Pool without the rest of undici, for the proxy workers. The package's entry (index.js)
 * loads all of it, fetch, WebSocket, EventSource, caches and mocks included, and each proxy worker is
 * an isolate of its own: the entry cost every worker ~10 MB of memory more than the Pool's modules.
 * undici is pinned and has no "exports" map, so the Pool's file can be required by its path; it is
 * the very class the entry exports (test/unit/worker-imports.test.ts), typed from the entry.
 */
import { createRequire } from 'node:module';
import type { Pool as UndiciPool } from 'undici';

export const Pool = createRequire(import.meta.url)('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
export type Pool = UndiciPool;
