/**
 * The connection guard's settings (connection-guard.ts) and the node:http createServer options its
 * header limits live in.
 */
import type { ServerOptions } from 'node:http';

/** Request line plus header block, as Node's parser counts them (its default is 16 KiB). */
export const MAX_HEADER_BYTES = 64 * 1024;
export interface GuardSettings {
  /** From connect, or from a request's first byte, until its headers are complete; 0 = no limit. */
  readonly requestHeadersTimeoutMs: number;
  /** Idle time allowed between requests, stray empty lines or not (idle-watch.ts); 0 = no limit. */
  readonly keepAliveTimeoutMs: number;
  /** Time a request body may send nothing while ollana reads it (body-watch.ts); 0 = no limit. */
  readonly requestBodyTimeoutMs: number;
  /** Open connections of the whole node; 0 = no limit. */
  readonly maxConnections: number;
  /** Where the workers count their connections (connection-cap.ts); absent: this worker alone. */
  readonly connectionBoard?: Int32Array;
}

/** The createServer options the guard's limits live in. */
export function guardedServerOptions(
  s: GuardSettings,
): Pick<ServerOptions, 'headersTimeout' | 'connectionsCheckingInterval' | 'maxHeaderSize' | 'requireHostHeader'> {
  return {
    headersTimeout: s.requestHeadersTimeoutMs,
    // Node checks header deadlines on this interval (default 30 s): a slow connection lives at most
    // the timeout plus one interval. A quarter of the timeout, at most 1 s, keeps that close.
    connectionsCheckingInterval: Math.max(100, Math.min(1_000, Math.floor(s.requestHeadersTimeoutMs / 4) || 1_000)),
    maxHeaderSize: MAX_HEADER_BYTES,
    // Node would answer an HTTP/1.1 request without Host itself: 400, no body, nothing logged. The
    // guard refuses it instead (#refusesHost), with an error body saying what to send.
    requireHostHeader: false,
  };
}
