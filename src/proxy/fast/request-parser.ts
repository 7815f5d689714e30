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
  begin(): void;
  /** Returns true to stop the parse right after this head. */
  head(head: RequestHead): boolean;
  body(chunk: Buffer): void;
  complete(): void;
}

/** Most header lines kept of one request, as node:http's server keeps (maxHeadersCount 2000). */
const MAX_HEADER_PAIRS = 2000;

export type ExecuteResult =
  /** every byte was parsed */
  | { readonly kind: 'done' }
  /** the parse stopped after a head the caller paused at (or an upgrade head), which ended at `at` */
  | { readonly kind: 'head'; readonly at: number }
  | { readonly kind: 'error'; readonly error: ParserError };

export class RequestParser {
  readonly #p: NativeParser;
  readonly #events: ParserEvents;
  /** Header lines and URL of a head that spans several reads (llhttp hands them over in parts). */
  #headers: string[] = [];
  #url = '';
  #sawHead = false;
  #closed = false;

  constructor(maxHeaderSize: number, events: ParserEvents) {
    this.#events = events;
    const p = new HTTPParser();
    p.initialize(HTTPParser.REQUEST, {}, maxHeaderSize, 0);
    p[HTTPParser.kOnMessageBegin] = (): void => this.#events.begin();
    p[HTTPParser.kOnHeaders] = (headers: string[], url: string): void => {
      if (this.#headers.length < 2 * MAX_HEADER_PAIRS) this.#headers.push(...headers);
      this.#url += url;
    };
    p[HTTPParser.kOnHeadersComplete] = (versionMajor: number, versionMinor: number, headers: string[] | undefined,
      method: number, url: string | undefined, _status: unknown, _message: unknown, upgrade: boolean, keepAlive: boolean): number => {
      if (headers === undefined) { headers = this.#headers; this.#headers = []; }
      else if (headers.length > 2 * MAX_HEADER_PAIRS) headers.length = 2 * MAX_HEADER_PAIRS;
      if (url === undefined) { url = this.#url; this.#url = ''; }
      const pause = this.#events.head({ method: methods[method] ?? 'GET', url, headers, versionMajor, versionMinor, upgrade, keepAlive });
      this.#sawHead = pause;
      return pause ? PAUSE : 0;
    };
    p[HTTPParser.kOnBody] = (chunk: Buffer): void => this.#events.body(chunk);
    p[HTTPParser.kOnMessageComplete] = (): void => this.#events.complete();
    this.#p = p;
  }

  /**
   * Parses `data`. A head the caller pauses at stops the parse right after it ('head', with the
   * offset in `data`); an upgrade (or CONNECT) head always does, as llhttp does, and should be
   * paused at. An error leaves the parser unusable.
   */
  execute(data: Buffer): ExecuteResult {
    this.#sawHead = false;
    const r = this.#p.execute(data);
    if (typeof r === 'number') {
      // An upgrade head: llhttp stops after it on its own and reports the bytes it took.
      return this.#sawHead ? { kind: 'head', at: r } : { kind: 'done' };
    }
    if (r.code === 'HPE_PAUSED') {
      this.#p.resume();
      return { kind: 'head', at: r.bytesParsed };
    }
    return { kind: 'error', error: r };
  }

  /** Frees the native parser; not from inside one of its own callbacks. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#p.close();
  }
}
