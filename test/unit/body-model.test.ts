/**
 * routeByModel (src/proxy/route/body-model.ts) on real HTTP requests: the model found in the path,
 * in a JSON body, in a multipart field however the body is split into chunks, and in compressed
 * bodies; the body handed on is the bytes the client sent, whole or as a stream.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Readable } from 'node:stream';
import { after, before, test } from 'node:test';
import { brotliCompressSync, gzipSync, zstdCompressSync } from 'node:zlib';
import { SCAN_BYTES, routeByModel } from '../../src/proxy/route/body-model.ts';

interface Seen {
  model: string | null;
  body: Buffer;
  streamed: boolean;
}

let server: Server;
let port: number;

before(async () => {
  server = createServer((req, res) => {
    routeByModel(req, (model, body) => {
      const finish = (bytes: Buffer, streamed: boolean): void => {
        const out = JSON.stringify({ model, body: bytes.toString('base64'), streamed });
        res.writeHead(200, { 'content-type': 'application/json' }).end(out);
      };
      if (body === null) finish(Buffer.alloc(0), false);
      else if (Buffer.isBuffer(body)) finish(body, false);
      else {
        const chunks: Buffer[] = [];
        (body as Readable).on('data', (c: Buffer) => chunks.push(c));
        (body as Readable).on('end', () => finish(Buffer.concat(chunks), true));
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  port = (server.address() as AddressInfo).port;
});
after(() => server.close());

/** Sends `parts` as separate writes (chunked unless `length` is set) and returns what routeByModel handed on. */
async function send(
  path: string,
  parts: Buffer[],
  headers: Record<string, string> = {},
  method = 'POST',
): Promise<Seen> {
  const res = await new Promise<import('node:http').IncomingMessage>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers, agent: false }, resolve);
    req.on('error', reject);
    void (async () => {
      for (const p of parts) {
        if (!req.write(p)) await once(req, 'drain');
        await new Promise((r) => setImmediate(r));
      }
      req.end();
    })();
  });
  let text = '';
  for await (const c of res) text += c.toString();
  const j = JSON.parse(text) as { model: string | null; body: string; streamed: boolean };
  return { model: j.model, body: Buffer.from(j.body, 'base64'), streamed: j.streamed };
}

/** `buf` cut into pieces of `size` bytes. */
function pieces(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

function multipart(boundary: string, fields: [string, string | Buffer, string?][]): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value, filename] of fields) {
    const disp = `form-data; name="${name}"${filename ? `; filename="${filename}"` : ''}`;
    parts.push(Buffer.from(`--${boundary}\r\nContent-Disposition: ${disp}\r\n`));
    if (filename) parts.push(Buffer.from('Content-Type: application/octet-stream\r\n'));
    parts.push(Buffer.from('\r\n'), Buffer.isBuffer(value) ? value : Buffer.from(value), Buffer.from('\r\n'));
  }
  parts.push(Buffer.from(`--${boundary}--\r\n`));
  return Buffer.concat(parts);
}

test('the model in the path of GET /v1/models/{id}, percent-decoded', async () => {
  const r = await send('/v1/models/hf.co%2Fbartowski%2Fm%3AQ4', [], {}, 'GET');
  assert.equal(r.model, 'hf.co/bartowski/m:Q4');
  assert.equal(r.body.length, 0);
});

test('a multipart field after a file, whatever the chunk boundaries; the bytes handed on unchanged', async () => {
  const boundary = '----formdata-undici-0123456789';
  // The file contains the boundary's prefix and a fake field header, which must not be taken for one.
  const file = Buffer.concat([
    Buffer.alloc(5000, 3),
    Buffer.from(`\r\n--${boundary.slice(0, 10)}x name="model"\r\n\r\nwrong`),
    Buffer.alloc(3000, 4),
  ]);
  const body = multipart(boundary, [
    ['file', file, 'a.wav'],
    ['model', 'whisper-small'],
    ['language', 'en'],
  ]);
  const type = { 'content-type': `multipart/form-data; boundary=${boundary}` };
  for (const size of [1, 7, 64, 1000, body.length]) {
    const r = await send('/v1/audio/transcriptions', pieces(body, size), type);
    assert.equal(r.model, 'whisper-small', `pieces of ${size}`);
    assert.ok(r.body.equals(body), `pieces of ${size}: the body unchanged`);
  }
  const quoted = await send('/v1/audio/transcriptions', [body], {
    'content-type': `multipart/form-data; boundary="${boundary}"`,
  });
  assert.equal(quoted.model, 'whisper-small');
  const none = multipart(boundary, [['file', file, 'a.wav']]);
  assert.equal((await send('/v1/audio/transcriptions', [none], type)).model, null);
});

test('zstd, gzip and br bodies: the model from a decompressed copy; the compressed bytes handed on', async () => {
  const json = Buffer.from(JSON.stringify({ model: 'qwen3:8b', input: 'x'.repeat(10_000) }));
  for (const [encoding, compressed] of [
    ['zstd', zstdCompressSync(json)],
    ['gzip', gzipSync(json)],
    ['br', brotliCompressSync(json)],
  ] as const) {
    for (const size of [3, compressed.length]) {
      const r = await send('/v1/responses', pieces(compressed, size), { 'content-encoding': encoding });
      assert.equal(r.model, 'qwen3:8b', `${encoding} in pieces of ${size}`);
      assert.ok(r.body.equals(compressed), `${encoding}: the compressed bytes unchanged`);
    }
  }
  const broken = await send('/v1/responses', [Buffer.from('not zstd at all')], { 'content-encoding': 'zstd' });
  assert.equal(broken.model, null, 'a body that does not decompress names no model');
  assert.equal(broken.body.toString(), 'not zstd at all');
});

test('a body larger than the scan bound streams on once the model is known, byte for byte', async () => {
  const head = Buffer.from('{"model":"llama3.2","messages":[{"role":"user","content":"');
  const tail = Buffer.from('"}]}');
  const body = Buffer.concat([head, Buffer.alloc(SCAN_BYTES * 3, 'Q'), tail]);
  const r = await send('/api/chat', pieces(body, 65_536));
  assert.equal(r.model, 'llama3.2');
  assert.equal(r.streamed, true);
  assert.ok(r.body.equals(body));
  const small = Buffer.from('{"model":"llama3.2"}');
  const s = await send('/api/chat', [small], { 'content-length': String(small.length) });
  assert.deepEqual([s.model, s.streamed], ['llama3.2', false], 'a small declared body is held whole');
});
