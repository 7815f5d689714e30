/**
 * A client node routes generate, chat and embed requests by the model their JSON body names (issue
 * #22, item 8): it reads a body only until the model is known, then streams the rest, so unfinished
 * uploads cannot make it hold their bodies. The client node's workers run in a process of their own
 * (test/fixtures/client-pool/) in front of two upstream "servers" that count and hash what reaches
 * them; its memory is read from /proc.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { freePort } from '../helpers/ollana-process.ts';

const FIXTURE = fileURLToPath(new URL('../fixtures/client-pool/client-pool.ts', import.meta.url));
const MIB = 1024 * 1024;

interface Seen {
  url: string;
  bytes: number;
  sha256: string;
  complete: boolean;
}

/** An upstream that reads each request body to its end (or abort), hashing it, and answers 200. */
class Sink {
  readonly seen: Seen[] = [];
  readonly server: Server;
  url = '';
  readonly name: string;
  constructor(name: string) {
    this.name = name;
    this.server = createServer((req, res) => {
      const rec: Seen = { url: req.url ?? '', bytes: 0, sha256: '', complete: false };
      this.seen.push(rec);
      const hash = createHash('sha256');
      req.on('data', (c: Buffer) => {
        rec.bytes += c.length;
        hash.update(c);
      });
      req.on('end', () => {
        rec.complete = true;
        rec.sha256 = hash.digest('hex');
        const body = JSON.stringify({ server: this.name, bytes: rec.bytes });
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }).end(body);
      });
      req.on('error', () => undefined);
    });
  }
  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }
}

const a = new Sink('a');
const b = new Sink('b');
let child: ChildProcess;
let port: number;

function rss(pid: number, field: 'VmRSS' | 'VmHWM'): number {
  const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]) / 1024;
}

before(async () => {
  await Promise.all([a.listen(), b.listen()]);
  port = await freePort();
  child = spawn(process.execPath, [FIXTURE, String(port), `a=${a.url}=llama3.2:latest`, `b=${b.url}=qwen2.5:7b`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const first = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`client pool exited with ${code}`)));
  });
  assert.equal((JSON.parse(first) as { port: number }).port, port);
});

after(async () => {
  child?.kill('SIGKILL');
  a.server.closeAllConnections();
  b.server.closeAllConnections();
  a.server.close();
  b.server.close();
});

/** A chat body of about `size` bytes naming `model` first, padded with a base64-like image. */
function chatBody(model: string, size: number): Buffer {
  const head = `{"model":${JSON.stringify(model)},"messages":[{"role":"user","content":"hi","images":["`;
  const tail = '"]}],"stream":false}';
  const pad = Buffer.alloc(size - head.length - tail.length, 'Q');
  for (let i = 0; i < pad.length; i += 4093) pad[i] = 65 + (i % 26);
  return Buffer.concat([Buffer.from(head), pad, Buffer.from(tail)]);
}

function post(
  path: string,
  body: Buffer,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method: 'POST',
        path,
        agent: false,
        headers: { 'content-type': 'application/json', ...headers },
      },
      (res) => {
        let text = '';
        res.on('data', (c: Buffer) => {
          text += c.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

test('small and large bodies go to the server that has their model, byte for byte (Content-Length and chunked)', async () => {
  for (const [size, chunked] of [
    [200, false],
    [3 * MIB, false],
    [3 * MIB, true],
    [20 * MIB, false],
    // Over 64 MiB, chunked: the model is read from the head, the rest streams (never a 413).
    [65 * MIB, true],
  ] as const) {
    for (const [model, sink] of [
      ['qwen2.5:7b', b],
      ['llama3.2', a],
    ] as const) {
      const body = chatBody(model, size);
      const before = sink.seen.length;
      const r = await post(
        `/api/chat?size=${size}&chunked=${chunked}`,
        body,
        chunked ? { 'transfer-encoding': 'chunked' } : { 'content-length': String(body.length) },
      );
      assert.equal(r.status, 200, r.body);
      assert.equal((JSON.parse(r.body) as { server: string }).server, sink.name, `${model}, ${size} bytes`);
      const got = sink.seen[before]!;
      assert.equal(got.bytes, body.length);
      assert.equal(
        got.sha256,
        createHash('sha256').update(body).digest('hex'),
        `${model}, ${size} bytes arrived byte for byte`,
      );
    }
  }
});

test('16 unfinished 59 MiB uploads: the client node streams them on instead of holding them', {
  timeout: 120_000,
}, async (t) => {
  const pid = child.pid!;
  const UPLOADS = 16;
  const DECLARED = 59 * MIB;
  const SENT = 40 * MIB;
  const baseline = rss(pid, 'VmRSS');
  const baselinePeak = rss(pid, 'VmHWM');
  const sockets: Socket[] = [];
  const block = chatBody('llama3.2', DECLARED).subarray(0, SENT);
  try {
    await Promise.all(
      Array.from({ length: UPLOADS }, async (_, i) => {
        const s = connect(port, '127.0.0.1');
        sockets.push(s);
        s.on('error', () => undefined);
        await new Promise<void>((resolve) => s.once('connect', () => resolve()));
        s.write(
          `POST /api/chat?upload=${i} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${DECLARED}\r\n\r\n`,
        );
        // Written with backpressure: the client node takes it as fast as it passes it on (or holds it).
        for (let at = 0; at < SENT; at += MIB) {
          if (!s.write(block.subarray(at, at + MIB)))
            await new Promise<void>((resolve) => s.once('drain', () => resolve()));
        }
      }),
    );
    // Every byte sent is out of the client node: at the upstream, or in the sockets between.
    const t0 = performance.now();
    const arrived = (): number => a.seen.filter((s) => s.url.includes('upload=')).reduce((n, s) => n + s.bytes, 0);
    while (arrived() < UPLOADS * SENT * 0.95 && performance.now() - t0 < 30_000)
      await new Promise((r) => setTimeout(r, 100));
    const now = rss(pid, 'VmRSS');
    const peak = rss(pid, 'VmHWM');
    const report =
      `${UPLOADS} uploads of ${DECLARED / MIB} MiB, ${SENT / MIB} MiB each sent and held: client node RSS ${baseline.toFixed(0)} -> ${now.toFixed(0)} MB ` +
      `(peak ${baselinePeak.toFixed(0)} -> ${peak.toFixed(0)} MB); ${(arrived() / MIB).toFixed(0)} MiB reached the upstream`;
    t.diagnostic(report);
    assert.ok(arrived() >= UPLOADS * SENT * 0.95, `the bodies streamed on: ${report}`);
    assert.ok(
      peak - baselinePeak < 200,
      `peak RSS bounded (holding them would take ${((UPLOADS * SENT) / MIB).toFixed(0)} MiB): ${report}`,
    );
  } finally {
    for (const s of sockets) s.destroy();
  }
});
