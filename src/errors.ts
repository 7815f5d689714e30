/**
 * Every error ollana raises on purpose. Callers match on `code`, never on the message: the codes are
 * stable and listed in docs/errors.md, the messages may improve.
 */

/** Stable error codes, each with the process exit status `ollana` uses when it ends on that error. */
export const EXIT_CODES = {
  OLN_USAGE: 2,
  OLN_BAD_FLAG: 2,
  OLN_BAD_CONFIG: 3,
  OLN_BAD_OLLAMA_URL: 3,
  OLN_PORT_IN_USE: 4,
  OLN_OLLAMA_ON_PORT: 4,
  OLN_PORT_DENIED: 4,
  OLN_DIR_UNWRITABLE: 5,
  OLN_ALREADY_RUNNING: 6,
  OLN_NOT_RUNNING: 7,
  OLN_DAEMON_FAILED: 8,
  OLN_STOP_TIMEOUT: 9,
  OLN_DRAIN_CUT: 14,
  OLN_WORKER_FAILED: 10,
  OLN_STATUS_UNREACHABLE: 11,
  OLN_BAD_DEVICE_ID: 2,
  OLN_BAD_DEVICES_FILE: 3,
  OLN_IDENTITY_BAD: 12,
  OLN_DATA_DIR_BUSY: 13,
  /** A server node presented another device id than discovery announced (net/tls.ts); never ends the process today. */
  OLN_PIN_MISMATCH: 15,
  /** --workers above 1 where the OS has no SO_REUSEPORT (platform/workers.ts). */
  OLN_WORKERS_UNSUPPORTED: 2,
  /** The node's control endpoint refused `ollana stop` or cannot be reached (daemon/control.ts). */
  OLN_CONTROL_REFUSED: 16,
  /** `ollana service` has no service manager to use on this OS (Windows: see the docs). */
  OLN_SERVICE_UNSUPPORTED: 17,
  /** The service manager (systemctl, launchctl) failed. */
  OLN_SERVICE_FAILED: 18,
  /** `ollana pair` found no other machine pairing, or it did not confirm, in time (pair/session.ts). */
  OLN_PAIR_TIMEOUT: 19,
  /** A person said no to the code, or --code did not match the code shown: nothing was allowed. */
  OLN_PAIR_REFUSED: 20,
  /** More than one other machine was pairing on the LAN at once. */
  OLN_PAIR_CROWDED: 21,
  /** The other machine's reveal did not open its commitment, or replayed this machine's certificate. */
  OLN_PAIR_MISMATCH: 22,
  OLN_INTERNAL: 70,
} as const;

export type OllanaErrorCode = keyof typeof EXIT_CODES;

/**
 * Why an exchange with an upstream failed, in ollana's own codes. The relay raises them itself;
 * undici's codes are mapped onto them where undici's errors arrive (route/forward.ts), so that
 * route/upstream-failure.ts branches on one set of strings. System codes (ECONNREFUSED, ...) stay as
 * Node gives them. These never end the process, so they have no exit status.
 */
export type UpstreamFailureCode =
  /** The upstream left the route table, or this node shuts down, with the request in flight. */
  | 'OLN_UPSTREAM_GONE'
  /** No connection (or TLS handshake) to the upstream within the connect timeout. */
  | 'OLN_UPSTREAM_CONNECT_TIMEOUT'
  /** No response headers within the headers timeout. */
  | 'OLN_UPSTREAM_HEADERS_TIMEOUT'
  /** No response data within the body timeout, mid-response. */
  | 'OLN_UPSTREAM_BODY_TIMEOUT'
  /** The upstream closed the connection before its response was complete. */
  | 'OLN_UPSTREAM_CLOSED'
  /** Any other failure undici reported (its code is in the error's cause). */
  | 'OLN_UPSTREAM_FAILED'
  | 'OLN_PIN_MISMATCH';

/** An upstream exchange failed (see UpstreamFailureCode). */
export class UpstreamError extends Error {
  override readonly name = 'UpstreamError';
  readonly code: UpstreamFailureCode;

  constructor(code: UpstreamFailureCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
  }
}

/**
 * Codes of malformed input from a peer that ollana refuses without ending: an upstream response the
 * relay cannot frame (relay/framing.ts FramingError), a message on an actor port that is not one
 * (protocol/wire.ts ProtocolError), a discovery datagram field out of bounds (net/datagram.ts FieldError).
 */
export type InputErrorCode =
  | 'OLN_BAD_UPSTREAM_FRAMING'
  | 'OLN_BAD_MESSAGE'
  | 'OLN_BAD_DATAGRAM_FIELD'
  | 'OLN_BAD_PAIR_MESSAGE';

/**
 * Why the fair-share scheduler turned a request away (503 with Retry-After, src/sched/): its device
 * had too many requests waiting for the model, or it waited longer than --queue-timeout.
 */
export type SchedErrorCode = 'OLN_QUEUE_FULL' | 'OLN_QUEUE_TIMEOUT';

/** Plain-data form of an error, for crossing a thread or process boundary (msgpack keeps no classes). */
export interface ErrorData {
  readonly code: OllanaErrorCode;
  readonly message: string;
  readonly details?: Readonly<Record<string, string | number | boolean | null>>;
}

export class OllanaError extends Error {
  override readonly name = 'OllanaError';
  readonly code: OllanaErrorCode;
  readonly details: Readonly<Record<string, string | number | boolean | null>>;

  constructor(
    code: OllanaErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, string | number | boolean | null> } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.details = options.details ?? {};
  }

  get exitCode(): number {
    return EXIT_CODES[this.code];
  }

  toData(): ErrorData {
    return { code: this.code, message: this.message, details: this.details };
  }

  static fromData(data: ErrorData): OllanaError {
    return new OllanaError(data.code in EXIT_CODES ? data.code : 'OLN_INTERNAL', data.message, {
      details: { ...data.details },
    });
  }
}

/**
 * An error that crossed a thread as plain data (a worker threw `OllanaError#toData()`), rebuilt; null
 * for anything else (a real Error, a crash), which the caller reports in its own words.
 */
export function errorFromData(v: unknown): OllanaError | null {
  if (typeof v !== 'object' || v === null || v instanceof Error || !('code' in v) || !('message' in v)) return null;
  if (typeof v.code !== 'string' || !(v.code in EXIT_CODES) || typeof v.message !== 'string') return null;
  return OllanaError.fromData(v as ErrorData);
}

export function isOllanaError(err: unknown): err is OllanaError {
  return err instanceof OllanaError;
}

/** `code` of a Node system error (EADDRINUSE, EACCES, ...), or undefined. */
export function systemCode(err: unknown): string | undefined {
  if (typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string') {
    return err.code;
  }
  return undefined;
}

export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
