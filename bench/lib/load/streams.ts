/**
 * Streaming fan-out client: N /api/generate streams started in the same tick, each on its own new
 * connection (a crowd of clients, not one pooled client). For every token the emulator wrote its
 * own write time into the text (--stamp-tokens: performance.timeOrigin + performance.now(), in ms
 * since the epoch); on arrival we subtract that from our clock, computed the same way, so the
 * delay is write-to-delivery as the client sees it, not when our timers happened to run. A clock
 * offset between the two processes is the same for every system, so differences to direct hold.
 */
import { request } from 'node:http';
import { Samples } from '../stats.ts';

export interface StreamRunResult {
  readonly streams: number;
  readonly completed: number;
  readonly failed: number;
  /** First few failure reasons, for the report. */
  readonly failures: readonly string[];
  /** Request start to first body byte, ms, sorted. */
  readonly ttfbMs: Float64Array;
  /** Token write (emulator stamp) to arrival, ms, sorted. */
  readonly delayMs: Float64Array;
  readonly tokens: number;
  readonly wallMs: number;
}

const KEY = Buffer.from('"response":"');
const NL = 0x0a;
const SPACE = 0x20;

/** Parses NDJSON chunks of one stream; keeps a partial line between chunks. */
class StreamParser {
  #pending: Buffer | null = null;
  done = false;

  /** Pushes the delay of every stamped token in `chunk`; returns how many. */
  feed(chunk: Buffer, nowMs: number, out: Samples): number {
    const buf = this.#pending === null ? chunk : Buffer.concat([this.#pending, chunk]);
    let count = 0;
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(NL, start);
      if (nl < 0) break;
      const k = buf.indexOf(KEY, start);
      if (k >= 0 && k < nl) {
        const v = k + KEY.length;
        // A token line reads "response":"1795554813629.017 " and JSON.stringify writes no other
        // spaces; the final line ("response":"") has none, and says "done":true.
        const end = buf.indexOf(SPACE, v);
        if (end > v && end < nl) {
          out.push(nowMs - Number(buf.toString('latin1', v, end)));
          count++;
        } else if (buf.indexOf('"done":true', v) > 0) {
          this.done = true;
        }
      }
      start = nl + 1;
    }
    this.#pending = start < buf.length ? buf.subarray(start) : null;
    return count;
  }
}

export function runStreams(baseUrl: string, n: number, body: string, timeoutMs: number): Promise<StreamRunResult> {
  const url = new URL(baseUrl);
  const payload = Buffer.from(body);
  const delays = new Samples(n * 128);
  const ttfb = new Samples(n);
  const failures: string[] = [];
  let completed = 0;
  let failed = 0;
  let tokens = 0;
  let open = n;
  const t0 = performance.now();
  const requests: ReturnType<typeof request>[] = [];

  return new Promise<StreamRunResult>((resolve) => {
    const finish = (): void => {
      clearTimeout(deadline);
      resolve({
        streams: n, completed, failed, failures,
        ttfbMs: ttfb.sorted(), delayMs: delays.sorted(), tokens, wallMs: performance.now() - t0,
      });
    };
    const settle = (ok: boolean, why?: string): void => {
      if (ok) completed++;
      else {
        failed++;
        if (failures.length < 5 && why !== undefined) failures.push(why);
      }
      if (--open === 0) finish();
    };
    const deadline = setTimeout(() => {
      for (const r of requests) r.destroy(new Error(`stream still open after ${timeoutMs} ms`));
    }, timeoutMs);

    for (let i = 0; i < n; i++) {
      const started = performance.now();
      let settled = false;
      const once = (ok: boolean, why?: string): void => {
        if (settled) return;
        settled = true;
        settle(ok, why);
      };
      const parser = new StreamParser();
      const req = request({
        host: url.hostname, port: url.port, path: '/api/generate', method: 'POST', agent: false,
        headers: { 'content-type': 'application/json', 'content-length': payload.length },
      }, (res) => {
        if (res.statusCode !== 200) {
          res.resume();
          once(false, `HTTP ${res.statusCode}`);
          return;
        }
        let first = true;
        res.on('data', (chunk: Buffer) => {
          const now = performance.now();
          if (first) { first = false; ttfb.push(now - started); }
          tokens += parser.feed(chunk, performance.timeOrigin + now, delays);
        });
        res.on('end', () => once(parser.done, parser.done ? undefined : 'stream ended without a done line'));
        res.on('error', (err) => once(false, err.message));
        res.on('close', () => once(parser.done, 'connection closed mid-stream'));
      });
      req.on('socket', (s) => s.setNoDelay(true));
      req.on('error', (err) => once(false, err.message));
      req.end(payload);
      requests.push(req);
    }
  });
}
