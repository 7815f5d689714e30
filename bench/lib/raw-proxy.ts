/**
 * Reference system "raw": an HTTP/1.1 relay on plain net sockets, with no node:http and no undici.
 * It parses only what it must (the request head, Content-Length, the response's framing to know
 * where it ends) and passes every byte through as it came, reusing upstream connections. It is a
 * measurement of what Node can reach below node:http + undici, not a proxy to ship: no chunked
 * request bodies, no pipelining, no header rules beyond Host and Connection.
 *
 *   node bench/lib/raw-proxy.ts --port P --upstream http://127.0.0.1:U --workers N
 * prints {"port":P} once every worker listens; SIGTERM stops it.
 */
import { connect, createServer, type Socket } from 'node:net';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

interface Settings {
  readonly port: number;
  readonly upstreamHost: string;
  readonly upstreamPort: number;
}

const HEAD_END = Buffer.from('\r\n\r\n');
const MAX_HEAD = 64 * 1024;
const BAD_GATEWAY = Buffer.from(
  'HTTP/1.1 502 Bad Gateway\r\ncontent-type: application/json\r\ncontent-length: 36\r\nconnection: close\r\n\r\n{"error":"raw proxy: upstream died"}',
);

/** Finds where a response body ends: Content-Length countdown or a chunked-framing scanner. */
class BodyEnd {
  #left: number;
  readonly #chunked: boolean;
  // chunked scanner state: 0 size digits, 1 rest of size line, 2 data, 3 CR after data, 4 LF after data, 5 final CRLF
  #state = 0;
  #size = 0;

  constructor(contentLength: number, chunked: boolean) {
    this.#left = contentLength;
    this.#chunked = chunked;
  }

  /** Consumes `buf` from `start`; returns the index just past the body's end, or -1 if not yet. */
  feed(buf: Buffer, start: number): number {
    if (!this.#chunked) {
      const take = Math.min(this.#left, buf.length - start);
      this.#left -= take;
      return this.#left === 0 ? start + take : -1;
    }
    let i = start;
    while (i < buf.length) {
      const c = buf[i]!;
      switch (this.#state) {
        case 0: {
          const d = c >= 48 && c <= 57 ? c - 48 : c >= 97 && c <= 102 ? c - 87 : c >= 65 && c <= 70 ? c - 55 : -1;
          if (d >= 0) {
            this.#size = this.#size * 16 + d;
            i++;
          } else this.#state = 1;
          break;
        }
        case 1:
          i++;
          if (c === 10) {
            if (this.#size === 0) this.#state = 5;
            else this.#state = 2;
          }
          break;
        case 2: {
          const take = Math.min(this.#size, buf.length - i);
          this.#size -= take;
          i += take;
          if (this.#size === 0) this.#state = 3;
          break;
        }
        case 3:
          i++;
          this.#state = 4;
          break;
        case 4:
          i++;
          this.#state = 0;
          this.#size = 0;
          break;
        case 5:
          // Last chunk: no trailers from Ollama, so the next LF closes the message.
          i++;
          if (c === 10) return i;
          break;
      }
    }
    return -1;
  }
}

function headerValue(head: string, name: string): string | null {
  const m = new RegExp(`\\r\\n${name}:[ \\t]*([^\\r]*)`, 'i').exec(head);
  return m ? m[1]!.trim() : null;
}

function serve(s: Settings): void {
  const idle: Socket[] = [];
  const hostLine = `Host: ${s.upstreamHost}:${s.upstreamPort}\r\n`;

  function upstream(): Socket {
    for (let u = idle.pop(); u !== undefined; u = idle.pop()) if (!u.destroyed) return u;
    const sock = connect({ host: s.upstreamHost, port: s.upstreamPort, noDelay: true });
    sock.on('error', () => sock.destroy());
    return sock;
  }

  const server = createServer({ noDelay: true }, (client) => {
    let buf: Buffer | null = null;
    let busy = false;
    let up: Socket | null = null;

    client.on('error', () => client.destroy());
    client.on('close', () => {
      if (busy && up !== null) up.destroy();
    });
    client.on('data', onClientData);

    function onClientData(chunk: Buffer): void {
      buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
      if (!busy) startRequest();
    }

    function startRequest(): void {
      if (buf === null) return;
      const end = buf.indexOf(HEAD_END);
      if (end < 0) {
        if (buf.length > MAX_HEAD) client.destroy();
        return;
      }
      const headText = buf.toString('latin1', 0, end + 2);
      const length = Number(headerValue(headText, 'content-length') ?? '0');
      if (headerValue(headText, 'transfer-encoding') !== null) {
        client.destroy();
        return;
      } // not needed by the bench
      const total = end + 4 + length;
      if (buf.length < total) return; // bodies here are small JSON: wait for all of it
      // Rewrite Host, drop Connection; the rest of the head and the body pass as they came.
      const lines = headText.split('\r\n');
      let out = `${lines[0]}\r\n${hostLine}`;
      for (let i = 1; i < lines.length; i++) {
        const l = lines[i]!;
        if (l === '' || /^(host|connection|keep-alive):/i.test(l)) continue;
        out += `${l}\r\n`;
      }
      out += '\r\n';
      const body = buf.subarray(end + 4, total);
      buf = total < buf.length ? buf.subarray(total) : null;
      busy = true;
      client.pause();
      relay(Buffer.concat([Buffer.from(out, 'latin1'), body]));
    }

    function relay(request: Buffer): void {
      const u = upstream();
      up = u;
      let head: Buffer | null = null;
      let bodyEnd: BodyEnd | null = null;
      let keep = true;
      const onData = (chunk: Buffer): void => {
        let from = 0;
        if (bodyEnd === null) {
          head = head === null ? chunk : Buffer.concat([head, chunk]);
          const e = head.indexOf(HEAD_END);
          if (e < 0) return;
          const text = head.toString('latin1', 0, e + 2);
          const status = Number(text.slice(9, 12));
          const cl = headerValue(text, 'content-length');
          const chunked = /chunked/i.test(headerValue(text, 'transfer-encoding') ?? '');
          keep = !/close/i.test(headerValue(text, 'connection') ?? '');
          bodyEnd = new BodyEnd(status === 204 || status === 304 ? 0 : Number(cl ?? '0'), chunked);
          chunk = head;
          from = e + 4;
          head = null;
          if (!chunked && (cl === null || cl === '0')) {
            client.write(chunk.subarray(0, from));
            done();
            return;
          }
        }
        const at = bodyEnd.feed(chunk, from);
        client.write(at < 0 ? chunk : chunk.subarray(0, at));
        if (at >= 0) done();
      };
      const onEnd = (): void => {
        fail();
      };
      const fail = (): void => {
        cleanup();
        if (bodyEnd === null && !client.destroyed) client.end(BAD_GATEWAY);
        else client.destroy();
      };
      const done = (): void => {
        cleanup();
        if (keep) idle.push(u);
        else u.destroy();
        busy = false;
        up = null;
        client.resume();
        startRequest();
      };
      const cleanup = (): void => {
        u.off('data', onData);
        u.off('end', onEnd);
        u.off('close', onEnd);
      };
      u.on('data', onData);
      u.on('end', onEnd);
      u.on('close', onEnd);
      u.write(request);
    }
  });
  server.listen({ host: '127.0.0.1', port: s.port, reusePort: true, backlog: 4096 }, () =>
    parentPort?.postMessage('ready'),
  );
}

if (isMainThread) {
  const { values } = parseArgs({
    options: { port: { type: 'string' }, upstream: { type: 'string' }, workers: { type: 'string' } },
  });
  const up = new URL(String(values.upstream));
  const settings: Settings = { port: Number(values.port), upstreamHost: up.hostname, upstreamPort: Number(up.port) };
  const workers = Number(values.workers ?? 1);
  let ready = 0;
  for (let i = 0; i < workers; i++) {
    const t = new Worker(new URL(import.meta.url), { workerData: settings });
    t.on('message', () => {
      if (++ready === workers) process.stdout.write(`${JSON.stringify({ port: settings.port })}\n`);
    });
    t.on('error', (err) => {
      process.stderr.write(`raw proxy worker died: ${err.stack ?? err.message}\n`);
      process.exit(1);
    });
  }
  process.once('SIGTERM', () => process.exit(0));
} else {
  serve(workerData as Settings);
}
