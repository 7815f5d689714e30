/**
 * A client node's pinned pool when the server at an address changes its certificate under it
 * (issue #14): the stream in flight ends (an error line or a cut, never a hang), and the next
 * request gets a clear 502 naming both ids, with nothing sent to the impostor. The client node's
 * workers run alone (test/fixtures/client-pool/), pinned to the first server's device id.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, test } from 'node:test';
import { deviceIdFromDer } from '../../src/identity/device-id.ts';
import { createSelfSigned } from '../../src/identity/self-signed.ts';
import { raw } from '../helpers/http.ts';
import { freePort } from '../helpers/ollana-process.ts';

const FIXTURE = fileURLToPath(new URL('../fixtures/client-pool/client-pool.ts', import.meta.url));
const cleanup: (() => void)[] = [];

after(() => {
  for (const c of cleanup.reverse()) c();
});

function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: nothing within ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** A TLS "server node" with this certificate: /api/version, and /api/generate streaming a token every 20 ms. */
async function tlsServer(cert: { certPem: string; keyPem: string }, port: number, seen: string[]): Promise<Server> {
  const server = createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    if (req.url === '/api/generate') {
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      let n = 0;
      const timer = setInterval(() => {
        if (n++ < 5_000) res.write('{"response":"t","done":false}\n');
      }, 20);
      res.once('close', () => clearInterval(timer));
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end('{"version":"0.12.0"}');
  });
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return server;
}

test('the server behind a pinned pool changes its certificate: the live stream ends, the next request gets 502 naming both ids', async (t) => {
  const [a, b, me] = await Promise.all([
    createSelfSigned('ollana server-a', 1),
    createSelfSigned('ollana server-b', 1),
    createSelfSigned('ollana client', 1),
  ]);
  const idOf = (c: { certPem: string }): string => deviceIdFromDer(new X509Certificate(c.certPem).raw);
  const dir = mkdtempSync(join(tmpdir(), 'ollana-pinned-'));
  cleanup.push(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'cert.pem'), me.certPem);
  writeFileSync(join(dir, 'key.pem'), me.keyPem, { mode: 0o600 });

  const serverPort = await freePort();
  const seenA: string[] = [];
  const seenB: string[] = [];
  const serverA = await tlsServer(a, serverPort, seenA);
  cleanup.push(() => {
    serverA.closeAllConnections();
    serverA.close();
  });
  const port = await freePort();
  const child: ChildProcess = spawn(
    process.execPath,
    [FIXTURE, String(port), `a=https://127.0.0.1:${serverPort}=llama3.2:latest=${idOf(a)}`],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, CLIENT_POOL_CERT: join(dir, 'cert.pem'), CLIENT_POOL_KEY: join(dir, 'key.pem') },
    },
  );
  cleanup.push(() => child.kill('SIGKILL'));
  await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`client pool exited with ${code}`)));
  });
  const url = `http://127.0.0.1:${port}`;

  assert.equal((await within(10_000, 'a request to server A', raw(`${url}/api/version`))).status, 200);

  // A stream through the pool, then server A goes and server B takes its address with another identity.
  const { request } = await import('node:http');
  const stream = await new Promise<{ lines: () => number; ended: Promise<string> }>((resolve, reject) => {
    const req = request(
      `${url}/api/generate`,
      { method: 'POST', headers: { 'content-type': 'application/json' } },
      (res) => {
        let text = '';
        const ended = new Promise<string>((done) => {
          res.on('data', (c: Buffer) => {
            text += c.toString();
          });
          res.on('end', () => done(`ended: ${text.trim().split('\n').at(-1)}`));
          res.on('error', (err) => done(`cut: ${err.message}`));
          res.on('aborted', () => done('cut: aborted'));
        });
        resolve({ lines: () => text.split('\n').length - 1, ended });
      },
    );
    req.on('error', reject);
    req.end('{"model":"llama3.2","prompt":"long"}');
  });
  while (stream.lines() < 5) await new Promise((r) => setTimeout(r, 20));
  serverA.closeAllConnections();
  await new Promise<void>((resolve) => serverA.close(() => resolve()));
  const serverB = await tlsServer(b, serverPort, seenB);
  cleanup.push(() => {
    serverB.closeAllConnections();
    serverB.close();
  });

  const how = await within(10_000, 'the stream to end', stream.ended);
  t.diagnostic(`the live stream: ${how}`);
  assert.ok(/^cut: /.test(how) || /"error":"ollana: /.test(how), how);

  const next = await within(10_000, 'a request after the change', raw(`${url}/api/version`));
  assert.equal(next.status, 502, next.body.toString());
  const error = (JSON.parse(next.body.toString()) as { error: string }).error;
  t.diagnostic(error);
  assert.match(error, new RegExp(`presented device ${idOf(b)}, not ${idOf(a)} as announced; nothing was sent to it`));
  assert.deepEqual(seenB, [], 'server B got no request');
});
