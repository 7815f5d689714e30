/**
 * What the byte relay (relay.ts) takes: the client's side of an exchange (Downstream, implemented by
 * node-downstream.ts and fast/request.ts), a body that streams in while it is relayed, the options
 * of one relayed request, and the response header filter.
 */
import type { Logger } from '../../log.ts';
import type { StatsCollector } from '../stats.ts';
import type { BodyFraming } from './framing.ts';
import type { SchedGate } from '../../sched/gate.ts';
import type { UpstreamSockets } from './upstream-sockets.ts';

/** A request body that arrives while the request is relayed (too large to hold, or chunked). */
export interface BodyStream {
  /** The client's Content-Length, or undefined for a chunked body (relayed chunk-framed). */
  readonly length: string | undefined;
  /** Starts delivering the body: `data` for each piece, then `end` once. */
  start(data: (chunk: Buffer) => void, end: () => void): void;
  /** Stops reading the client while the upstream cannot take more; resume() goes on. */
  pause(): void;
  resume(): void;
  /** The relay no longer wants the body (it ended or failed): no more calls. */
  stop(): void;
}

/** The client's side of a relayed exchange: its request, and where the response goes. */
export interface Downstream {
  readonly method: string;
  /** The request target in origin form, as the client sent it. */
  readonly url: string;
  /** The headers to send upstream (hop-by-hop taken out, forwarding headers added), flat. */
  readonly headers: readonly string[];
  /** null: no body; a Buffer: the whole body, read already; else streamed. */
  readonly body: Buffer | BodyStream | null;
  /** The allowed device the request came from (a server node's TLS peer), '' if none. */
  readonly device: string;
  /** Whether the client's connection was refused after this request's head (connection-guard.ts). */
  broken(): boolean;
  /**
   * The response head, with the upstream's headers already filtered. `framing` says how the body
   * bytes that follow are framed: 'chunked' bytes carry their chunk framing already, 'close' bytes
   * are raw and end when the upstream closes (the downstream frames them its own way).
   */
  respond(status: number, headers: string[], framing: BodyFraming): void;
  /** Sends the head now if no body byte came with it (a client waiting for a slow first token). */
  flushHead(): void;
  /**
   * Takes back the head given to respond() if not one byte of the response went out yet (true), so
   * that a failure found in the same read (bad framing right behind the head) is answered with an
   * error status instead of a cut connection; false once anything was sent.
   */
  retract(): boolean;
  /** Body bytes; false when the client should not get more until onDrain. */
  write(bytes: Buffer): boolean;
  /**
   * Whether the bytes of the last write may still be referenced (queued, not yet handed to the
   * kernel): the upstream connection then reads into another buffer (upstream-sockets.ts).
   */
  holds(): boolean;
  onceDrain(resume: () => void): void;
  offDrain(resume: () => void): void;
  /** The response is complete. */
  end(): void;
  /**
   * The response broke after it began: end it with `tail` (ollana's error line) where the framing
   * allows one (`atChunkStart`: between two of the upstream's chunks), else cut the connection.
   */
  breakOff(tail: string | null, atChunkStart: boolean, err: Error): void;
  /** Answers with ollana's own error before anything was sent. */
  sendError(status: number, message: string, extra: string[]): void;
  /** Called once when the exchange is over, however it ended. */
  finished(): void;
}

export interface RelayOptions {
  readonly stats: StatsCollector;
  readonly log: Logger;
  readonly sockets: UpstreamSockets;
  /** A path prefix of the upstream's URL ('' for none). */
  readonly basePath: string;
  /** Human name of the upstream for error messages. */
  readonly upstream: string;
  /** Time for the response head after the request went out, and between body reads; 0 = none. */
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  /** Headers to add to the response (CORS), or null. */
  readonly extraHeaders: readonly string[] | null;
  /** Response headers to drop from the upstream's because ollana sets them (lowercase), or null. */
  readonly dropHeaders: ReadonlySet<string> | null;
  readonly onFinish: () => void;
  readonly outOfFiles: (upstream: string, err: Error) => void;
  /** Inference requests wait here for a slot of their model (sched/gate.ts); absent or null: none. */
  readonly admission?: SchedGate | null;
}

/** Filters the upstream's response headers: hop-by-hop and the ones ollana sets, plus ollana's. */
export type HeaderFilter = (raw: readonly string[], drop: ReadonlySet<string> | null) => string[];
