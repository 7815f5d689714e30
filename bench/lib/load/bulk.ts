/**
 * Large bodies: a blob upload (POST /api/blobs/sha256:<hex>, which the emulator hashes as it
 * streams in) and a large response (GET /emulator/bytes?n=N). Both sides stream 1 MiB at a time
 * with backpressure, so only the system in the middle could hold a body in memory.
 */
import { createHash, type Hash } from 'node:crypto';
import { once } from 'node:events';
import { request, type IncomingMessage } from 'node:http';

export const CHUNK_BYTES = 1024 * 1024;

export interface BulkResult {
  readonly ok: boolean;
  readonly bytes: number;
  readonly seconds: number;
  readonly mibPerSec: number;
  readonly error: string | null;
}

/**
 * Upload bodies: the same 1 MiB chunk repeated, then a last chunk unique to each upload (the
 * emulator answers 200 without reading when it already has a blob, which would measure nothing).
 * SHA-256 is computed once over the shared prefix; each digest then costs one copy() and 1 MiB.
 */
export class BlobBodies {
  readonly bytes: number;
  readonly #chunk = Buffer.alloc(CHUNK_BYTES, 'ollana bench blob ');
  readonly #prefix: Hash;
  #count = 0;

  constructor(bytes: number) {
    if (bytes % CHUNK_BYTES !== 0 || bytes < CHUNK_BYTES) throw new Error('body size must be a whole number of MiB');
    this.bytes = bytes;
    this.#prefix = createHash('sha256');
    for (let i = 0; i < bytes / CHUNK_BYTES - 1; i++) this.#prefix.update(this.#chunk);
  }

  next(): { digest: string; chunk: Buffer; tail: Buffer; chunks: number } {
    const tail = Buffer.from(this.#chunk);
    tail.write(`unique tail ${process.pid} ${++this.#count} ${Date.now()} `, 0, 'latin1');
    const digest = `sha256:${this.#prefix.copy().update(tail).digest('hex')}`;
    return { digest, chunk: this.#chunk, tail, chunks: this.bytes / CHUNK_BYTES };
  }
}

function result(ok: boolean, bytes: number, t0: number, error: string | null): BulkResult {
  const seconds = (performance.now() - t0) / 1000;
  return { ok, bytes, seconds, mibPerSec: bytes / CHUNK_BYTES / seconds, error };
}

export function upload(baseUrl: string, body: ReturnType<BlobBodies['next']>, timeoutMs: number): Promise<BulkResult> {
  const url = new URL(baseUrl);
  const total = body.chunks * CHUNK_BYTES;
  const t0 = performance.now();
  return new Promise<BulkResult>((resolve) => {
    let settled = false;
    const stopWriting = new AbortController();
    const done = (r: BulkResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // An early answer (an error status) leaves the writer waiting for 'drain': release it.
      stopWriting.abort();
      if (!req.writableFinished) req.destroy();
      resolve(r);
    };
    const req = request(
      {
        host: url.hostname,
        port: url.port,
        path: `/api/blobs/${body.digest}`,
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/octet-stream', 'content-length': total },
      },
      (res: IncomingMessage) => {
        res.resume();
        res.on('end', () =>
          done(result(res.statusCode === 201, total, t0, res.statusCode === 201 ? null : `HTTP ${res.statusCode}`)),
        );
        res.on('error', (err) => done(result(false, total, t0, err.message)));
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`upload unfinished after ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (err) => done(result(false, total, t0, err.message)));
    void (async () => {
      for (let i = 0; i < body.chunks - 1 && !req.destroyed; i++) {
        if (!req.write(body.chunk)) await once(req, 'drain', { signal: stopWriting.signal }).catch(() => undefined);
      }
      if (!req.destroyed) req.end(body.tail);
    })();
  });
}

export function download(baseUrl: string, bytes: number, timeoutMs: number): Promise<BulkResult> {
  const url = new URL(baseUrl);
  const t0 = performance.now();
  return new Promise<BulkResult>((resolve) => {
    let settled = false;
    let got = 0;
    const done = (r: BulkResult): void => {
      if (!settled) {
        settled = true;
        clearTimeout(timer);
        resolve(r);
      }
    };
    const req = request(
      { host: url.hostname, port: url.port, path: `/emulator/bytes?n=${bytes}`, method: 'GET', agent: false },
      (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          done(result(false, 0, t0, `HTTP ${res.statusCode}`));
          return;
        }
        res.on('data', (c: Buffer) => {
          got += c.length;
        });
        res.on('end', () =>
          done(result(got === bytes, got, t0, got === bytes ? null : `got ${got} of ${bytes} bytes`)),
        );
        res.on('error', (err) => done(result(false, got, t0, err.message)));
      },
    );
    const timer = setTimeout(() => req.destroy(new Error(`download unfinished after ${timeoutMs} ms`)), timeoutMs);
    req.on('error', (err) => done(result(false, got, t0, err.message)));
    req.end();
  });
}
