/**
 * What the connection guard (connection-guard.ts) refuses and how it answers: the kinds of refusal
 * its RefusalLog counts, the raw answer it writes before closing, and the answer to bytes Node's
 * HTTP parser (llhttp) refused.
 */
import type { Duplex } from 'node:stream';
import { MAX_HEADER_BYTES } from './guard-settings.ts';
import type { RefusalLog } from './refusal-log.ts';
import { remote } from './request-checks.ts';

/** What the guard refuses, each counted and logged by one RefusalLog. */
export const REFUSAL_KINDS = {
  malformed: { level: 'info', what: 'malformed requests refused with 400' },
  'headers-too-large': { level: 'info', what: 'requests with oversized headers refused with 431' },
  'headers-timeout': { level: 'info', what: 'connections closed for slow request headers (408)' },
  'body-timeout': { level: 'info', what: 'connections closed for request bodies that stalled (408)' },
  'idle-trickle': { level: 'info', what: 'idle connections closed for sending empty lines instead of a request (408)' },
  'bad-target': { level: 'info', what: 'requests with a bad request target refused' },
  'bad-host': { level: 'info', what: 'requests without exactly one valid Host refused with 400' },
  'missing-host': { level: 'info', what: 'HTTP/1.1 requests without a Host header refused with 400' },
  'connect-method': { level: 'info', what: 'CONNECT requests refused with 405' },
  'bad-version': { level: 'info', what: 'requests of an HTTP version other than 1.0 and 1.1 refused with 505' },
  'connection-limit': { level: 'warn', what: 'connections refused over the connection limit' },
  'handshake-evicted': { level: 'info', what: 'connections closed in their handshake to make room' },
  'accept-failed': { level: 'warn', what: 'failed accepts' },
  'out-of-files': { level: 'error', what: 'requests answered 503 for lack of file descriptors' },
} as const;
export type Kind = keyof typeof REFUSAL_KINDS;

/** A complete HTTP/1.1 answer with a JSON error body, after which the connection closes. */
export function jsonReply(status: number, reason: string, message: string): string {
  const body = JSON.stringify({ error: message });
  return (
    `HTTP/1.1 ${status} ${reason}\r\nconnection: close\r\ncontent-type: application/json; charset=utf-8\r\n` +
    `content-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}

/**
 * Notes a request the parser refused (oversized headers 431, slow headers 408, anything else 400)
 * and returns the answer to write.
 */
export function parserRefusalReply(
  err: Error & { code?: string; reason?: string },
  socket: Duplex,
  requestHeadersTimeoutMs: number,
  refusals: RefusalLog<Kind>,
): string {
  const from = remote(socket);
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      refusals.note(
        'headers-too-large',
        { remote: from, code: err.code },
        `refused a request from ${from} whose request line and headers exceed ${MAX_HEADER_BYTES / 1024} KiB; answered 431`,
      );
      return jsonReply(
        431,
        'Request Header Fields Too Large',
        `ollana: request line and headers over ${MAX_HEADER_BYTES / 1024} KiB (or too many header fields); send fewer or smaller headers`,
      );
    case 'ERR_HTTP_REQUEST_TIMEOUT': {
      const seconds = requestHeadersTimeoutMs / 1000;
      refusals.note(
        'headers-timeout',
        { remote: from, code: err.code },
        `closed a connection from ${from} that sent no complete request headers within ${seconds} s; answered 408`,
      );
      return jsonReply(
        408,
        'Request Timeout',
        `ollana: no complete request headers within ${seconds} s (--request-headers-timeout)`,
      );
    }
    default: {
      // llhttp's reason is a fixed phrase such as "Transfer-Encoding can't be present with Content-Length".
      const reason = err.reason ?? err.message;
      refusals.note(
        'malformed',
        { remote: from, code: err.code, reason },
        `refused a malformed HTTP request from ${from}: ${reason} (${err.code ?? 'unknown'}); answered 400 and closed the connection`,
      );
      return jsonReply(400, 'Bad Request', `ollana: malformed HTTP request: ${reason}`);
    }
  }
}
