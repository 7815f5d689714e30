/**
 * A client node in front of server nodes that answer garbage (issue #14): a server that is paired
 * but broken or hostile must give the client a clear error, never a hang, and leave the client node
 * serving. The client node's workers run alone (test/fixtures/client-pool/), routing between a
 * scripted "server" on a raw socket and a well-behaved one; each script decides the bytes sent.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer, type Server, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { raw } from '../helpers/http.ts';
import { freePort } from '../helpers/ollana-process.ts';

const FIXTURE = fileURLToPath(new URL('../fixtures/client-pool/client-pool.ts', import.meta.url));

let script: (socket: Socket) => void = (socket) => socket.end('garbage');
let hostile: Server;
let good: HttpServer;
let child: ChildProcess;
let port: number;
const open = new Set<Socket>();

function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

before(async () => {
  hostile = createServer((socket) => {
    open.add(socket);
    socket.once('close', () => open.delete(socket));
    socket.on('error', () => undefined);
    // Answers once the request head is in.
    let got = '';
    const onData = (c: Buffer): void => {
      got += c.toString('latin1');
      if (!got.includes('\r\n\r\n')) return;
      socket.off('data', onData);
      script(socket);
    };
    socket.on('data', onData);
  });
  good = createHttpServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/json' }).end('{"server":"good"}'));
  });
  await Promise.all([
    new Promise<void>((r) => hostile.listen(0, '127.0.0.1', r)),
    new Promise<void>((r) => good.listen(0, '127.0.0.1', r)),
  ]);
  port = await freePort();
  const h = `http://127.0.0.1:${(hostile.address() as { port: number }).port}`;
  const g = `http://127.0.0.1:${(good.address() as { port: number }).port}`;
  child = spawn(
    process.execPath,
    [FIXTURE, String(port), `hostile=${h}=only-hostile:latest,both:latest`, `good=${g}=both:latest`],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`client pool exited with ${code}`)));
  });
});

after(() => {
  child?.kill('SIGKILL');
  for (const s of open) s.destroy();
  hostile?.close();
  good?.closeAllConnections();
  good?.close();
});

const chat = (model: string): Promise<{ status: number; body: Buffer }> =>
  raw(`http://127.0.0.1:${port}/api/chat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [] }),
  });

const CASES: readonly [string, (socket: Socket) => void][] = [
  ['bytes that are not HTTP', (s) => s.end('SSH-2.0-OpenSSH_9.6\r\n\r\n')],
  ['a bad status line, then silence', (s) => s.write('HTTP/1.1 2OO OK\r\n\r\n')],
  ['a head with bare LF, then silence', (s) => s.write('HTTP/1.1 200 OK\ncontent-length: 2\n\n{}')],
  [
    'both Content-Length and Transfer-Encoding',
    (s) => s.write('HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n'),
  ],
  ['a connection closed without a byte', (s) => s.destroy()],
];

for (const [name, answer] of CASES) {
  test(`a server node answering ${name}: a clear error naming it, no hang`, async () => {
    script = answer;
    const r = await within(10_000, name, chat('only-hostile'));
    assert.ok(r.status === 502, `status ${r.status}: ${r.body.toString()}`);
    const error = (JSON.parse(r.body.toString()) as { error: string }).error;
    assert.match(error, /^ollana: /);
    assert.match(error, /server node hostile/);
  });
}

test('a model both servers have: the request moves past the broken one to the good one', async () => {
  script = (s) => s.end('SSH-2.0-OpenSSH_9.6\r\n\r\n');
  for (let i = 0; i < 4; i++) {
    const r = await within(10_000, 'failover', chat('both'));
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.body.toString(), '{"server":"good"}');
  }
});

test('a stream the server breaks with garbage mid-way ends with an error line, not a hang', async () => {
  script = (s) => {
    s.write(
      'HTTP/1.1 200 OK\r\ncontent-type: application/x-ndjson\r\ntransfer-encoding: chunked\r\n\r\n11\r\n{"response":"a"}\n\r\n',
    );
    setTimeout(() => {
      if (!s.destroyed) s.write('not a chunk size\r\n');
    }, 50);
  };
  const r = await within(10_000, 'broken stream', chat('only-hostile')).catch((err: Error) => ({
    status: -1,
    body: Buffer.from(err.message),
  }));
  // Either an error line after the first one, or a connection cut the client sees as truncated: never a clean end.
  if (r.status === 200) {
    const lines = r.body.toString().trim().split('\n');
    assert.equal(lines.length, 2, r.body.toString());
    assert.match(lines[1]!, /"error":"ollana: /);
  } else {
    assert.match(r.body.toString(), /aborted|ECONNRESET|terminated|socket hang up/);
  }
});
