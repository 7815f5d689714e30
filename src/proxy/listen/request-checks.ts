/**
 * The checks of a parsed request before ollana reads its target or Host (connection-guard.ts): the
 * HTTP version, the URL's length, the request-target form (request-target.ts) and exactly one valid
 * Host. A refused request is answered with an error saying what to send, and noted in the guard's
 * RefusalLog.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { sendError } from '../http/errors-http.ts';
import type { RefusalLog } from './refusal-log.ts';
import { hostLines, parseTarget, validHostValue } from './request-target.ts';
import type { Kind } from './guard-replies.ts';

/** An Ollama or OpenAI API path is well under 1 KiB; the limit only stops abuse. */
export const MAX_URL_BYTES = 8 * 1024;

/** The client's address, for log lines. */
export function remote(socket: Duplex): string {
  return (socket as Partial<Socket>).remoteAddress ?? 'unknown';
}

export class RequestChecks {
  readonly #refusals: RefusalLog<Kind>;
  #lastValidHost: string | null = null;

  constructor(refusals: RefusalLog<Kind>) {
    this.#refusals = refusals;
  }

  /**
   * Answers 414 or 400 for a request ollana will not forward (an overlong URL, a target that is not a
   * path, not exactly one valid Host) and returns true; otherwise turns an absolute-form target into
   * the origin form with its authority as the Host (request-target.ts) and returns false.
   */
  refuses(req: IncomingMessage, res: ServerResponse): boolean {
    const url = req.url ?? '/';
    if (req.httpVersionMajor !== 1) {
      // Node's parser takes a request line without a version as HTTP/0.9, and reads "HTTP/2.0" in
      // HTTP/1 syntax too: neither is a request ollana (or Ollama) speaks.
      const version = `HTTP/${req.httpVersion}`;
      this.#refusals.note(
        'bad-version',
        { remote: remote(req.socket), httpVersion: req.httpVersion },
        `refused an ${version} request from ${remote(req.socket)}; answered 505`,
      );
      sendError(res, '/', 505, `ollana: ${version} is not supported; send HTTP/1.1 (or HTTP/1.0) requests`, [
        'connection',
        'close',
      ]);
      return true;
    }
    if (url.length > MAX_URL_BYTES) {
      this.#refusals.note(
        'bad-target',
        { remote: remote(req.socket), urlBytes: url.length },
        `refused a request from ${remote(req.socket)} with a ${url.length}-byte URL (limit ${MAX_URL_BYTES}); answered 414`,
      );
      sendError(
        res,
        url,
        414,
        `ollana: request URL of ${url.length} bytes is over the ${MAX_URL_BYTES}-byte limit; ` +
          'Ollama API paths are short: check how the client builds its URL',
      );
      return true;
    }
    if (this.#refusesHost(req, res)) return true;
    const target = parseTarget(url);
    if (target.form === 'origin') return false;
    if (target.form === 'bad') {
      const shown = url.slice(0, 64);
      this.#refusals.note(
        'bad-target',
        { remote: remote(req.socket), target: shown },
        `refused a request from ${remote(req.socket)} whose target ${target.why}; answered 400`,
      );
      sendError(
        res,
        '/',
        400,
        `ollana: the request target ${JSON.stringify(shown)} ${target.why}; ` +
          'send a path such as /api/chat (or http://<host>:<port>/api/chat)',
      );
      return true;
    }
    req.url = target.path;
    req.headers.host = target.authority;
    return false;
  }

  /**
   * RFC 9112 §3.2: exactly one Host line, with a valid value; 400 and close otherwise. HTTP/1.0 had
   * no Host header, so only a request of HTTP/1.1 or later must carry one.
   */
  #refusesHost(req: IncomingMessage, res: ServerResponse): boolean {
    const host = req.headers.host;
    const lines = hostLines(req.rawHeaders);
    // A client sends the same Host on every request: the value check runs once per distinct value.
    if (lines === 1 && host === this.#lastValidHost) return false;
    if (host === undefined) {
      if (req.httpVersionMajor === 1 && req.httpVersionMinor === 0) return false;
      return this.#refuseMissingHost(req, res);
    }
    if (lines <= 1 && validHostValue(host)) {
      this.#lastValidHost = host;
      return false;
    }
    const from = remote(req.socket);
    const what = lines > 1 ? `${lines} Host headers` : 'an invalid Host header';
    this.#refusals.note(
      'bad-host',
      { remote: from, hostLines: lines, host: host.slice(0, 100) },
      `refused a request from ${from} with ${what}; answered 400`,
    );
    const message =
      lines > 1
        ? `ollana: the request has ${lines} Host headers; an HTTP request names exactly one host (RFC 9112 section 3.2): ` +
          'check the client, or the proxy in front of ollana that adds one'
        : `ollana: the Host header ${JSON.stringify(host.slice(0, 100))} is not a host name or address with an optional :port; ` +
          'send Host: <host>:<port>';
    // Nothing more is read from a connection whose client cannot say which host it wants.
    sendError(res, req.url ?? '/', 400, message, ['connection', 'close']);
    return true;
  }

  #refuseMissingHost(req: IncomingMessage, res: ServerResponse): true {
    const from = remote(req.socket);
    const version = `HTTP/${req.httpVersion}`;
    this.#refusals.note(
      'missing-host',
      { remote: from, httpVersion: req.httpVersion },
      `refused an ${version} request from ${from} without a Host header; answered 400`,
    );
    sendError(
      res,
      req.url ?? '/',
      400,
      `ollana: the ${version} request has no Host header; every HTTP/1.1 request names ` +
        'its host (RFC 9112 section 3.2): send Host: <host>:<port>, as HTTP clients do by themselves',
      ['connection', 'close'],
    );
    return true;
  }
}
