/**
 * Streaming fan-out client: N /api/generate streams started in the same tick, each on its own new
 * connection (a crowd of clients, not one pooled client). For every token the emulator wrote its
 * own write time into the text (--stamp-tokens: performance.timeOrigin + performance.now(), in ms
 * since the epoch); on arrival we subtract that from our clock, computed the same way, so the
 * delay is write-to-delivery as the client sees it, not when our timers happened to run. A clock
 * offset between the two processes is the same for every system, so differences to direct hold.
 *
 * The client must cost next to nothing per token, or it measures itself: 200 streams write their
 * tokens in the same millisecond, and a client that spends 20 µs on each (node:http's response
 * stream: chunk parsing, a 'data' event through a Readable) delays the 200th by 4 ms whatever sits
 * in between. So each stream is a plain TCP socket that writes its request by hand and only notes
 * when each read arrived; the HTTP framing and the NDJSON lines are parsed after the run, each line
 * dated by the read that completed it.
 */
import { connect, type Socket } from 'node:net';
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
const DONE = Buffer.from('"done":true');
const CRLF = Buffer.from('\r\n');
const HEAD_END = Buffer.from('\r\n\r\n');
const LAST_CHUNK = Buffer.from('0\r\n\r\n');
const NL = 0x0a;
const SPACE = 0x20;

/** What one stream received: its reads and when each arrived (ms, performance.now()). */
interface Received {
  readonly started: number;
  readonly chunks: Buffer[];
  readonly times: number[];
}

interface Parsed {
  readonly ok: boolean;
  readonly why?: string;
  readonly ttfbMs?: number;
  readonly tokens: number;
}

/**
 * Decodes one stream after the run: status line, head, chunked or length-framed body, NDJSON lines.
 * Each token's delay is taken at the read that brought the last byte of its line.
 */
export function parseStream(r: Received, out: Samples): Parsed {
  const all = Buffer.concat(r.chunks);
  // ends[i]: offset just past read i in `all`
  const ends: number[] = [];
  let off = 0;
  for (const c of r.chunks) {
    off += c.length;
    ends.push(off);
  }
  let readIndex = 0;
  const timeAt = (pos: number): number => {
    while (ends[readIndex]! <= pos) readIndex++;
    return r.times[readIndex]!;
  };
  const headEnd = all.indexOf(HEAD_END);
  if (headEnd < 0)
    return {
      ok: false,
      why: all.length === 0 ? 'connection closed before any response' : 'incomplete response head',
      tokens: 0,
    };
  const head = all.toString('latin1', 0, headEnd);
  const status = Number(head.slice(9, 12));
  if (status !== 200) return { ok: false, why: `HTTP ${status}`, tokens: 0 };
  const chunked = /\r\ntransfer-encoding:\s*chunked/i.test(head);
  const lengthMatch = /\r\ncontent-length:\s*(\d+)/i.exec(head);
  // The body's bytes in order, with the offset in `all` where each piece came from.
  const pieces: Array<[number, number]> = [];
  let p = headEnd + 4;
  let complete = false;
  if (chunked) {
    for (;;) {
      const lineEnd = all.indexOf(CRLF, p);
      if (lineEnd < 0) break;
      const size = parseInt(all.toString('latin1', p, lineEnd), 16);
      if (!Number.isFinite(size)) return { ok: false, why: 'bad chunk size', tokens: 0 };
      if (size === 0) {
        complete = true;
        break;
      }
      const start = lineEnd + 2;
      if (start + size > all.length) {
        pieces.push([start, all.length]);
        break;
      }
      pieces.push([start, start + size]);
      p = start + size + 2;
    }
  } else if (lengthMatch !== null) {
    const end = p + Number(lengthMatch[1]);
    pieces.push([p, Math.min(end, all.length)]);
    complete = end <= all.length;
  } else {
    pieces.push([p, all.length]);
    complete = true;
  }
  if (pieces.length === 0) return { ok: false, why: 'response without a body', tokens: 0 };
  const ttfbMs = timeAt(pieces[0]![0]) - r.started;
  let tokens = 0;
  let done = false;
  let line: Buffer[] = [];
  for (const [from, to] of pieces) {
    let s = from;
    for (;;) {
      const nl = all.indexOf(NL, s);
      if (nl < 0 || nl >= to) {
        if (s < to) line.push(all.subarray(s, to));
        break;
      }
      line.push(all.subarray(s, nl));
      const text = line.length === 1 ? line[0]! : Buffer.concat(line);
      line = [];
      const k = text.indexOf(KEY);
      if (k >= 0) {
        const v = k + KEY.length;
        // A token line reads "response":"1795554813629.017 " and JSON.stringify writes no other
        // spaces; the final line ("response":"") has none, and says "done":true.
        const end = text.indexOf(SPACE, v);
        if (end > v) {
          out.push(performance.timeOrigin + timeAt(nl) - Number(text.toString('latin1', v, end)));
          tokens++;
        } else if (text.indexOf(DONE, v) > 0) {
          done = true;
        }
      }
      s = nl + 1;
    }
  }
  if (!complete) return { ok: false, why: 'connection closed mid-stream', ttfbMs, tokens };
  if (!done) return { ok: false, why: 'stream ended without a done line', ttfbMs, tokens };
  return { ok: true, ttfbMs, tokens };
}

export function runStreams(baseUrl: string, n: number, body: string, timeoutMs: number): Promise<StreamRunResult> {
  const url = new URL(baseUrl);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  const port = Number(url.port || 80);
  const payload = Buffer.from(body);
  const request = Buffer.concat([
    Buffer.from(
      `POST /api/generate HTTP/1.1\r\nhost: ${url.host}\r\n` +
        `content-type: application/json\r\ncontent-length: ${payload.length}\r\nconnection: close\r\n\r\n`,
      'latin1',
    ),
    payload,
  ]);
  const t0 = performance.now();
  const received: Received[] = [];
  const errors: Array<string | null> = [];
  const sockets: Socket[] = [];
  let open = n;

  return new Promise<StreamRunResult>((resolve) => {
    const finish = (): void => {
      clearTimeout(deadline);
      const wallMs = performance.now() - t0;
      const delays = new Samples(n * 128);
      const ttfb = new Samples(n);
      const failures: string[] = [];
      let completed = 0;
      let failed = 0;
      let tokens = 0;
      for (let i = 0; i < n; i++) {
        const parsed = parseStream(received[i]!, delays);
        tokens += parsed.tokens;
        if (parsed.ttfbMs !== undefined) ttfb.push(parsed.ttfbMs);
        const why = errors[i] ?? (parsed.ok ? null : (parsed.why ?? 'failed'));
        if (why === null) completed++;
        else {
          failed++;
          if (failures.length < 5) failures.push(why);
        }
      }
      resolve({
        streams: n,
        completed,
        failed,
        failures,
        ttfbMs: ttfb.sorted(),
        delayMs: delays.sorted(),
        tokens,
        wallMs,
      });
    };
    const deadline = setTimeout(() => {
      for (const s of sockets) s.destroy(new Error(`stream still open after ${timeoutMs} ms`));
    }, timeoutMs);

    for (let i = 0; i < n; i++) {
      const r: Received = { started: performance.now(), chunks: [], times: [] };
      received.push(r);
      errors.push(null);
      const socket = connect({ host, port, noDelay: true });
      sockets.push(socket);
      socket.on('connect', () => socket.write(request));
      socket.on('data', (chunk: Buffer) => {
        r.times.push(performance.now());
        r.chunks.push(chunk);
        // The response is complete (a token chunk ends "}\n\r\n"): close as a client with
        // `Connection: close` does, whether or not the other side closes first.
        if (chunk.length >= 5 && chunk.subarray(-5).equals(LAST_CHUNK)) socket.destroy();
      });
      socket.on('error', (err) => {
        errors[i] ??= err.message;
      });
      socket.on('close', () => {
        if (--open === 0) finish();
      });
    }
  });
}
