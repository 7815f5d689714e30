/**
 * node:http and node:https, taken with require instead of `import`. An ES import of a built-in module
 * builds its namespace by reading every export, and node:http exports WebSocket, CloseEvent and
 * MessageEvent as lazy getters over Node's internal copy of undici: importing node:http loads that
 * whole library (+5.7 MB per thread, measured: an isolate that imports node:http holds 15.1 MB, one
 * that requires it 9.4 MB). Every thread that serves or asks HTTP would pay it; require reads only
 * what is used. Types still come from the modules themselves (`import type`, which loads nothing).
 */
import { createRequire } from 'node:module';
import type * as Http from 'node:http';
import type * as Https from 'node:https';

const require = createRequire(import.meta.url);

export const http = require('node:http') as typeof Http;

/** node:https, loaded on first use: only a server node's TLS listener needs it. */
export function https(): typeof Https {
  return require('node:https') as typeof Https;
}
