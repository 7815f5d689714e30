/**
 * HTTP/1.1 response framing for the relay (RFC 9112 §4-7): the upstream's response head, parsed
 * strictly, and a scanner that finds where its body ends while the bytes pass through unchanged.
 * The relay forwards the upstream's own framing (chunk sizes included) to the client, so the scanner
 * must agree with the client's parser on every byte: anything it does not fully understand is an
 * error (the exchange is cut), never a guess.
 */
import type { InputErrorCode } from '../../errors.ts';

/** What was wrong with the upstream's framing: stable, for logs and tests (the message says it in words). */
export type FramingReason =
  | 'head-too-large'
  | 'bare-lf-in-head'
  | 'bad-status-line'
  | 'bad-header-line'
  | 'bad-header-value'
  | 'bad-content-length'
  | 'te-with-cl'
  | 'unsupported-te'
  | 'chunk-extension-too-long'
  | 'chunk-size-too-large'
  | 'chunk-size-missing'
  | 'bad-chunk-size'
  | 'bad-chunk-extension'
  | 'chunk-size-line-without-crlf'
  | 'chunk-too-long'
  | 'chunk-data-without-crlf'
  | 'bare-lf-after-last-chunk'
  | 'trailers-too-long'
  | 'bare-lf-in-trailer'
  | 'trailer-without-crlf'
  | 'message-end-without-crlf'
  | 'switched-protocols';

export class FramingError extends Error {
  readonly code = 'OLN_BAD_UPSTREAM_FRAMING' satisfies InputErrorCode;
  readonly reason: FramingReason;

  constructor(reason: FramingReason, message: string) {
    super(message);
    this.reason = reason;
  }
}

/** Largest response head (and trailer section) accepted from the upstream. */
export const MAX_HEAD_BYTES = 64 * 1024;

const HEAD_END = Buffer.from('\r\n\r\n');
const STATUS_LINE = /^HTTP\/1\.([01]) ([1-9]\d\d)(?: [^\x00-\x08\x0a-\x1f\x7f]*)?$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\x00-\x08\x0a-\x1f\x7f]/;
const DIGITS = /^\d{1,15}$/;

export type BodyFraming = 'none' | 'length' | 'chunked' | 'close';

export interface ResponseHead {
  readonly status: number;
  /** The header lines as sent, flat: [name, value, name, value, ...]. */
  readonly raw: string[];
  readonly framing: BodyFraming;
  /** Body length for 'length'. */
  readonly length: number;
  /** Whether the connection may carry another request after this response. */
  readonly keepAlive: boolean;
  /** How long the upstream says it keeps the connection idle (`Keep-Alive: timeout=N`), or null. */
  readonly idleMs: number | null;
  /** Index in the buffer just past the head's blank line. */
  readonly end: number;
}

function listHas(value: string, token: string): boolean {
  for (const part of value.split(',')) if (part.trim().toLowerCase() === token) return true;
  return false;
}

/**
 * Parses a response head at the start of `buf`. Returns null while the head is incomplete; throws a
 * FramingError on anything malformed or ambiguous (obs-fold, bare LF, conflicting Content-Length,
 * a head over MAX_HEAD_BYTES).
 */
export function parseResponseHead(buf: Buffer, requestMethod: string): ResponseHead | null {
  const at = buf.indexOf(HEAD_END);
  if (at < 0) {
    if (buf.length > MAX_HEAD_BYTES)
      throw new FramingError('head-too-large', `response head over ${MAX_HEAD_BYTES} bytes`);
    // A head whose lines end in bare LF never shows the CRLF CRLF it would end with: refused now
    // instead of waiting for an end that never comes.
    for (let lf = buf.indexOf(10); lf >= 0; lf = buf.indexOf(10, lf + 1)) {
      if (lf === 0 || buf[lf - 1] !== 13) throw new FramingError('bare-lf-in-head', 'bare LF in the response head');
    }
    return null;
  }
  if (at + 4 > MAX_HEAD_BYTES) throw new FramingError('head-too-large', `response head over ${MAX_HEAD_BYTES} bytes`);
  const lines = buf.toString('latin1', 0, at).split('\r\n');
  const status = STATUS_LINE.exec(lines[0]!);
  if (status === null)
    throw new FramingError('bad-status-line', `bad status line ${JSON.stringify(lines[0]!.slice(0, 80))}`);
  const http10 = status[1] === '0';
  const code = Number(status[2]);
  const raw: string[] = [];
  let contentLength: string | null = null;
  let te: string | null = null;
  let connection = '';
  let idleMs: number | null = null;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    const colon = line.indexOf(':');
    const name = colon > 0 ? line.slice(0, colon) : '';
    if (!TOKEN.test(name))
      throw new FramingError('bad-header-line', `bad header line ${JSON.stringify(line.slice(0, 80))}`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    if (BAD_VALUE.test(value)) throw new FramingError('bad-header-value', `bad value of header ${name}`);
    raw.push(name, value);
    switch (name.toLowerCase()) {
      case 'content-length':
        for (const part of value.split(',')) {
          const v = part.trim();
          if (!DIGITS.test(v) || (contentLength !== null && contentLength !== v)) {
            throw new FramingError('bad-content-length', `bad or conflicting Content-Length ${JSON.stringify(value)}`);
          }
          contentLength = v;
        }
        break;
      case 'transfer-encoding':
        te = te === null ? value : `${te}, ${value}`;
        break;
      case 'connection':
        connection = connection === '' ? value : `${connection}, ${value}`;
        break;
      case 'keep-alive': {
        const m = /(?:^|[,;\s])timeout=(\d{1,6})/i.exec(value);
        if (m !== null) idleMs = Number(m[1]) * 1000;
        break;
      }
    }
  }
  let keepAlive = http10 ? listHas(connection, 'keep-alive') : !listHas(connection, 'close');
  let framing: BodyFraming;
  let length = 0;
  if (requestMethod === 'HEAD' || code < 200 || code === 204 || code === 304) {
    framing = 'none';
  } else if (te !== null && contentLength !== null) {
    // RFC 9112 §6.3: a sign of smuggling; the client behind ollana could read it either way.
    throw new FramingError('te-with-cl', 'both Transfer-Encoding and Content-Length');
  } else if (te !== null) {
    const codings = te.split(',').map((c) => c.trim().toLowerCase());
    if (codings[codings.length - 1] !== 'chunked') {
      framing = 'close';
      keepAlive = false;
    } else if (codings.length > 1 || http10) {
      throw new FramingError('unsupported-te', `unsupported Transfer-Encoding ${JSON.stringify(te)}`);
    } else {
      framing = 'chunked';
    }
  } else if (contentLength !== null) {
    framing = 'length';
    length = Number(contentLength);
  } else {
    framing = 'close';
    keepAlive = false;
  }
  return { status: code, raw, framing, length, keepAlive, idleMs, end: at + 4 };
}

/** Chunk scanner states. */
const S = {
  SIZE: 0,
  SIZE_LF: 3,
  DATA: 4,
  DATA_CR: 5,
  DATA_LF: 6,
  TRAILER: 7,
  TRAILER_LINE: 8,
  TRAILER_LF: 9,
  FINAL_LF: 10,
  EXT_START: 11,
  EXT_NAME: 12,
  EXT_VALUE_START: 13,
  EXT_VALUE: 14,
  EXT_QUOTED: 15,
  EXT_QUOTED_ESC: 16,
  EXT_QUOTED_END: 17,
} as const;

/** tchar (RFC 9110 §5.6.2), by byte. */
const TCHAR = new Uint8Array(256);
for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
  TCHAR[c.charCodeAt(0)] = 1;

/** qdtext and quoted-pair's second byte (RFC 9110 §5.6.4): HTAB, SP, VCHAR but '"' and '\\', obs-text. */
function qdtext(c: number): boolean {
  return c === 9 || c === 32 || c === 33 || (c >= 35 && c <= 91) || (c >= 93 && c <= 126) || c >= 128;
}

function hexDigit(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Finds where a response body ends, byte by byte for chunk framing, by counting otherwise. */
export class BodyEnd {
  readonly #framing: BodyFraming;
  #left: number;
  #state: number = S.SIZE;
  #digits = 0;
  #trailerBytes = 0;
  /** Bytes of the current chunk's extensions: the budget is per chunk line, not per body. */
  #extBytes = 0;
  #boundary = -1;

  constructor(framing: BodyFraming, length: number) {
    this.#framing = framing;
    this.#left = framing === 'length' ? length : 0;
  }

  #extByte(): void {
    if (++this.#extBytes > MAX_HEAD_BYTES)
      throw new FramingError('chunk-extension-too-long', 'chunk extension too long');
  }

  /**
   * Where in the buffer of the last feed() the scanner last stood between two chunks (-1: nowhere).
   * When that feed throws, the bytes up to here are whole chunks, and an error chunk may follow them.
   */
  get boundary(): number {
    return this.#boundary;
  }

  /** Whether the scanner stands between two chunks, where a chunk of ollana's own could go. */
  get atChunkStart(): boolean {
    return this.#framing === 'chunked' && this.#state === S.SIZE && this.#digits === 0;
  }

  /** True when the body has no bytes at all (the head was the whole response). */
  get empty(): boolean {
    return this.#framing === 'none' || (this.#framing === 'length' && this.#left === 0);
  }

  /**
   * Consumes `buf` from `start`. Returns the index just past the body's last byte when it ends in
   * this buffer, else -1 (a 'close' body ends only with the connection). Throws a FramingError on
   * malformed chunk framing.
   */
  feed(buf: Buffer, start: number): number {
    if (this.#framing === 'none') return start;
    if (this.#framing === 'close') return -1;
    if (this.#framing === 'length') {
      const take = Math.min(this.#left, buf.length - start);
      this.#left -= take;
      return this.#left === 0 ? start + take : -1;
    }
    let i = start;
    const n = buf.length;
    this.#boundary = this.atChunkStart ? start : -1;
    while (i < n) {
      const c = buf[i]!;
      switch (this.#state) {
        case S.SIZE: {
          const d = hexDigit(c);
          if (d >= 0) {
            if (++this.#digits > 12) throw new FramingError('chunk-size-too-large', 'chunk size too large');
            this.#left = this.#left * 16 + d;
          } else if (this.#digits === 0) {
            throw new FramingError('chunk-size-missing', 'chunk size missing');
          } else if (c === 13) {
            this.#state = S.SIZE_LF;
          } else if (c === 59) {
            this.#extBytes = 0;
            this.#state = S.EXT_START;
          } else {
            // Whitespace after the size included: Node's parser (llhttp) refuses it, so must this.
            throw new FramingError('bad-chunk-size', 'bad character in chunk size');
          }
          i++;
          break;
        }
        // Chunk extensions (RFC 9112 §7.1.1) exactly as strict as llhttp, which is what a Node client
        // behind ollana parses them with: `;name`, `;name=token`, `;name="quoted"`, no whitespace.
        case S.EXT_START:
          // llhttp takes an empty name before `;` or `=` (`;;a`, `;=v`), but not before the line end.
          if (TCHAR[c] === 1) this.#state = S.EXT_NAME;
          else if (c === 61) this.#state = S.EXT_VALUE_START;
          else if (c !== 59) throw new FramingError('bad-chunk-extension', 'bad chunk extension');
          this.#extByte();
          i++;
          break;
        case S.EXT_NAME:
          if (c === 13) this.#state = S.SIZE_LF;
          else if (c === 59) this.#state = S.EXT_START;
          else if (c === 61) this.#state = S.EXT_VALUE_START;
          else if (TCHAR[c] !== 1) throw new FramingError('bad-chunk-extension', 'bad chunk extension name');
          this.#extByte();
          i++;
          break;
        case S.EXT_VALUE_START:
        case S.EXT_VALUE:
          if (c === 13) this.#state = S.SIZE_LF;
          else if (c === 59) this.#state = S.EXT_START;
          else if (c === 34 && this.#state === S.EXT_VALUE_START) this.#state = S.EXT_QUOTED;
          else if (TCHAR[c] === 1) this.#state = S.EXT_VALUE;
          else throw new FramingError('bad-chunk-extension', 'bad chunk extension value');
          this.#extByte();
          i++;
          break;
        case S.EXT_QUOTED:
          if (c === 34) this.#state = S.EXT_QUOTED_END;
          else if (c === 92) this.#state = S.EXT_QUOTED_ESC;
          else if (!qdtext(c)) throw new FramingError('bad-chunk-extension', 'bad chunk extension quoted value');
          this.#extByte();
          i++;
          break;
        case S.EXT_QUOTED_ESC:
          if (!qdtext(c) && c !== 34 && c !== 92)
            throw new FramingError('bad-chunk-extension', 'bad chunk extension quoted value');
          this.#state = S.EXT_QUOTED;
          this.#extByte();
          i++;
          break;
        case S.EXT_QUOTED_END:
          if (c === 13) this.#state = S.SIZE_LF;
          else if (c === 59) this.#state = S.EXT_START;
          else throw new FramingError('bad-chunk-extension', 'bad chunk extension after a quoted value');
          this.#extByte();
          i++;
          break;
        case S.SIZE_LF:
          if (c !== 10) throw new FramingError('chunk-size-line-without-crlf', 'chunk size line without CRLF');
          i++;
          this.#digits = 0;
          this.#state = this.#left === 0 ? S.TRAILER : S.DATA;
          break;
        case S.DATA: {
          const take = Math.min(this.#left, n - i);
          this.#left -= take;
          i += take;
          if (this.#left === 0) this.#state = S.DATA_CR;
          break;
        }
        case S.DATA_CR:
          if (c !== 13) throw new FramingError('chunk-too-long', 'chunk data longer than its size');
          i++;
          this.#state = S.DATA_LF;
          break;
        case S.DATA_LF:
          if (c !== 10) throw new FramingError('chunk-data-without-crlf', 'chunk data without CRLF');
          i++;
          this.#state = S.SIZE;
          this.#boundary = i;
          break;
        case S.TRAILER:
          // After the last chunk: an empty line ends the message, anything else is a trailer field.
          if (c === 13) this.#state = S.FINAL_LF;
          else if (c === 10) throw new FramingError('bare-lf-after-last-chunk', 'bare LF after the last chunk');
          else this.#state = S.TRAILER_LINE;
          i++;
          break;
        case S.TRAILER_LINE:
          if (++this.#trailerBytes > MAX_HEAD_BYTES) throw new FramingError('trailers-too-long', 'trailers too long');
          if (c === 13) this.#state = S.TRAILER_LF;
          else if (c === 10) throw new FramingError('bare-lf-in-trailer', 'bare LF in a trailer');
          i++;
          break;
        case S.TRAILER_LF:
          if (c !== 10) throw new FramingError('trailer-without-crlf', 'trailer line without CRLF');
          i++;
          this.#state = S.TRAILER;
          break;
        case S.FINAL_LF:
          if (c !== 10) throw new FramingError('message-end-without-crlf', 'message end without CRLF');
          return i + 1;
      }
    }
    return -1;
  }
}
