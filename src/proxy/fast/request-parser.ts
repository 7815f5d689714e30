/**
 * Node's own HTTP/1 request parser (llhttp, the native binding node:http uses), driven directly.
 *
 * The parser is the one node:http's server runs, with the same strictness (no lenient flags) and
 * the same header size limit, so a request is refused for exactly the reasons node:http would
 * refuse it, with the same error codes (HPE_*) the connection guard answers. What it saves is what
 * node:http builds around it per request: an IncomingMessage and a ServerResponse (two streams),
 * their events and header objects.
 *
 * The binding is reached through `_http_common`, Node's internal-but-public module (no deprecation):
 * its shape is pinned by the Node version this project ships (package.json "node"), and
 * test/unit/request-parser.test.ts holds it to what this file relies on.
 *
 * The head callback may pause the parser (llhttp's HPE_PAUSED), so that `execute` returns exactly
 * where that head ends and not one byte of its body is parsed: for a request that must wait (behind
 * another) or go elsewhere (to node:http). A pause costs an Error object with a stack trace, made by
 * the binding; a request the caller takes at once is parsed on without one.
 */
import { createRequire } from 'node:module';

interface NativeParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenientFlags: number): void;
  execute(data: Buffer): number | ParserError;
  resume(): void;
  close(): void;
  [callback: number]: unknown;
}

interface NativeModule {
  readonly HTTPParser: {
    new (): NativeParser;
    readonly REQUEST: number;
    readonly kOnMessageBegin: number;
    readonly kOnHeaders: number;
    readonly kOnHeadersComplete: number;
    readonly kOnBody: number;
    readonly kOnMessageComplete: number;
  };
  readonly methods: readonly string[];
}

/** What `execute` returns on bad input: llhttp's code (HPE_*), reason and where it stopped. */
export interface ParserError extends Error {
  readonly code: string;
  readonly reason?: string;
  readonly bytesParsed: number;
}

const native = createRequire(import.meta.url)('_http_common') as NativeModule;
const { HTTPParser, methods } = native;
/** llhttp's HPE_PAUSED, returned from on_headers_complete: stop right after the head. */
const PAUSE = 21;

/** A request head, as the parser gives it. */
export interface RequestHead {
  readonly method: string;
  readonly url: string;
  /** Header lines as sent, flat: [name, value, name, value, ...]. */
  readonly headers: string[];
  readonly versionMajor: number;
  readonly versionMinor: number;
  /** Upgrade or CONNECT: the bytes after the head are not HTTP. */
  readonly upgrade: boolean;
  /** Whether the connection may carry another request after this one (version and Connection). */
  readonly keepAlive: boolean;
}

export interface ParserEvents {
  /** A request's first byte (empty lines before a request line do not count). */
  parserBegin(): void;
  /** Returns true to stop the parse right after this head. */
  parserHead(head: RequestHead): boolean;
  parserBody(chunk: Buffer): void;
  parserComplete(): void;
}

/** Most header lines kept of one request, as node:http's server keeps (maxHeadersCount 2000). */
const MAX_HEADER_PAIRS = 2000;
/** Parsers kept for the next connections (node:http keeps 1000 the same way). */
const MAX_FREE = 1000;

/** `execute` results other than the offset where a paused-at head ended. */
export const PARSED_ALL = -1;
export const PARSE_FAILED = -2;

interface Owned extends NativeParser {
  owner: RequestParser | null;
}

// The native parser calls these with itself as `this`; one set of functions serves every parser.
function onBegin(this: Owned): void {
  this.owner?.events?.parserBegin();
}

function onHeaders(this: Owned, headers: string[], url: string): void {
  this.owner?.partial(headers, url);
}

function onHeadersComplete(
  this: Owned,
  versionMajor: number,
  versionMinor: number,
  headers: string[] | undefined,
  method: number,
  url: string | undefined,
  _status: unknown,
  _message: unknown,
  upgrade: boolean,
  keepAlive: boolean,
): number {
  const owner = this.owner;
  if (owner === null) return 0;
  return owner.head(versionMajor, versionMinor, headers, method, url, upgrade, keepAlive) ? PAUSE : 0;
}

function onBody(this: Owned, chunk: Buffer): void {
  this.owner?.events?.parserBody(chunk);
}

function onComplete(this: Owned): void {
  this.owner?.events?.parserComplete();
}

const free: RequestParser[] = [];

export class RequestParser {
  readonly #p: Owned;
  events: ParserEvents | null = null;
  /** What made `execute` return PARSE_FAILED. */
  error: ParserError | null = null;
  /** Header lines and URL of a head that spans several reads (llhttp hands them over in parts). */
  #headers: string[] = [];
  #url = '';
  #sawHead = false;
  #maxHeaderSize = 0;

  private constructor() {
    const p = new HTTPParser() as Owned;
    p.owner = this;
    p[HTTPParser.kOnMessageBegin] = onBegin;
    p[HTTPParser.kOnHeaders] = onHeaders;
    p[HTTPParser.kOnHeadersComplete] = onHeadersComplete;
    p[HTTPParser.kOnBody] = onBody;
    p[HTTPParser.kOnMessageComplete] = onComplete;
    this.#p = p;
  }

  /** A parser for a new connection, reused from a closed one when there is one. */
  static take(maxHeaderSize: number, events: ParserEvents): RequestParser {
    const parser = free.pop() ?? new RequestParser();
    parser.#maxHeaderSize = maxHeaderSize;
    parser.#p.initialize(HTTPParser.REQUEST, {}, maxHeaderSize, 0);
    parser.events = events;
    return parser;
  }

  /** @internal llhttp's kOnHeaders: part of a head that spans several reads. */
  partial(headers: string[], url: string): void {
    if (this.#headers.length < 2 * MAX_HEADER_PAIRS) this.#headers.push(...headers);
    this.#url += url;
  }

  /** @internal llhttp's kOnHeadersComplete; returns whether to pause after it. */
  head(
    versionMajor: number,
    versionMinor: number,
    headers: string[] | undefined,
    method: number,
    url: string | undefined,
    upgrade: boolean,
    keepAlive: boolean,
  ): boolean {
    if (headers === undefined) {
      headers = this.#headers;
      this.#headers = [];
    } else if (headers.length > 2 * MAX_HEADER_PAIRS) headers.length = 2 * MAX_HEADER_PAIRS;
    if (url === undefined) {
      url = this.#url;
      this.#url = '';
    }
    const events = this.events;
    const pause =
      events === null ||
      events.parserHead({
        method: methods[method] ?? 'GET',
        url,
        headers,
        versionMajor,
        versionMinor,
        upgrade,
        keepAlive,
      });
    this.#sawHead = pause;
    return pause;
  }

  /**
   * Parses `data`. Returns PARSED_ALL, or the offset in `data` just past a head the caller paused at
   * (an upgrade or CONNECT head always stops the parse, as llhttp does, and should be paused at), or
   * PARSE_FAILED with the reason in `error` (the parser is then of no more use).
   */
  execute(data: Buffer): number {
    this.#sawHead = false;
    const r = this.#p.execute(data);
    if (typeof r === 'number') {
      // An upgrade head: llhttp stops after it on its own and reports the bytes it took.
      return this.#sawHead ? r : PARSED_ALL;
    }
    if (r.code === 'HPE_PAUSED') {
      this.#p.resume();
      return r.bytesParsed;
    }
    this.error = r;
    return PARSE_FAILED;
  }

  /** Starts afresh at a message boundary (after a body the caller read without the parser). */
  reset(): void {
    this.#p.initialize(HTTPParser.REQUEST, {}, this.#maxHeaderSize, 0);
    this.#headers = [];
    this.#url = '';
  }

  /** Gives the parser back for another connection; not from inside one of its own callbacks. */
  release(): void {
    this.events = null;
    this.error = null;
    this.#headers = [];
    this.#url = '';
    if (free.length < MAX_FREE) free.push(this);
    else {
      this.#p.owner = null;
      this.#p.close();
    }
  }
}
