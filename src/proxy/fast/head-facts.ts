/**
 * What a fast request's head says (its facts, read in one pass over the header lines), whether the
 * fast front carries it itself, and the head as text again for node:http when it does not.
 */
import { hostAllowedOnLoopback } from '../listen/cors.ts';
import { MAX_URL_BYTES } from '../listen/request-checks.ts';
import { validHostValue } from '../listen/request-target.ts';
import { CRLF } from '../http/http1.ts';
import type { RequestHead } from './request-parser.ts';

/** What a fast request's head says, read in one pass over its header lines. */
export interface Facts {
  hostLines: number;
  host: string | undefined;
  connection: string | undefined;
  contentLength: string | undefined;
  chunked: boolean;
  /** Something only node:http's path handles: Origin (CORS), Expect (100-continue). */
  other: boolean;
}

export function factsOf(headers: readonly string[]): Facts {
  const f: Facts = {
    hostLines: 0,
    host: undefined,
    connection: undefined,
    contentLength: undefined,
    chunked: false,
    other: false,
  };
  for (let i = 0; i < headers.length; i += 2) {
    const name = headers[i]!;
    switch (name.length) {
      case 4:
        if (name.toLowerCase() === 'host') {
          f.hostLines += 1;
          f.host ??= headers[i + 1];
        }
        break;
      case 6:
        if (name.toLowerCase() === 'origin' || name.toLowerCase() === 'expect') f.other = true;
        break;
      case 10:
        if (name.toLowerCase() === 'connection')
          f.connection = f.connection === undefined ? headers[i + 1] : `${f.connection}, ${headers[i + 1]!}`;
        break;
      case 14:
        if (name.toLowerCase() === 'content-length') f.contentLength = headers[i + 1];
        break;
      case 17:
        // llhttp accepts a Transfer-Encoding only when chunked comes last.
        if (name.toLowerCase() === 'transfer-encoding') f.chunked = true;
        break;
    }
  }
  return f;
}

let lastValidHost: string | null = null;

/** Whether this front carries the request itself; anything else goes to node:http's path. */
export function fastRequest(head: RequestHead, f: Facts, hostCheck: boolean): boolean {
  if (head.versionMajor !== 1 || head.versionMinor !== 1 || head.upgrade || f.other) return false;
  const url = head.url;
  // Origin form only; ollana's own paths, long URLs and absolute forms are node:http's.
  if (url.charCodeAt(0) !== 47 || url.length > MAX_URL_BYTES || url.startsWith('/ollana/')) return false;
  if (f.hostLines !== 1) return false;
  const host = f.host!;
  if (host !== lastValidHost) {
    if (!validHostValue(host)) return false;
    lastValidHost = host;
  }
  return !hostCheck || hostAllowedOnLoopback(host);
}

/** The head as text again, for node:http to parse when the connection is handed over. */
export function serializeHead(head: RequestHead): string {
  let text = `${head.method} ${head.url} HTTP/${head.versionMajor}.${head.versionMinor}${CRLF}`;
  for (let i = 0; i < head.headers.length; i += 2) text += `${head.headers[i]!}: ${head.headers[i + 1]!}${CRLF}`;
  return text + CRLF;
}
