/**
 * Finds the model a request names, wherever Ollama reads it, so that a client node can route the
 * request to a server that has it:
 * - in the path: GET /v1/models/{id};
 * - in a JSON body, read only until the model is known (model-scan.ts);
 * - in a multipart form field `model` (/v1/audio/transcriptions), the file part skipped unkept;
 * - in a compressed body (`Content-Encoding: zstd`, as Codex sends, or gzip, deflate, br): a copy
 *   of the head is decompressed only to read the model; the original bytes are what is forwarded.
 * No body is held whole, however large: once the model is known (or cannot be), the bytes read so
 * far are replayed ahead of the rest, which streams with backpressure. A body that declares a size
 * up to SCAN_BYTES is read whole first, so it can be sent again to the next server.
 */
import type { IncomingMessage } from 'node:http';
import type { Readable, Transform } from 'node:stream';
import { createBrotliDecompress, createGunzip, createInflate, createZstdDecompress } from 'node:zlib';
import { ModelScan } from './model-scan.ts';
import { prepended } from '../http/request-body.ts';

/**
 * How much of a JSON body is read, at most, to find the model: clients send `model` first, but a
 * chat may put megabytes of base64 images before it. Past this the request goes to the least busy
 * server, as one naming no model does.
 */
export const SCAN_BYTES = 1024 * 1024;

/**
 * How much of a multipart body is read, at most, to find its `model` field. The OpenAI SDK writes
 * the fields in the caller's order, usually the audio file first; OpenAI's own limit on a
 * transcription's file is 25 MB, so the model field of any file it takes is found.
 */
export const MULTIPART_SCAN_BYTES = 26 * 1024 * 1024;

/** Longest model value kept from a form field (as model-scan.ts's bound). */
const MAX_FIELD_BYTES = 1024;
/** Longest part header block looked at. */
const MAX_PART_HEADERS = 16 * 1024;

/** Reads a body chunk by chunk; calls its `done` once, with the model or null, when no more is needed. */
interface Sniffer {
  feed(chunk: Buffer): void;
  /** The body ended. */
  end(): void;
}
type Done = (model: string | null) => void;

class JsonSniffer implements Sniffer {
  readonly #scan = new ModelScan(SCAN_BYTES);
  readonly #done: Done;
  constructor(done: Done) {
    this.#done = done;
  }
  feed(chunk: Buffer): void {
    if (this.#scan.feed(chunk) !== 'more') this.#done(this.#scan.model);
  }
  end(): void {
    this.#done(this.#scan.model);
  }
}

/** The value of the form field `model` of a multipart/form-data body (RFC 7578). */
class MultipartSniffer implements Sniffer {
  readonly #first: Buffer;
  readonly #delimiter: Buffer;
  readonly #done: Done;
  /** Bytes not yet consumed (a possible partial delimiter, headers, a field value). */
  #pending: Buffer = Buffer.alloc(0);
  #state: 'preamble' | 'after-delimiter' | 'headers' | 'value' | 'skip' = 'preamble';
  #seen = 0;

  constructor(boundary: string, done: Done) {
    this.#first = Buffer.from(`--${boundary}`);
    this.#delimiter = Buffer.from(`\r\n--${boundary}`);
    this.#done = done;
  }

  feed(chunk: Buffer): void {
    this.#seen += chunk.length;
    this.#pending = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    if (!this.#run()) return;
    if (this.#seen >= MULTIPART_SCAN_BYTES) this.#done(null);
  }

  end(): void {
    this.#done(null);
  }

  /** Consumes what it can; false once it called done. */
  #run(): boolean {
    for (;;) {
      const p = this.#pending;
      switch (this.#state) {
        case 'preamble':
        case 'skip': {
          const delim = this.#state === 'preamble' ? this.#first : this.#delimiter;
          const at = p.indexOf(delim);
          if (at < 0) {
            // Keep only what may be the start of a delimiter.
            this.#pending = p.subarray(Math.max(0, p.length - delim.length + 1));
            return true;
          }
          this.#pending = p.subarray(at + delim.length);
          this.#state = 'after-delimiter';
          break;
        }
        case 'after-delimiter':
          if (p.length < 2) return true;
          if (p[0] === 0x2d && p[1] === 0x2d) {
            this.#done(null); // the closing delimiter: no model field
            return false;
          }
          this.#pending = p.subarray(p.indexOf(0x0a) + 1 || p.length);
          this.#state = 'headers';
          break;
        case 'headers': {
          const at = p.indexOf('\r\n\r\n');
          if (at < 0) {
            if (p.length > MAX_PART_HEADERS) {
              this.#done(null);
              return false;
            }
            return true;
          }
          const headers = p.subarray(0, at).toString('latin1');
          this.#pending = p.subarray(at + 4);
          this.#state = /^content-disposition:[^\r\n]*;\s*name="?model"?\s*(;|\r|$)/im.test(headers) ? 'value' : 'skip';
          break;
        }
        case 'value': {
          const at = p.indexOf(this.#delimiter);
          if (at < 0) {
            if (p.length > MAX_FIELD_BYTES + this.#delimiter.length) {
              this.#done(null);
              return false;
            }
            return true;
          }
          const value = p.subarray(0, at).toString('utf8').trim();
          this.#done(value === '' ? null : value);
          return false;
        }
      }
    }
  }
}

function decompressor(encoding: string): Transform | null {
  switch (encoding) {
    case 'zstd':
      return createZstdDecompress();
    case 'gzip':
    case 'x-gzip':
      return createGunzip();
    case 'deflate':
      return createInflate();
    case 'br':
      return createBrotliDecompress();
    default:
      return null;
  }
}

/** Decompresses a copy of the body's head into another sniffer; never more than it needs. */
class CompressedSniffer implements Sniffer {
  readonly #z: Transform;
  readonly #done: Done;
  #over = false;
  #in = 0;

  constructor(z: Transform, inner: (done: Done) => Sniffer, done: Done) {
    this.#z = z;
    this.#done = (model) => {
      if (this.#over) return;
      this.#over = true;
      done(model);
      z.destroy();
    };
    const sniffer = inner(this.#done);
    z.on('data', (out: Buffer) => {
      if (!this.#over) sniffer.feed(out);
    });
    z.once('end', () => sniffer.end());
    // Not what it claims to be: Ollama will answer it; route it as one naming no model.
    z.once('error', () => this.#done(null));
  }

  feed(chunk: Buffer): void {
    if (this.#over) return;
    this.#in += chunk.length;
    // A compressed head this long without the model: give up as the plain scan would.
    if (this.#in > SCAN_BYTES) this.#done(null);
    else this.#z.write(chunk);
  }

  end(): void {
    if (!this.#over) this.#z.end();
  }
}

function snifferFor(req: IncomingMessage, done: Done): Sniffer {
  const type = req.headers['content-type'] ?? '';
  const boundary = /^multipart\/form-data\s*;.*\bboundary=(?:"([^"]+)"|([^;\s]+))/i.exec(type);
  const plain = (d: Done): Sniffer =>
    boundary !== null ? new MultipartSniffer(boundary[1] ?? boundary[2]!, d) : new JsonSniffer(d);
  const encoding = (req.headers['content-encoding'] ?? '').trim().toLowerCase();
  if (encoding === '' || encoding === 'identity') return plain(done);
  const z = decompressor(encoding);
  // An encoding it cannot undo (or several): no model from the body.
  if (z === null) return { feed: () => done(null), end: () => done(null) };
  return new CompressedSniffer(z, plain, done);
}

/** The model named in the path of GET /v1/models/{id}, or null for another path. */
export function modelInPath(url: string): string | null {
  const path = url.split('?', 1)[0]!;
  if (!path.startsWith('/v1/models/')) return null;
  try {
    const id = decodeURIComponent(path.slice('/v1/models/'.length));
    return id === '' ? null : id;
  } catch {
    return null;
  }
}

/**
 * Reads a request only until its model is known, then hands on the model and the body: whole (a
 * Buffer, or null for none) if it ended meanwhile, else a stream of the bytes read so far followed
 * by the rest.
 */
export function routeByModel(
  req: IncomingMessage,
  then: (model: string | null, body: Buffer | Readable | null) => void,
): void {
  const declared = Number(req.headers['content-length'] ?? '-1');
  const hasBody = declared > 0 || (declared < 0 && req.headers['transfer-encoding'] !== undefined);
  const inPath = modelInPath(req.url ?? '/');
  // Small enough to hold (nearly every request): read whole, so it can go to the next server too.
  const holdWhole = declared >= 0 && declared <= SCAN_BYTES;
  const chunks: Buffer[] = [];
  let size = 0;
  let ended = false;
  let model: string | null = null;
  let decided = false;
  let handed = false;
  const hand = (): void => {
    if (handed) return;
    handed = true;
    req.off('data', onData);
    req.off('end', onEnd);
    if (ended) then(model, size === 0 ? null : chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    else {
      req.pause();
      then(model, prepended(chunks, req));
    }
  };
  const decide = (found: string | null): void => {
    if (decided) return;
    decided = true;
    model = inPath ?? found;
    if (ended || !holdWhole) hand();
  };
  const sniffer: Sniffer | null = inPath !== null || !hasBody ? null : snifferFor(req, decide);
  const onData = (chunk: Buffer): void => {
    chunks.push(chunk);
    size += chunk.length;
    if (!decided) sniffer?.feed(chunk);
  };
  const onEnd = (): void => {
    ended = true;
    if (decided) hand();
    else if (sniffer === null) decide(null);
    else sniffer.end(); // decides, at once or once a decompressor has flushed
  };
  req.on('data', onData);
  req.on('end', onEnd);
}
