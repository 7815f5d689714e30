/**
 * Request bodies an attacker drips (issue #22, item 5): a body that sends nothing for
 * --request-body-timeout gets 408 and its connection closes, and the request it opened upstream
 * ends (Ollama sees the abort); a body that keeps coming, however slowly within the timeout, is
 * served; at the connection cap, connections with stalled bodies are closed to make room. Real
 * ollana processes, raw sockets, the Ollama emulator upstream.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { exchange, tcp } from '../helpers/hostile-client.ts';
import { raw } from '../helpers/http.ts';
import { removeHome, type Started, startServerNode } from '../helpers/ollana-process.ts';

const TIMEOUT_MS = 1_000;
let emu: Emulator;
const started: Started[] = [];

async function serverNode(args: readonly string[]): Promise<Started> {
  const n = await startServerNode(emu.url, { workers: 2, args });
  started.push(n);
  return n;
}

before(async () => {
  emu = await startEmulator({ tokens: 2, tokenIntervalMs: 1, ttftMs: 1 });
});

after(async () => {
  for (const n of started) {
    await n.stop();
    removeHome(n.home);
  }
  await emu?.close();
});

let seq = 0;
const mark = (): string => `b${++seq}b`;

/** Resolves when the emulator saw the request for `m` end before its answer (the upstream request was aborted). */
function abortedAtOllama(m: string, ms: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      emu.events.off('aborted', on);
      reject(new Error(`Ollama saw no abort of ${m} within ${ms} ms`));
    }, ms);
    const on = (e: { url: string }): void => {
      if (!e.url.includes(m)) return;
      clearTimeout(timer);
      emu.events.off('aborted', on);
      resolve();
    };
    emu.events.on('aborted', on);
  });
}

// A browser's Origin takes a request through node:http (body-watch.ts); the others through the fast front.
const PATHS = [
  ['fast front', ''],
  ['node:http', 'Origin: http://localhost\r\n'],
] as const;

describe('a stalled request body', () => {
  let node: Started;
  before(async () => {
    node = await serverNode(['--request-body-timeout', `${TIMEOUT_MS}ms`]);
  });

  for (const [path, origin] of PATHS) {
    for (const size of [1_000, 1_000_000]) {
      test(`${path}, ${size}-byte body: 10 bytes then nothing gets 408 after the timeout, the connection closes`, async () => {
        const m = mark();
        // A body over 64 KiB streams upstream at once: Ollama must then see its request end.
        const upstream = size > 64 * 1024 ? abortedAtOllama(m, 10_000) : null;
        const t0 = performance.now();
        const ex = await exchange(
          tcp(node.port),
          [
            `POST /api/blobs/sha256:${'0'.repeat(64)}?m=${m} HTTP/1.1\r\nHost: 127.0.0.1\r\n${origin}Content-Length: ${size}\r\n\r\n0123456789`,
          ],
          TIMEOUT_MS + 8_000,
        );
        const lived = performance.now() - t0;
        assert.ok(ex.closed, 'the node closed the connection');
        assert.equal(ex.responses[0]?.status, 408, JSON.stringify(ex.raw.toString('latin1').slice(0, 300)));
        assert.match(
          (JSON.parse(ex.responses[0]!.body) as { error: string }).error,
          /^ollana: the request body sent nothing for \d+(\.\d)? s; send the body without long pauses \(--request-body-timeout 1 s\)$/,
        );
        assert.ok(lived >= TIMEOUT_MS - 100 && lived < TIMEOUT_MS + 4_000, `closed after ${lived.toFixed(0)} ms`);
        await upstream;
      });
    }

    test(`${path}: a body that keeps coming, a byte every 300 ms, is not cut and is answered`, async () => {
      const m = mark();
      const body = '{"model":"llama3.2","prompt":"hi","stream":false}';
      const steps: (string | (() => Promise<void>))[] = [
        `POST /api/generate?m=${m} HTTP/1.1\r\nHost: 127.0.0.1\r\n${origin}Connection: close\r\n` +
          `Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 40)}`,
      ];
      // 10 more bytes over 3 s: three times the timeout in all, never that long without a byte.
      for (const ch of body.slice(40)) steps.push(() => new Promise((r) => setTimeout(r, 300)), ch);
      const ex = await exchange(tcp(node.port), steps, 15_000);
      assert.equal(ex.responses[0]?.status, 200, JSON.stringify(ex.raw.toString('latin1').slice(0, 300)));
    });
  }

  test('the refusals are logged as stalled bodies, a few lines for many', async () => {
    const line = await node.waitFor((l) => l.refusal === 'body-timeout', 5_000, 'the body-timeout refusal');
    assert.match(
      line.msg,
      /^closed a connection from 127\.0\.0\.1 whose request body sent nothing for \d+(\.\d)? s \(--request-body-timeout 1 s\); answered 408$/,
    );
  });
});

describe('stalled bodies at the connection cap', () => {
  test('connections whose body stalled are closed to make room for a new client', async (t) => {
    const LIMIT = 20;
    const node = await serverNode(['--max-connections', String(LIMIT), '--request-body-timeout', '60s']);
    const held = await Promise.all(
      Array.from({ length: LIMIT }, async (_, i) => {
        const socket = await tcp(node.port)();
        socket.write(
          `POST /api/blobs/sha256:${'0'.repeat(64)}?cap=${i} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\nx`,
        );
        let closed = false;
        socket.once('close', () => {
          closed = true;
        });
        return { socket, closed: () => closed };
      }),
    );
    try {
      // Every upload under way at Ollama (bodies over 64 KiB stream upstream at once): the node holds them all.
      for (let i = 0; i < 100 && emu.requests.filter((r) => r.url.includes('?cap=')).length < LIMIT; i++)
        await new Promise((r) => setTimeout(r, 50));
      assert.equal(emu.requests.filter((r) => r.url.includes('?cap=')).length, LIMIT);
      // Past the 5 s after which a stalled body counts as idle at the cap, a new client gets in
      // (its first connection may be refused: that is what asks the workers for room). Bounded retries.
      const t0 = performance.now();
      let status = 0;
      for (let attempt = 0; attempt < 60 && status !== 200; attempt++) {
        status = await raw(`${node.url}/api/tags`).then(
          (r) => r.status,
          () => 0,
        );
        if (status !== 200) await new Promise((r) => setTimeout(r, 250));
      }
      const waited = performance.now() - t0;
      const closed = held.filter((h) => h.closed()).length;
      t.diagnostic(`a new client got in after ${waited.toFixed(0)} ms; ${closed} of ${LIMIT} stalled uploads closed`);
      assert.equal(status, 200, 'the new client was served');
      assert.ok(closed > 0, 'stalled uploads made room');
      assert.ok(waited >= 4_000, 'not before they had stalled for 5 s');
    } finally {
      for (const h of held) h.socket.destroy();
    }
  });
});
