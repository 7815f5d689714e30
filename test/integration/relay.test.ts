/**
 * The server node's relay to its local Ollama (src/proxy/relay/), against a scripted upstream on a
 * raw TCP socket, so each test decides byte by byte what "Ollama" sends: kept connections, a kept
 * connection closed under a request, malformed framing, bytes after a response, bodies that end
 * with the connection. The well-behaved paths are covered through the emulator in proxy.test.ts.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { after, before, beforeEach, test } from 'node:test';
import { removeHome, type Started, startServerNode } from '../helpers/ollana-process.ts';
import { raw } from '../helpers/http.ts';

interface Seen {
  readonly conn: number;
  readonly head: string;
  readonly body: Buffer;
}

/** What the scripted upstream does with the n-th request of the current test. */
type Script = (seen: Seen, socket: Socket, n: number) => void;

let upstream: Server;
let upstreamPort: number;
let script: Script;
let seen: Seen[] = [];
let connections = 0;
const open = new Set<Socket>();
let node: Started;

/** Reads requests off one upstream connection (Content-Length or chunked bodies) and runs the script. */
function serveConnection(socket: Socket): void {
  const conn = ++connections;
  open.add(socket);
  socket.once('close', () => open.delete(socket));
  let buf = Buffer.alloc(0);
  socket.on('error', () => socket.destroy());
  socket.on('data', (chunk: Buffer) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.toString('latin1', 0, end);
      const length = /\r\ncontent-length: *(\d+)/i.exec(head);
      let body: Buffer;
      let rest: number;
      if (/\r\ntransfer-encoding: *chunked/i.test(head)) {
        const parts: Buffer[] = [];
        let at = end + 4;
        for (;;) {
          const line = buf.indexOf('\r\n', at);
          if (line < 0) return;
          const size = parseInt(buf.toString('latin1', at, line), 16);
          if (buf.length < line + 2 + size + 2) return;
          if (size === 0) {
            at = line + 4;
            break;
          }
          parts.push(buf.subarray(line + 2, line + 2 + size));
          at = line + 2 + size + 2;
        }
        body = Buffer.concat(parts);
        rest = at;
      } else {
        const len = length === null ? 0 : Number(length[1]);
        if (buf.length < end + 4 + len) return;
        body = buf.subarray(end + 4, end + 4 + len);
        rest = end + 4 + len;
      }
      buf = buf.subarray(rest);
      // The node's own health checks are answered here and kept out of the tests' counts.
      if (head.startsWith('GET /api/version ')) {
        socket.write(ok('{"version":"0.12.0"}'));
        continue;
      }
      const s: Seen = { conn, head, body: Buffer.from(body) };
      seen.push(s);
      script(s, socket, seen.length);
    }
  });
}

const ok = (body: string): string =>
  `HTTP/1.1 200 OK\r\ncontent-type: application/json; charset=utf-8\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

before(async () => {
  upstream = createServer(serveConnection);
  await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
  upstreamPort = (upstream.address() as { port: number }).port;
  script = (_s, socket) => socket.write(ok('{}'));
  // One proxy worker, so "the same connection" means the same worker's pool.
  node = await startServerNode(`http://127.0.0.1:${upstreamPort}`, { workers: 1 });
});

after(async () => {
  await node?.stop();
  if (node) removeHome(node.home);
  upstream?.close();
  for (const socket of open) socket.destroy();
});

beforeEach(() => {
  seen = [];
});

const mine = (): Seen[] => seen;

test('kept connections: requests one after another share one upstream connection', async () => {
  script = (_s, socket) => socket.write(ok('{"models":[]}'));
  for (let i = 0; i < 5; i++) {
    const r = await raw(`${node.url}/api/tags`);
    assert.equal(r.status, 200);
    assert.equal(r.body.toString(), '{"models":[]}');
  }
  const conns = new Set(mine().map((s) => s.conn));
  assert.equal(mine().length, 5);
  assert.equal(conns.size, 1, `5 requests used ${conns.size} upstream connections`);
});

test("kept connections end a second before the upstream's announced idle time", async () => {
  script = (_s, socket) => socket.write('HTTP/1.1 200 OK\r\nkeep-alive: timeout=2\r\ncontent-length: 2\r\n\r\n{}');
  await raw(`${node.url}/api/tags`);
  await raw(`${node.url}/api/tags`);
  await new Promise((resolve) => setTimeout(resolve, 1_400));
  await raw(`${node.url}/api/tags`);
  const [a, b, c] = mine().map((s) => s.conn);
  assert.equal(a, b, 'reused within the idle time');
  assert.notEqual(b, c, 'let go after 1 s (2 s announced, minus a second)');
});

test("the request head: Host is the upstream's, hop-by-hop headers stop, the body is framed by the relay", async () => {
  script = (_s, socket) => socket.write(ok('{}'));
  await raw(`${node.url}/api/generate?x=1`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      connection: 'keep-alive, x-hop',
      'x-hop': '1',
      'keep-alive': 'timeout=5',
      authorization: 'Bearer t',
    },
    body: '{"model":"m"}',
  });
  const s = mine().at(-1)!;
  const lines = s.head.split('\r\n');
  assert.equal(lines[0], 'POST /api/generate?x=1 HTTP/1.1');
  const names = lines.slice(1).map((l) => l.slice(0, l.indexOf(':')).toLowerCase());
  assert.equal(names.filter((n) => n === 'host').length, 1);
  assert.ok(lines.includes(`host: 127.0.0.1:${upstreamPort}`), s.head);
  assert.ok(lines.includes('content-length: 13'), s.head);
  assert.ok(lines.includes('authorization: Bearer t'), s.head);
  for (const gone of ['connection', 'x-hop', 'keep-alive'])
    assert.ok(!names.includes(gone), `${gone} reached the upstream`);
  assert.equal(s.body.toString(), '{"model":"m"}');
});

test('bodies on both sides of the one-write size (16 KiB) reach the upstream and come back byte for byte', async () => {
  // Up to ONE_WRITE_MAX_BODY a head and its body leave in one copied buffer, above it in two writes:
  // either way the upstream must see the head it was sent and every byte of the body in place.
  script = (s, socket) => {
    const answer = Buffer.from(s.body).reverse();
    socket.write(
      Buffer.concat([
        Buffer.from(
          `HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${answer.length}\r\n\r\n`,
        ),
        answer,
      ]),
    );
  };
  for (const size of [1, 1000, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 40_000]) {
    const body = randomBytes(size);
    const r = await raw(`${node.url}/api/blobs/sha256:x`, {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'x-size': String(size) },
      body,
    });
    const s = mine().at(-1)!;
    assert.match(s.head, /^POST \/api\/blobs\/sha256:x HTTP\/1\.1\r\n/, `size ${size}`);
    assert.ok(s.head.split('\r\n').includes(`content-length: ${size}`), `size ${size}: ${s.head}`);
    assert.ok(s.head.split('\r\n').includes(`x-size: ${size}`), `size ${size}: ${s.head}`);
    assert.ok(s.body.equals(body), `size ${size}: the upstream got other bytes`);
    assert.equal(r.status, 200, `size ${size}`);
    assert.equal(r.headers['content-length'], String(size));
    assert.ok(r.body.equals(Buffer.from(body).reverse()), `size ${size}: the client got other bytes`);
  }
});

test('a chunked request body reaches the upstream whole, chunk-framed', async () => {
  script = (s, socket) => socket.write(ok(JSON.stringify({ got: s.body.length })));
  const client = connect(Number(new URL(node.url).port), '127.0.0.1');
  const big = 'x'.repeat(100_000);
  client.write(
    `POST /api/create HTTP/1.1\r\nhost: 127.0.0.1\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n`,
  );
  client.write(`${(100_000).toString(16)}\r\n${big}\r\n5\r\nhello\r\n0\r\n\r\n`);
  const reply = await new Promise<string>((resolve) => {
    let text = '';
    client.on('data', (c: Buffer) => {
      text += c.toString('latin1');
    });
    client.on('close', () => resolve(text));
  });
  assert.match(reply, /^HTTP\/1\.1 200 /);
  assert.match(reply, /\{"got":100005\}/);
  const s = mine().at(-1)!;
  assert.match(s.head, /\r\ntransfer-encoding: chunked/i);
  assert.equal(s.body.toString(), `${big}hello`);
});

test('a kept connection the upstream closed under a request: the request goes again on a new one', async () => {
  script = (_s, socket, n) => {
    if (n === 2)
      socket.destroy(); // the upstream dropped the kept connection just as the next request came
    else socket.write(ok('{"first":true}'));
  };
  const a = await raw(`${node.url}/api/tags`);
  assert.equal(a.status, 200);
  const b = await raw(`${node.url}/api/generate`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: '{"model":"m"}',
  });
  assert.equal(b.status, 200, b.body.toString());
  assert.equal(b.body.toString(), '{"first":true}');
  const posts = mine().filter((s) => s.head.startsWith('POST'));
  assert.equal(posts.length, 2, 'sent once on the dead connection, once on a new one');
  assert.notEqual(posts[0]!.conn, posts[1]!.conn);
});

test('a malformed response head: 502 naming the upstream, and the connection is not reused', async () => {
  script = (_s, socket, n) =>
    socket.write(n === 1 ? 'HTTP/1.1 200 OK\r\n folded: header\r\ncontent-length: 2\r\n\r\n{}' : ok('{}'));
  const before = connections;
  const r = await raw(`${node.url}/api/tags`);
  assert.equal(r.status, 502);
  const err = JSON.parse(r.body.toString()) as { error: string };
  assert.match(err.error, new RegExp(`Ollama at http://127\\.0\\.0\\.1:${upstreamPort}`));
  assert.match(err.error, /bad header line/);
  const next = await raw(`${node.url}/api/tags`);
  assert.equal(next.status, 200);
  assert.ok(connections > before, 'the next request opened a new connection');
});

test('both Content-Length and Transfer-Encoding from the upstream: refused, never relayed', async () => {
  script = (_s, socket) =>
    socket.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n');
  const r = await raw(`${node.url}/api/tags`);
  assert.equal(r.status, 502);
  assert.match(r.body.toString(), /both Transfer-Encoding and Content-Length/);
});

test('a stream whose chunk framing breaks mid-way ends with an error line between chunks', async () => {
  const line = '{"response":"a","done":false}\n';
  script = (_s, socket) => {
    socket.write(
      `HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n${line.length.toString(16)}\r\n${line}\r\n`,
    );
    setTimeout(() => socket.write('zz\r\n'), 20);
  };
  const r = await raw(`${node.url}/api/generate`, { method: 'POST', body: '{"model":"m"}' });
  assert.equal(r.status, 200);
  const lines = r.body
    .toString()
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { error?: string });
  assert.equal(lines.length, 2);
  assert.match(lines[1]!.error ?? '', /broke off the response: chunk size missing/);
});

test('a stream the upstream cuts mid-chunk: the client sees the response truncated, not complete', async () => {
  script = (_s, socket) => {
    socket.write(
      'HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n40\r\n{"response":"half',
    );
    setTimeout(() => socket.destroy(), 20);
  };
  await assert.rejects(
    raw(`${node.url}/api/generate`, { method: 'POST', body: '{"model":"m"}' }),
    /aborted|ECONNRESET|socket hang up|terminated/,
  );
});

test('bytes after a response: relayed response intact, that connection is not reused', async () => {
  script = (_s, socket, n) => socket.write(n === 1 ? `${ok('{"a":1}')}HTTP/1.1 200 OK\r\n` : ok('{"b":2}'));
  const first = await raw(`${node.url}/api/tags`);
  assert.equal(first.body.toString(), '{"a":1}');
  const second = await raw(`${node.url}/api/tags`);
  assert.equal(second.body.toString(), '{"b":2}');
  const conns = mine().map((s) => s.conn);
  assert.notEqual(conns[0], conns[1]);
});

test('a body that ends with the connection reaches the client whole, framed by Node', async () => {
  script = (_s, socket) => socket.end('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end');
  const r = await raw(`${node.url}/api/tags`);
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), 'until the end');
  assert.equal(r.headers['transfer-encoding'], 'chunked');
});

test('an HTTP/1.0 client gets an unchunked stream it can read', async () => {
  script = (_s, socket) =>
    socket.write(
      'HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n3\r\nab\n\r\n3\r\ncd\n\r\n0\r\n\r\n',
    );
  const client = connect(Number(new URL(node.url).port), '127.0.0.1');
  client.write('GET /api/tags HTTP/1.0\r\n\r\n');
  const reply = await new Promise<string>((resolve) => {
    let text = '';
    client.on('data', (c: Buffer) => {
      text += c.toString('latin1');
    });
    client.on('close', () => resolve(text));
  });
  const [headText, body] = reply.split('\r\n\r\n');
  assert.match(headText!, /^HTTP\/1\.1 200 /);
  assert.doesNotMatch(headText!, /transfer-encoding/i);
  assert.equal(body, 'ab\ncd\n');
});

/** raw(), but failing after `ms` instead of waiting for ever on a hung exchange. */
function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

// A browser's Origin sends the request through node:http's path (node-downstream.ts), the rest
// through the fast front: both must answer the same.
const PATHS = [
  ['fast front', {}],
  ['node:http', { origin: 'http://localhost' }],
] as const;

for (const [path, extra] of PATHS) {
  test(`${path}: a response head ending in bare LF gets 502 at once, not a hang`, async () => {
    // The upstream keeps the connection open: without the check the relay waits for a CRLF CRLF.
    script = (_s, socket) => socket.write('HTTP/1.1 200 OK\ncontent-type: application/json\ncontent-length: 2\n\n{}');
    const logged = node.lines.length;
    const r = await within(5_000, 'bare LF head', raw(`${node.url}/api/tags`, { headers: { ...extra } }));
    assert.equal(r.status, 502);
    assert.match(r.body.toString(), /\(OLN_BAD_UPSTREAM_FRAMING\)/);
    await node.waitFor(
      (l) =>
        node.lines.indexOf(l) >= logged && (l.err as { reason?: unknown } | undefined)?.reason === 'bare-lf-in-head',
      5_000,
      'the framing failure with its reason',
    );
  });

  test(`${path}: a 13-digit chunk size right behind the head gets 502, since nothing was sent yet`, async () => {
    script = (_s, socket) =>
      socket.write(
        'HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n1000000000000\r\n',
      );
    const r = await within(
      5_000,
      '13-digit chunk size',
      raw(`${node.url}/api/generate`, { method: 'POST', body: '{"model":"m"}', headers: { ...extra } }),
    );
    assert.equal(r.status, 502);
    assert.match(r.body.toString(), /chunk size too large/);
  });
}

test("a chunk extension Node's own parser refuses is not passed through: the stream ends with an error line", async () => {
  const line = '{"response":"a","done":false}\n';
  script = (_s, socket) => {
    socket.write(
      `HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n${line.length.toString(16)}\r\n${line}\r\n`,
    );
    setTimeout(() => socket.write(`${line.length.toString(16)};a=1 \r\n${line}\r\n0\r\n\r\n`), 20);
  };
  // raw() parses with Node's client parser: had the bad extension reached it, it would reject.
  const r = await within(
    5_000,
    'bad extension',
    raw(`${node.url}/api/generate`, { method: 'POST', body: '{"model":"m"}' }),
  );
  assert.equal(r.status, 200);
  const lines = r.body
    .toString()
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { error?: string });
  assert.equal(lines.length, 2);
  assert.match(lines[1]!.error ?? '', /broke off the response: bad chunk extension value/);
});

test('a long stream with a chunk extension on every chunk is relayed whole (the extension budget is per chunk)', async () => {
  const line = '{"response":"a","done":false}\n';
  const chunks = 300;
  script = (_s, socket) => {
    let out = 'HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n';
    for (let i = 0; i < chunks; i++) out += `${line.length.toString(16)};n=${'e'.repeat(400)}\r\n${line}\r\n`;
    socket.write(`${out}0\r\n\r\n`);
  };
  const r = await within(
    10_000,
    'long stream',
    raw(`${node.url}/api/generate`, { method: 'POST', body: '{"model":"m"}' }),
  );
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), line.repeat(chunks));
});

test('endless header lines from the upstream: 502 once the head passes 64 KiB, not a hang', async () => {
  script = (_s, socket) => {
    socket.write('HTTP/1.1 200 OK\r\n');
    // Bounded: 100 KiB of header lines, more than the head may hold, then silence.
    for (let i = 0; i < 1_000; i++) socket.write(`x-endless-${i}: ${'v'.repeat(90)}\r\n`);
  };
  const r = await within(5_000, 'endless headers', raw(`${node.url}/api/tags`));
  assert.equal(r.status, 502);
  assert.match(r.body.toString(), /response head over 65536 bytes/);
});

test('a response that never ends: the client that leaves closes the upstream connection at once', async () => {
  let upstreamSocket: Socket | null = null;
  // One interval per upstream connection the script serves (a retried request opens another): all are
  // cleared at the end, and none keeps the test process alive.
  const timers: NodeJS.Timeout[] = [];
  script = (_s, socket) => {
    upstreamSocket = socket;
    socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n');
    // A token every 10 ms for as long as the connection lasts (bounded by the test's own end).
    const token = '{"response":1}\n';
    const timer = setInterval(() => {
      if (!socket.destroyed) socket.write(`${token.length.toString(16)}\r\n${token}\r\n`);
    }, 10);
    timer.unref();
    timers.push(timer);
  };
  try {
    const client = connect(Number(new URL(node.url).port), '127.0.0.1');
    client.write('POST /api/generate HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: 13\r\n\r\n{"model":"m"}');
    await within(
      5_000,
      'five tokens',
      new Promise<void>((resolve) => {
        let got = '';
        client.on('data', (c: Buffer) => {
          got += c.toString();
          if ((got.match(/response/g) ?? []).length >= 5) resolve();
        });
      }),
    );
    const closed = new Promise<void>((resolve) => upstreamSocket!.once('close', () => resolve()));
    client.destroy();
    await within(3_000, 'the upstream connection to close', closed);
  } finally {
    for (const timer of timers) clearInterval(timer);
  }
});
