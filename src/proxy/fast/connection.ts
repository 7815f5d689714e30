/**
 * One client connection of the server node's fast front (front.ts): its requests are parsed by
 * Node's own HTTP parser, driven directly (request-parser.ts), and relayed to the local Ollama
 * (relay/relay.ts) with the response written straight to the socket: no IncomingMessage, no
 * ServerResponse. Any request this path does not carry by itself (head-facts.ts, `fastRequest`) hands the
 * connection to node:http, with the bytes not yet parsed put back in front of it; from then on the
 * connection is node:http's, with everything node:http does.
 *
 * What node:http would do for a connection, it does too: requests one at a time in order
 * (pipelined ones wait, with the socket paused), keep-alive by the request's version and Connection
 * header, `Connection: close` honoured, node:http's Keep-Alive header on every answer, the header
 * timeout from the connection's start or a request's first byte, the keep-alive idle timeout
 * (checked by the front's sweep), and the connection guard's answers to malformed or slow requests.
 */
import type { Socket } from 'node:net';
import type { Clock } from '../../clock.ts';
import { downstreamResponseHeaders } from '../http/headers.ts';
import type { ConnectionGuard } from '../listen/connection-guard.ts';
import type { StatsCollector } from '../stats.ts';
import { Relay } from '../relay/relay.ts';
import type { RelayOptions } from '../relay/relay-contract.ts';
import { CRLF } from '../http/http1.ts';
import {
  PARSED_ALL,
  PARSE_FAILED,
  RequestParser,
  type ParserError,
  type ParserEvents,
  type RequestHead,
} from './request-parser.ts';
import { factsOf, fastRequest, serializeHead } from './head-facts.ts';
import { FastRequest } from './request.ts';

/** What the front gives every connection. */
export interface FrontContext {
  readonly guard: ConnectionGuard;
  readonly stats: StatsCollector;
  /** The relay to the local Ollama for fast requests now, or null: hand every request to node:http. */
  target(): RelayOptions | null;
  readonly maxHeaderBytes: number;
  /** Request bodies up to this size are read whole and sent upstream with the head, in one write. */
  readonly smallBody: number;
  readonly headersTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  /** Time a request body may send nothing while this side reads it; 0 = no limit. */
  readonly requestBodyTimeoutMs: number;
  /** A loopback listener: Host must name this machine (DNS rebinding), as node:http's path checks. */
  readonly hostCheck: boolean;
  draining(): boolean;
  closed(c: FastConnection): void;
  /** Where the header, keep-alive and body clocks read the time (the front's sweep runs on it too). */
  readonly clock: Clock;
}

/** Node's keepAliveTimeoutBuffer: its socket timeout is keepAliveTimeout plus this. */
const KEEP_ALIVE_BUFFER_MS = 1_000;
const noop = (): void => undefined;

const CONNECTION = Symbol('ollana.fastConnection');
type Held = Socket & { [CONNECTION]: FastConnection };

// Socket listeners shared by every connection (the socket is `this`): nothing made per connection.
function onData(this: Held, chunk: Buffer): void {
  this[CONNECTION].feed(chunk);
}

function onEnd(this: Held): void {
  this[CONNECTION].clientEnded();
}

function onClose(this: Held): void {
  this[CONNECTION].clientClosed();
}

export class FastConnection implements ParserEvents {
  readonly socket: Socket;
  readonly #ctx: FrontContext;
  readonly #handOff: () => void;
  readonly #parser: RequestParser;
  /** The request being answered (from its head until both its body and its response are over). */
  #current: FastRequest | null = null;
  /** The last head the parser gave, until execute returns. */
  #head: RequestHead | null = null;
  /** Bytes still to come of the current request's body when it is read without the parser. */
  #bodyLeft = 0;
  /** A pipelined head and the bytes after it, waiting for the current request to be over. */
  #waiting: { head: RequestHead; rest: Buffer } | null = null;
  /** Where the header timeout counts from (0: not waiting for a head). */
  #headersSince: number;
  /** Idle since (0: a request in progress), and what had been read then. */
  #idleSince = 0;
  #bytesAtIdle = 0;
  /** While a request body comes: since when, and with what read then, no body byte arrived. */
  #bodySince = 0;
  #bodyBytes = 0;
  #closeAfter = false;
  /** Closed, handed to node:http, or refused: nothing more happens here. */
  gone = false;

  constructor(socket: Socket, ctx: FrontContext, handOff: () => void) {
    this.socket = socket;
    this.#ctx = ctx;
    this.#handOff = handOff;
    this.#headersSince = this.#ctx.clock.now();
    this.#parser = RequestParser.take(ctx.maxHeaderBytes, this);
    (socket as Held)[CONNECTION] = this;
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onClose);
    // Kept for the socket's whole life, whoever holds it: an error on a connection being closed or
    // cut must not become an uncaught exception ('close' follows every error).
    socket.on('error', noop);
  }

  // --- the parser's events ---

  parserBegin(): void {
    // A later request's header time counts from its first byte (the first one's from the connection).
    if (this.#current === null && this.#idleSince !== 0) this.#headersSince = this.#ctx.clock.now();
  }

  /**
   * A head, from inside the parser: taken at once (the parse goes on into its body), or the parse
   * stops right after it, for a request that waits behind the one in progress or goes to node:http.
   */
  parserHead(head: RequestHead): boolean {
    // Taken: the parse goes on into its body, or stops here when the body is read without the parser.
    if (this.#current === null && this.#take(head)) return this.#bodyLeft > 0;
    this.#head = head;
    return true;
  }

  parserBody(chunk: Buffer): void {
    this.#current?.bodyChunk(chunk);
  }

  parserComplete(): void {
    const current = this.#current;
    if (current === null) return;
    current.complete();
    if (current.responseDone) this.#over();
  }

  /**
   * The client half-closed: node:http (without httpAllowHalfOpen) then aborts what is in progress
   * and ends its side too; so does this.
   */
  clientEnded(): void {
    this.clientClosed();
    if (this.socket.writable) this.socket.end();
  }

  /** The Connection (and Keep-Alive) header lines of an answer, as node:http writes them. */
  connectionHeaders(keepAlive: boolean): string {
    if (!keepAlive || this.#ctx.draining()) {
      this.#closeAfter = true;
      return `connection: close${CRLF}`;
    }
    return this.#ctx.keepAliveTimeoutMs > 0
      ? `connection: keep-alive${CRLF}keep-alive: timeout=${Math.floor(this.#ctx.keepAliveTimeoutMs / 1000)}${CRLF}`
      : `connection: keep-alive${CRLF}`;
  }

  /** A read from the client. */
  feed(data: Buffer): void {
    if (this.gone) return;
    let buf = data;
    for (;;) {
      if (this.#bodyLeft > 0) {
        // A large body with a Content-Length passes by the parser: its bytes go on as they were read,
        // where the parser would hand over a copy of each piece.
        const n = Math.min(this.#bodyLeft, buf.length);
        this.#bodyLeft -= n;
        this.#current!.bodyChunk(n === buf.length ? buf : buf.subarray(0, n));
        buf = buf.subarray(n);
        if (this.#bodyLeft === 0) {
          // The parser stopped at this request's head; the next request starts it afresh.
          this.#parser.reset();
          this.parserComplete();
        }
        if (buf.length === 0 || this.gone) break;
        continue;
      }
      // The whole read is parsed before a request taken in it goes anywhere: bad bytes behind its head
      // (broken chunk framing, a smuggled request) are refused before anything reaches Ollama.
      const at = this.#parser.execute(buf);
      if (at === PARSE_FAILED) {
        this.#malformed(this.#parser.error!);
        return;
      }
      if (at === PARSED_ALL) break;
      const head = this.#head;
      this.#head = null;
      const rest = buf.subarray(at);
      if (head === null) {
        // Stopped after a taken request's head: its body is read above.
        buf = rest;
        continue;
      }
      if (this.#current === null) {
        this.#giveUp(head, rest);
        return;
      }
      // Pipelined: it waits until the request before it is over, as node:http makes it wait.
      this.#waiting = { head, rest };
      this.socket.pause();
      break;
    }
    const current = this.#current;
    if (current !== null && current.relay === null && current.ready && !this.gone) this.#dispatch(current);
  }

  /** Starts the fast request for `head`, or returns false when node:http must take it. */
  #take(head: RequestHead): boolean {
    const target = this.#ctx.target();
    if (target === null) return false;
    const facts = factsOf(head.headers);
    if (!fastRequest(head, facts, this.#ctx.hostCheck)) return false;
    this.#headersSince = 0;
    this.#idleSince = 0;
    const request = new FastRequest(this, this.socket, head, facts, this.#ctx.smallBody);
    this.#current = request;
    if (request.mode === 'stream' && request.length !== undefined) this.#bodyLeft = Number(request.length);
    if (request.mode !== 'none') {
      this.#bodySince = this.#ctx.clock.now();
      this.#bodyBytes = this.socket.bytesRead;
    }
    this.#ctx.stats.fastRequests += 1;
    return true;
  }

  #dispatch(request: FastRequest): void {
    const target = this.#ctx.target();
    if (target === null) {
      // The node stopped being a server node between the head and now.
      request.sendError(503, 'ollana: this node no longer serves its local Ollama; retry', ['retry-after', '1']);
      request.finished();
      return;
    }
    request.relay = new Relay(request, target, downstreamResponseHeaders);
    request.relay.start();
  }

  /** The relay is done with `request` (its response is complete, failed, or the client left). */
  exchangeOver(request: FastRequest): void {
    if (request !== this.#current || this.gone) return;
    if (request.messageDone) this.#over();
    // else: the rest of the body is read and dropped; the request is over at its end.
  }

  /** Both the request and its answer are over: the next one, or idle, or closed. */
  #over(): void {
    this.#current = null;
    if (this.#closeAfter) {
      this.#end();
      return;
    }
    this.#idleSince = this.#ctx.clock.now();
    this.#bytesAtIdle = this.socket.bytesRead;
    const waiting = this.#waiting;
    if (waiting === null) return;
    this.#waiting = null;
    // Not from inside the relay's callbacks: the next request starts on a turn of its own.
    setImmediate(() => {
      if (this.gone) return;
      this.#headersSince = 0;
      if (!this.#take(waiting.head)) {
        this.#giveUp(waiting.head, waiting.rest);
        return;
      }
      this.socket.resume();
      // Its body and what follows (an empty rest still completes a request without a body).
      this.feed(waiting.rest);
    });
  }

  /**
   * Hands the connection to node:http at a request's head: the head, written out again as the parser
   * read it, and every byte after it go back in front of the socket, and node:http's connection
   * listener takes over (reading through 'data', so those bytes come first).
   */
  #giveUp(head: RequestHead, rest: Buffer): void {
    this.#leave();
    this.#ctx.stats.handedToNode += 1;
    const socket = this.socket;
    const handle = (socket as { _handle?: { _consumed?: boolean } | null })._handle;
    if (handle) handle._consumed = true;
    socket.unshift(
      rest.length > 0
        ? Buffer.concat([Buffer.from(serializeHead(head), 'latin1'), rest])
        : Buffer.from(serializeHead(head), 'latin1'),
    );
    this.#handOff();
    socket.resume();
  }

  /** The parser refused the client's bytes: the guard answers (or cuts), the request in progress ends. */
  #malformed(err: ParserError): void {
    const current = this.#current;
    const responding = current?.responding === true;
    this.#leave();
    current?.relay?.clientGone();
    this.#ctx.guard.malformed(err, this.socket, responding);
  }

  /** The front's sweep: the header timeout, and the keep-alive timeout of an idle connection. */
  check(now: number): void {
    if (this.gone) return;
    const ctx = this.#ctx;
    if (this.#headersSince > 0) {
      if (ctx.headersTimeoutMs > 0 && now - this.#headersSince >= ctx.headersTimeoutMs) {
        const current = this.#current;
        this.#leave();
        current?.relay?.clientGone();
        ctx.guard.headersTimedOut(this.socket, current?.responding === true);
      }
      return;
    }
    const current = this.#current;
    if (current !== null && ctx.requestBodyTimeoutMs > 0) {
      const stalled = this.#bodyStalledFor(now);
      if (stalled >= ctx.requestBodyTimeoutMs) {
        this.#leave();
        current.relay?.clientGone();
        ctx.guard.bodyTimedOut(this.socket, current.responding, stalled);
      }
      return;
    }
    if (current !== null || this.#idleSince === 0 || ctx.keepAliveTimeoutMs <= 0) return;
    const idle = now - this.#idleSince;
    if (this.socket.bytesRead > this.#bytesAtIdle) {
      // Only empty lines since the last answer (a request's first byte would have started the header timeout).
      if (idle >= ctx.keepAliveTimeoutMs + KEEP_ALIVE_BUFFER_MS + ctx.headersTimeoutMs) {
        this.#leave();
        ctx.guard.trickled(this.socket, idle);
      }
    } else if (idle >= ctx.keepAliveTimeoutMs + KEEP_ALIVE_BUFFER_MS) {
      this.#leave();
      this.socket.destroy();
    }
  }

  /**
   * How long the current request's body has sent nothing while this side was ready to read it (0: no
   * body in progress, or it waits on the upstream: the socket is paused for backpressure).
   */
  #bodyStalledFor(now: number): number {
    const current = this.#current;
    if (current === null || current.messageDone || current.mode === 'none' || this.#waiting !== null) return 0;
    const bytes = this.socket.bytesRead;
    if (bytes !== this.#bodyBytes || this.socket.isPaused()) {
      this.#bodyBytes = bytes;
      this.#bodySince = now;
      return 0;
    }
    return now - this.#bodySince;
  }

  /** Whether its request body has sent nothing for `minMs` (the guard may close it to make room). */
  stalledFor(now: number, minMs: number): boolean {
    return !this.gone && this.#bodyStalledFor(now) >= minMs;
  }

  /** Whether no request is in progress (the guard may close it to make room). */
  get idle(): boolean {
    return this.#current === null && this.#waiting === null;
  }

  /** Cuts the connection: the client sees its response truncated. */
  cut(err: Error): void {
    this.#leave();
    this.socket.destroy(err);
  }

  /** Closes the connection now (drain, eviction), ending a request in progress. */
  close(): void {
    const current = this.#current;
    this.#leave();
    current?.relay?.clientGone();
    this.socket.destroy();
  }

  /** After an answer with `Connection: close`: the end goes out behind it, then the socket closes. */
  #end(): void {
    this.#leave();
    const socket = this.socket;
    socket.end();
    if (socket.writableFinished) socket.destroy();
    else socket.once('finish', () => socket.destroy());
  }

  /** The client's connection closed. */
  clientClosed(): void {
    const current = this.#current;
    this.#leave();
    // The client went away: the upstream connection closes, which is how Ollama stops generating.
    current?.relay?.clientGone();
  }

  /** Stops everything this connection does here; the socket is left to whoever closes or takes it. */
  #leave(): void {
    if (this.gone) return;
    this.gone = true;
    this.socket.off('data', onData);
    this.socket.off('end', onEnd);
    this.socket.off('close', onClose);
    // Not from inside the parser's own callbacks (they may be on the stack when the client leaves).
    const parser = this.#parser;
    parser.events = null;
    setImmediate(() => parser.release());
    this.#ctx.closed(this);
  }
}
