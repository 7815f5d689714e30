/**
 * What the client is told when the upstream of a forwarded request fails: before the response began,
 * a 502 / 503 / 504 whose message names the upstream and what to check; after, the stream ends with
 * an error line its client library reports, or the connection is cut so the client sees truncation.
 * Shared by both ways of forwarding (forward.ts through undici, relay/relay.ts on raw sockets).
 */
import type { ServerResponse } from 'node:http';
import type { Logger } from '../../log.ts';
import { sendError, streamErrorTail } from '../http/errors-http.ts';
import type { StatsCollector } from '../stats.ts';
import { outOfFiles } from '../../net/open-files.ts';

/** Error codes that mean "the upstream never answered", as opposed to a broken answer. */
export const CONNECT_CODES = new Set<string>([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'OLN_UPSTREAM_CONNECT_TIMEOUT',
  'OLN_UPSTREAM_CLOSED',
  'EPIPE',
  'ETIMEDOUT',
  'OLN_UPSTREAM_GONE',
  // the server at that address is not the device discovery announced: nothing was sent to it
  'OLN_PIN_MISMATCH',
]);

/**
 * The code of an upstream failure: ollana's own (UpstreamFailureCode, undici's already mapped onto
 * them by route/forward.ts), a system code, or that of its cause.
 */
export function codeOf(err: Error): string {
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string') return code;
  const cause = (err as { cause?: { code?: unknown } }).cause;
  return cause && typeof cause.code === 'string' ? cause.code : 'UNKNOWN';
}

export interface FailedExchange {
  /** The request's path, which picks the error body's shape (errors-http.ts). */
  readonly path: string;
  /** Answers with an error of ollana's own, unless the response has begun or the client is gone. */
  readonly sendError: (status: number, message: string, extra: string[]) => void;
  readonly stats: StatsCollector;
  readonly log: Logger;
  /** Human name of the upstream, e.g. "Ollama at http://127.0.0.1:11434". */
  readonly upstream: string;
  /** Headers every answer of this request carries (CORS), or null. */
  readonly extraHeaders: readonly string[] | null;
  /** Told when no connection could be opened for lack of file descriptors (logged there, summarised). */
  readonly outOfFiles: (upstream: string, err: Error) => void;
}

/**
 * Out of file descriptors before the response began: this node's trouble, not the upstream's (every
 * other server would fail the same way). 503, and the client may retry in a moment. False if `err`
 * is something else.
 */
export function answerOutOfFiles(x: FailedExchange, err: Error): boolean {
  if (!outOfFiles(err)) return false;
  x.outOfFiles(x.upstream, err);
  x.stats.upstreamErrors += 1;
  x.stats.status(503);
  x.sendError(
    503,
    `ollana: this node is out of file descriptors and cannot reach ${x.upstream} now; ` +
      'retry shortly (its operator should raise the open-file limit, ulimit -n)',
    ['retry-after', '1', ...(x.extraHeaders ?? [])],
  );
  return true;
}

/**
 * Any other failure. Before the response began: 504 for a headers timeout, else 502, with a message
 * naming the upstream. After: `endWith(tail)` ends the stream with an error line in the response's
 * own format (null when it has none), and should cut the connection when it cannot.
 */
export function answerFailure(
  x: FailedExchange,
  err: Error,
  responded: boolean,
  contentType: string | undefined,
  endWith: (tail: string | null) => void,
): void {
  const code = codeOf(err);
  const path = x.path;
  x.stats.upstreamErrors += 1;
  if (!responded) {
    const timeout = code === 'OLN_UPSTREAM_HEADERS_TIMEOUT';
    const status = timeout ? 504 : 502;
    const what = timeout
      ? `${x.upstream} sent no response headers within the headers timeout`
      : code === 'OLN_PIN_MISMATCH'
        ? `refused to talk to ${x.upstream}: ${err.message}`
        : CONNECT_CODES.has(code)
          ? `cannot reach ${x.upstream}: ${err.message} (${code}); is Ollama running there?`
          : `${x.upstream} failed: ${err.message} (${code})`;
    x.log.warn({ code, path, err }, 'upstream failed before responding');
    x.stats.status(status);
    x.sendError(status, `ollana: ${what}`, x.extraHeaders === null ? [] : [...x.extraHeaders]);
    return;
  }
  // Bytes already went out: the status cannot change.
  x.log.warn({ code, path, err }, 'upstream broke off a response');
  endWith(streamErrorTail(path, contentType, `ollana: ${x.upstream} broke off the response: ${err.message}`));
}

/** FailedExchange.sendError for a node:http response. */
export function responseErrorSender(res: ServerResponse, path: string): FailedExchange['sendError'] {
  return (status, message, extra) => {
    if (!res.headersSent && !res.destroyed) sendError(res, path, status, message, extra);
  };
}
