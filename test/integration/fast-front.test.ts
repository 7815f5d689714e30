/**
 * The server node's fast front (src/proxy/fast/): requests for the local Ollama are parsed by Node's
 * own parser and relayed without node:http's request and response objects; anything else is handed
 * to node:http with its bytes. Real ollana processes in front of the emulator, raw bytes on plain
 * sockets, and the node's own counters (fastRequests, handedToNode in /ollana/v1/status) to tell
 * which path carried what. The node:http path's rules are held by the other integration tests,
 * which all run through this front too.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { connect } from 'node:net';
import { after, before, test } from 'node:test';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { patternByte } from '../../testkit/emulator/hooks.ts';
import { exchange, tcp } from '../helpers/hostile-client.ts';
import { removeHome, type Started, startServerNode } from '../helpers/ollana-process.ts';
import { raw } from '../helpers/http.ts';

const HOST = 'Host: 127.0.0.1';
const BODY = '{"model":"llama3.2","prompt":"hi","stream":false}';

let emu: Emulator;
let node: Started;

before(async () => {
  emu = await startEmulator({ tokens: 3, tokenIntervalMs: 5, ttftMs: 1 });
  node = await startServerNode(emu.url, { workers: 1 });
});

after(async () => {
  await node?.stop();
  if (node !== undefined) removeHome(node.home);
  await emu?.close();
});

interface Counts {
  fastRequests: number;
  handedToNode: number;
  requests: number;
}

async function counts(): Promise<Counts> {
  const r = await raw(`${node.url}/ollana/v1/status`);
  const totals = (JSON.parse(r.body.toString()) as { workers: { totals: Counts } }).workers.totals;
  return { fastRequests: totals.fastRequests, handedToNode: totals.handedToNode, requests: totals.requests };
}

/** What `work` did to the counters (the status request itself is handed over: not counted here). */
async function delta(work: () => Promise<void>): Promise<Counts> {
  const a = await counts();
  await work();
  const b = await counts();
  return {
    fastRequests: b.fastRequests - a.fastRequests,
    handedToNode: b.handedToNode - a.handedToNode - 1,
    requests: b.requests - a.requests,
  };
}

let seq = 0;
const mark = (): string => `q${++seq}q`; // q is no hex digit: no digest in a URL contains it
const seen = (m: string): string[] => emu.requests.filter((r) => r.url.includes(m)).map((r) => `${r.method} ${r.url}`);

test("keep-alive requests take the fast front, answered in order with node:http's connection headers", async () => {
  const m = mark();
  let ex!: Awaited<ReturnType<typeof exchange>>;
  const d = await delta(async () => {
    ex = await exchange(tcp(node.port), [
      `GET /api/tags?${m}=1 HTTP/1.1\r\n${HOST}\r\n\r\n`,
      `POST /api/generate?${m}=2 HTTP/1.1\r\n${HOST}\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`,
      `GET /api/version?${m}=3 HTTP/1.1\r\n${HOST}\r\nConnection: close\r\n\r\n`,
    ]);
  });
  assert.deepEqual(
    ex.responses.map((r) => r.status),
    [200, 200, 200],
  );
  assert.ok(ex.closed, 'closed after the request that asked for it');
  assert.equal(ex.rest, '');
  assert.equal(ex.responses[0]!.headers.connection, 'keep-alive');
  assert.equal(ex.responses[0]!.headers['keep-alive'], 'timeout=65');
  assert.equal(ex.responses[2]!.headers.connection, 'close');
  assert.match(ex.responses[0]!.headers.date ?? '', /GMT$/);
  assert.equal((JSON.parse(ex.responses[1]!.body) as { done: boolean }).done, true);
  assert.deepEqual(seen(m), [`GET /api/tags?${m}=1`, `POST /api/generate?${m}=2`, `GET /api/version?${m}=3`]);
  assert.deepEqual(d, { fastRequests: 3, handedToNode: 0, requests: 3 });
});

test("pipelined requests, one of them ollana's own: every answer in order, the connection goes to node:http at that one", async () => {
  const m = mark();
  let ex!: Awaited<ReturnType<typeof exchange>>;
  const d = await delta(async () => {
    ex = await exchange(tcp(node.port), [
      `POST /api/generate?${m}=1 HTTP/1.1\r\n${HOST}\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}` +
        `POST /api/generate?${m}=2 HTTP/1.1\r\n${HOST}\r\nContent-Length: ${BODY.length - 15}\r\n\r\n${BODY.replace(',"stream":false', '')}` +
        `GET /ollana/v1/health HTTP/1.1\r\n${HOST}\r\n\r\n` +
        `GET /api/tags?${m}=3 HTTP/1.1\r\n${HOST}\r\nConnection: close\r\n\r\n`,
    ]);
  });
  assert.deepEqual(
    ex.responses.map((r) => r.status),
    [200, 200, 200, 200],
    ex.raw.toString('latin1').slice(0, 400),
  );
  assert.equal(ex.responses[1]!.headers['transfer-encoding'], 'chunked', 'the second one streams');
  assert.equal(ex.responses[1]!.body.trim().split('\n').length, 4, 'three tokens and the done line');
  assert.equal((JSON.parse(ex.responses[2]!.body) as { role: string }).role, 'server', "ollana's own answer, third");
  assert.match(ex.responses[3]!.body, /"models"/);
  assert.deepEqual(seen(m), [`POST /api/generate?${m}=1`, `POST /api/generate?${m}=2`, `GET /api/tags?${m}=3`]);
  assert.equal(d.fastRequests, 2);
  assert.equal(d.handedToNode, 1);
});

test('a request cut into small reads, head and body, is relayed whole', async () => {
  const m = mark();
  const request = `POST /api/generate?${m} HTTP/1.1\r\n${HOST}\r\nContent-Type: application/json\r\nContent-Length: ${BODY.length}\r\nConnection: close\r\n\r\n${BODY}`;
  const pause = (): Promise<void> => new Promise((resolve) => setTimeout(resolve, 5));
  const steps: Array<string | (() => Promise<void>)> = [];
  for (let i = 0; i < request.length; i += 7) steps.push(request.slice(i, i + 7), pause);
  const ex = await exchange(tcp(node.port), steps);
  assert.equal(ex.responses[0]?.status, 200, ex.raw.toString('latin1').slice(0, 300));
  const rec = emu.requests.find((r) => r.url.includes(m));
  assert.equal(rec?.bodyBytes, BODY.length);
});

test('a chunked request body reaches Ollama whole', async () => {
  const m = mark();
  const half = Math.floor(BODY.length / 2);
  const a = BODY.slice(0, half);
  const b = BODY.slice(half);
  const ex = await exchange(tcp(node.port), [
    `POST /api/generate?${m} HTTP/1.1\r\n${HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${a.length.toString(16)}\r\n${a}\r\n`,
    () => new Promise((resolve) => setTimeout(resolve, 20)),
    `${b.length.toString(16)}\r\n${b}\r\n0\r\n\r\n`,
  ]);
  assert.equal(ex.responses[0]?.status, 200, ex.raw.toString('latin1').slice(0, 300));
  assert.equal((JSON.parse(ex.responses[0]!.body) as { done: boolean }).done, true, 'Ollama parsed the body');
  assert.equal(emu.requests.find((r) => r.url.includes(m))?.bodyBytes, BODY.length);
});

test('a body over the small-body limit streams through: an 8 MiB blob arrives with its digest intact', async () => {
  const blob = Buffer.alloc(8 * 1024 * 1024, 7);
  blob.write(mark());
  const digest = createHash('sha256').update(blob).digest('hex');
  const d = await delta(async () => {
    const r = await raw(`${node.url}/api/blobs/sha256:${digest}`, { method: 'POST', body: blob });
    assert.equal(r.status, 201, r.body.toString());
  });
  assert.equal(d.fastRequests, 1);
  assert.equal((await raw(`${node.url}/api/blobs/sha256:${digest}`, { method: 'HEAD' })).status, 200);
});

test('after a large body, the next request on the connection is parsed from its first byte', async () => {
  const m = mark();
  const blob = Buffer.alloc(3 * 1024 * 1024 + 17, 9);
  blob.write(m);
  const digest = createHash('sha256').update(blob).digest('hex');
  const head = `POST /api/blobs/sha256:${digest} HTTP/1.1\r\n${HOST}\r\nContent-Length: ${blob.length}\r\n\r\n`;
  const next = `GET /api/tags?${m} HTTP/1.1\r\n${HOST}\r\nConnection: close\r\n\r\n`;
  // The body's last bytes and the next request arrive in one read.
  const ex = await exchange(tcp(node.port), [
    head,
    blob.subarray(0, blob.length - 5),
    Buffer.concat([blob.subarray(blob.length - 5), Buffer.from(next)]),
  ]);
  assert.deepEqual(
    ex.responses.map((r) => r.status),
    [201, 200],
    ex.raw.toString('latin1').slice(0, 300),
  );
  assert.deepEqual(seen(m), [`GET /api/tags?${m}`]);
});

test('a slow reader gets every byte where it belongs: a reused read buffer never overwrites bytes still queued for it', async () => {
  // The relay reads each upstream connection into one buffer, reused unless the client's socket still
  // holds bytes of it. A reader that stops and starts makes the node queue writes, again and again.
  const size = 24 * 1024 * 1024;
  const socket = connect(node.port, '127.0.0.1');
  await once(socket, 'connect');
  socket.write(`GET /emulator/bytes?n=${size}&pattern=offset HTTP/1.1\r\n${HOST}\r\nConnection: close\r\n\r\n`);
  let head = '';
  let offset = -1;
  let bad = -1;
  let pauses = 0;
  await new Promise<void>((resolve, reject) => {
    socket.on('data', (c: Buffer) => {
      let from = 0;
      if (offset < 0) {
        head += c.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        if (end < 0) return;
        assert.match(head, /^HTTP\/1\.1 200 /);
        from = c.length - (head.length - end - 4);
        offset = 0;
      }
      for (let i = from; i < c.length && bad < 0; i++, offset++) if (c[i] !== patternByte(offset)) bad = offset;
      if (bad < 0 && offset % (1024 * 1024) < c.length && pauses < 40) {
        // Stop reading for a moment every MiB or so: the node's writes to this socket back up.
        pauses += 1;
        socket.pause();
        setTimeout(() => socket.resume(), 15);
      }
    });
    socket.on('close', () => resolve());
    socket.on('error', reject);
  });
  assert.equal(bad, -1, `byte ${bad} is not the one sent there`);
  assert.equal(offset, size, 'every byte arrived');
  assert.ok(pauses >= 10, `the reader paused ${pauses} times`);
});

test('a client that goes away mid-stream aborts the generation at Ollama', async () => {
  const m = mark();
  emu.set({ tokens: 200, tokenIntervalMs: 20 });
  try {
    const aborted = new Promise<number>((resolve) => {
      const on = (e: { url: string; tokensSent: number }): void => {
        if (e.url.includes(m)) {
          emu.events.off('aborted', on);
          resolve(e.tokensSent);
        }
      };
      emu.events.on('aborted', on);
    });
    const socket = connect(node.port, '127.0.0.1');
    await once(socket, 'connect');
    const body = '{"model":"llama3.2","prompt":"long"}';
    socket.write(`POST /api/generate?${m} HTTP/1.1\r\n${HOST}\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    let got = '';
    await new Promise<void>((resolve) =>
      socket.on('data', (c: Buffer) => {
        got += c.toString();
        if ((got.match(/"done":false/g) ?? []).length >= 3) resolve();
      }),
    );
    const cutAt = performance.now();
    socket.destroy();
    const tokens = await Promise.race([
      aborted,
      new Promise<never>((_, reject) =>
        setTimeout(() => reject(new Error('Ollama saw no abort within 5 s')), 5_000).unref(),
      ),
    ]);
    const ms = performance.now() - cutAt;
    assert.ok(tokens < 200, `stopped after ${tokens} tokens`);
    assert.ok(ms < 1_000, `Ollama saw the abort ${ms.toFixed(0)} ms after the client left`);
  } finally {
    emu.set({ tokens: 3, tokenIntervalMs: 5 });
  }
});

test("HTTP/1.0, Expect: 100-continue and a browser's Origin go to node:http, and are answered as before", async () => {
  const m = mark();
  let http10!: Awaited<ReturnType<typeof exchange>>;
  let expect!: Awaited<ReturnType<typeof exchange>>;
  let origin!: Awaited<ReturnType<typeof raw>>;
  const d = await delta(async () => {
    http10 = await exchange(tcp(node.port), [`GET /api/tags?${m}=1 HTTP/1.0\r\n\r\n`]);
    expect = await exchange(tcp(node.port), [
      `POST /api/generate?${m}=2 HTTP/1.1\r\n${HOST}\r\nContent-Length: ${BODY.length}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n`,
      () => new Promise((resolve) => setTimeout(resolve, 50)),
      BODY,
    ]);
    origin = await raw(`${node.url}/api/tags?${m}=3`, { headers: { origin: 'http://localhost:3000' } });
  });
  assert.equal(http10.responses[0]?.status, 200);
  assert.ok(http10.closed);
  assert.match(expect.raw.toString('latin1'), /^HTTP\/1\.1 100 Continue\r\n\r\nHTTP\/1\.1 200 /);
  assert.equal(origin.status, 200);
  assert.equal(origin.headers['access-control-allow-origin'], 'http://localhost:3000');
  assert.equal(seen(m).length, 3);
  assert.deepEqual([d.fastRequests, d.handedToNode], [0, 3]);
});

test('after node:http took a connection, its later requests are still served', async () => {
  const m = mark();
  const ex = await exchange(tcp(node.port), [
    `GET /ollana/v1/health HTTP/1.1\r\n${HOST}\r\n\r\n`,
    () => new Promise((resolve) => setTimeout(resolve, 20)),
    `POST /api/generate?${m} HTTP/1.1\r\n${HOST}\r\nContent-Length: ${BODY.length}\r\nConnection: close\r\n\r\n${BODY}`,
  ]);
  assert.deepEqual(
    ex.responses.map((r) => r.status),
    [200, 200],
  );
  assert.deepEqual(seen(m), [`POST /api/generate?${m}`]);
});
