/**
 * A server node in front of the Ollama emulator, driven through its real socket by the official
 * ollama-js and openai clients and by raw HTTP: the whole API surface a user's tools touch.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { freePort, removeHome, type Started, startServerNode } from '../helpers/ollana-process.ts';
import { json, raw } from '../helpers/http.ts';

let emu: Emulator;
let node: Started;

before(async () => {
  emu = await startEmulator({ tokens: 5, tokenIntervalMs: 5 });
  node = await startServerNode(emu.url, { workers: 2 });
});

after(async () => {
  await node?.stop();
  if (node) removeHome(node.home);
  await emu?.close();
});

describe('ollama-js through a server node', () => {
  test('list, show and embed', async () => {
    const ollama = new Ollama({ host: node.url });
    const tags = await ollama.list();
    assert.deepEqual(tags.models.map((m) => m.name).sort(), ['llama3.2:latest', 'nomic-embed-text:latest']);
    const show = await ollama.show({ model: 'llama3.2' });
    assert.equal(typeof show.modelfile, 'string');
    const emb = await ollama.embed({ model: 'nomic-embed-text', input: ['a', 'b'] });
    assert.equal(emb.embeddings.length, 2);
    assert.equal(emb.embeddings[0]!.length, 768);
  });

  test('generate, streamed and not', async () => {
    const ollama = new Ollama({ host: node.url });
    const whole = await ollama.generate({ model: 'llama3.2', prompt: 'hi', stream: false });
    assert.equal(whole.done, true);
    assert.equal(whole.eval_count, 5);
    const parts: string[] = [];
    let last: { done: boolean; done_reason?: string } | null = null;
    for await (const part of await ollama.generate({ model: 'llama3.2', prompt: 'hi', stream: true })) {
      parts.push(part.response ?? '');
      last = part;
    }
    assert.equal(parts.length, 6, 'five tokens and the final line');
    assert.equal(last?.done, true);
    assert.equal(last?.done_reason, 'stop');
    assert.equal(parts.join(''), whole.response);
  });

  test('chat, streamed and not', async () => {
    const ollama = new Ollama({ host: node.url });
    const messages = [{ role: 'user', content: 'hello' }];
    const whole = await ollama.chat({ model: 'llama3.2', messages, stream: false });
    assert.equal(whole.message.role, 'assistant');
    let text = '';
    let count = 0;
    for await (const part of await ollama.chat({ model: 'llama3.2', messages, stream: true })) {
      text += part.message.content;
      count += 1;
    }
    assert.equal(count, 6);
    assert.equal(text, whole.message.content);
  });

  test('pull reports progress line by line and ends in success', async () => {
    const ollama = new Ollama({ host: node.url });
    const statuses: string[] = [];
    let sawCompleted = false;
    for await (const p of await ollama.pull({ model: 'qwen3:0.6b', stream: true })) {
      statuses.push(p.status);
      if (typeof p.completed === 'number' && p.completed > 0) sawCompleted = true;
    }
    assert.ok(statuses.length >= 4, `progress lines: ${statuses.join(' | ')}`);
    assert.equal(statuses.at(-1), 'success');
    assert.ok(sawCompleted, 'progress with completed byte counts');
    const tags = await ollama.list();
    assert.ok(
      tags.models.some((m) => m.name === 'qwen3:0.6b'),
      'the pulled model is listed',
    );
  });

  test('aborting a stream stops the emulator within 100 ms', async () => {
    const ollama = new Ollama({ host: node.url });
    const aborted = new Promise<number>((resolve) => emu.events.once('aborted', (e: { at: number }) => resolve(e.at)));
    // The next token is a minute away: the emulator can see the abort within the test's timeout only
    // because ollana passed it on, however slow the machine (no bound in ms to miss).
    const stream = await ollama.generate({
      model: 'llama3.2',
      prompt: 'long',
      stream: true,
      options: { emulator_tokens: 1000, emulator_interval_ms: 60_000 } as Record<string, number>,
    });
    let received = 0;
    await assert.rejects(async () => {
      for await (const _part of stream) {
        received += 1;
        stream.abort();
      }
    }, /abort/i);
    await aborted;
    assert.equal(received, 1);
  });

  test('an unknown model is the same 404 error Ollama sends', async () => {
    const ollama = new Ollama({ host: node.url });
    await assert.rejects(
      ollama.generate({ model: 'nope', prompt: 'x', stream: false }),
      (err: Error & { status_code?: number }) => err.status_code === 404 && /not found/.test(err.message),
    );
  });
});

describe('openai client on /v1 through a server node', () => {
  test('chat completions, streamed and not', async () => {
    const client = new OpenAI({ baseURL: `${node.url}/v1`, apiKey: 'ollama', maxRetries: 0 });
    const whole = await client.chat.completions.create({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'hi' }],
    });
    assert.equal(whole.choices[0]?.finish_reason, 'stop');
    const text = whole.choices[0]?.message.content ?? '';
    assert.ok(text.length > 0);
    const stream = await client.chat.completions.create({
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'hi' }],
      stream: true,
    });
    let streamed = '';
    let chunks = 0;
    for await (const chunk of stream) {
      streamed += chunk.choices[0]?.delta.content ?? '';
      chunks += 1;
    }
    assert.ok(chunks >= 5);
    assert.equal(streamed, text);
  });

  test('an error keeps the OpenAI shape', async () => {
    const client = new OpenAI({ baseURL: `${node.url}/v1`, apiKey: 'ollama', maxRetries: 0 });
    await assert.rejects(
      client.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }),
      (err: Error & { status?: number }) => err.status === 404 && /not found/.test(err.message),
    );
  });
});

describe('streaming', () => {
  test('NDJSON line k reaches the client before line k+1 is produced', async () => {
    const produced: number[] = [];
    const onToken = (e: { index: number; at: number }): void => {
      produced[e.index] = e.at;
    };
    emu.events.on('token', onToken);
    const received: number[] = [];
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest(
        `${node.url}/api/generate`,
        { method: 'POST', headers: { 'content-type': 'application/json' } },
        (res) => {
          let buf = '';
          res.on('data', (chunk: Buffer) => {
            buf += chunk.toString();
            for (let nl = buf.indexOf('\n'); nl !== -1; nl = buf.indexOf('\n')) {
              buf = buf.slice(nl + 1);
              received.push(performance.now());
            }
          });
          res.on('end', resolve);
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(
        JSON.stringify({ model: 'llama3.2', prompt: 'x', options: { emulator_tokens: 6, emulator_interval_ms: 60 } }),
      );
    });
    emu.events.off('token', onToken);
    assert.equal(received.length, 7, 'six tokens and the final line');
    for (let k = 0; k + 1 < produced.length; k++) {
      assert.ok(
        received[k]! < produced[k + 1]!,
        `line ${k} arrived at ${received[k]}, after line ${k + 1} was produced at ${produced[k + 1]}`,
      );
    }
  });

  test('a client that goes away mid-stream aborts the upstream at once', async () => {
    const aborted = new Promise<{ at: number; tokensSent: number }>((resolve) => emu.events.once('aborted', resolve));
    // The second token is a minute away: an abort seen with one token sent, within the test's timeout,
    // comes from the client leaving, however slow the machine (no bound in ms to miss).
    await new Promise<void>((resolve) => {
      const req = httpRequest(`${node.url}/api/chat`, { method: 'POST' }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
      req.end(
        JSON.stringify({
          model: 'llama3.2',
          messages: [{ role: 'user', content: 'x' }],
          options: { emulator_tokens: 500, emulator_interval_ms: 60_000 },
        }),
      );
    });
    const seen = await aborted;
    assert.equal(seen.tokensSent, 1, 'the emulator stopped while waiting for the second token');
  });

  test('a slow first token is waited for (no default headers timeout)', async () => {
    const started = performance.now();
    const r = await raw(`${node.url}/api/generate`, {
      method: 'POST',
      body: JSON.stringify({
        model: 'llama3.2',
        prompt: 'x',
        stream: false,
        options: { emulator_ttft_ms: 2500, emulator_tokens: 2 },
      }),
    });
    assert.equal(r.status, 200);
    assert.ok(performance.now() - started >= 2400);
    assert.equal((json(r) as { done: boolean }).done, true);
  });
});

describe('raw HTTP semantics', () => {
  test('HEAD / answers like Ollama, with no body', async () => {
    const r = await raw(`${node.url}/`, { method: 'HEAD' });
    assert.equal(r.status, 200);
    assert.equal(r.body.length, 0);
    const g = await raw(`${node.url}/`);
    assert.equal(g.body.toString(), 'Ollama is running');
  });

  test('query strings, Host, X-Forwarded-For, Forwarded, Authorization, Content-Encoding', async () => {
    emu.requests = [];
    const body = Buffer.from('{"model":"nomic-embed-text","input":"x"}');
    await raw(`${node.url}/api/embed?a=1&b=%20two`, {
      method: 'POST',
      body,
      headers: {
        authorization: 'Bearer sk-secret',
        'content-encoding': 'identity',
        'content-type': 'application/json',
        'x-forwarded-for': '10.9.8.7',
        'user-agent': 'ollama-js/0.6.4 (test)',
      },
    });
    // Found by path: the node's own health checks (/api/version, /api/tags) reach the emulator too.
    const rec = emu.requests.find((r) => r.url.startsWith('/api/embed'))!;
    assert.equal(rec.url, '/api/embed?a=1&b=%20two');
    assert.equal(rec.headers.host, new URL(emu.url).host);
    assert.equal(rec.headers.authorization, 'Bearer sk-secret');
    assert.equal(rec.headers['content-encoding'], 'identity');
    assert.equal(rec.headers['user-agent'], 'ollama-js/0.6.4 (test)');
    assert.equal(rec.headers['x-forwarded-for'], '10.9.8.7, 127.0.0.1');
    assert.match(String(rec.headers.forwarded), /for=127\.0\.0\.1;proto=http;host="127\.0\.0\.1:\d+"/);
    assert.equal(rec.bodyBytes, body.length);
  });

  test('hop-by-hop headers stop at ollana', async () => {
    emu.requests = [];
    await raw(`${node.url}/api/version`, {
      headers: {
        connection: 'keep-alive, x-hop-secret',
        'x-hop-secret': '1',
        'keep-alive': 'timeout=5',
        te: 'trailers',
        'proxy-authorization': 'Basic eA==',
        'x-end-to-end': 'kept',
      },
    });
    const h = emu.requests.find((r) => r.headers['x-end-to-end'] === 'kept')!.headers;
    assert.equal(h['x-hop-secret'], undefined);
    assert.equal(h['keep-alive'], undefined);
    assert.equal(h.te, undefined);
    assert.equal(h['proxy-authorization'], undefined);
    assert.equal(h['x-end-to-end'], 'kept');
  });

  test('browser origins: allowed ones get CORS headers, others 403 before reaching Ollama', async () => {
    emu.requests = [];
    const ok = await raw(`${node.url}/api/tags`, { headers: { origin: 'http://localhost:3000' } });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers['access-control-allow-origin'], 'http://localhost:3000');
    assert.ok(emu.requests.some((r) => r.url === '/api/tags'));
    assert.ok(
      emu.requests.every((r) => r.headers.origin === undefined),
      'Origin is decided at ollana, not forwarded',
    );
    const pre = await raw(`${node.url}/api/chat`, {
      method: 'OPTIONS',
      headers: {
        origin: 'http://localhost:3000',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type',
      },
    });
    assert.equal(pre.status, 204);
    assert.match(String(pre.headers['access-control-allow-methods']), /POST/);
    const count = emu.requests.length;
    const bad = await raw(`${node.url}/api/tags`, { headers: { origin: 'https://evil.example' } });
    assert.equal(bad.status, 403);
    assert.equal(emu.requests.length, count, 'a refused origin never reaches Ollama');
  });

  test("/ollana/ paths are ollana's own and never forwarded", async () => {
    emu.requests = [];
    const s = await raw(`${node.url}/ollana/v1/status`);
    assert.equal(s.status, 200);
    const status = json(s) as {
      role: string;
      workers: { configured: number; live: number; list: unknown[] };
      upstreams: { url: string }[];
    };
    assert.equal(status.role, 'server');
    assert.equal(status.workers.configured, 2);
    assert.equal(status.workers.live, 2);
    assert.equal(status.workers.list.length, 2);
    assert.equal(status.upstreams[0]?.url, emu.url);
    const missing = await raw(`${node.url}/ollana/nope`);
    assert.equal(missing.status, 404);
    assert.match(String((json(missing) as { error: string }).error), /no such ollana endpoint/);
    assert.equal(emu.requests.length, 0);
  });

  test("Ollama's own 404 and 405 pass through untouched", async () => {
    const nf = await raw(`${node.url}/no/such/path`);
    assert.equal(nf.status, 404);
    assert.equal(nf.body.toString(), '404 page not found');
    const na = await raw(`${node.url}/api/tags`, { method: 'DELETE' });
    assert.equal(na.status, 405);
  });
});

describe('upstream trouble', () => {
  test('Ollama down: 502 with a JSON error naming it', async () => {
    const deadPort = await freePort();
    const n = await startServerNode(`http://127.0.0.1:${deadPort}`, { workers: 1 });
    try {
      const r = await raw(`${n.url}/api/tags`);
      assert.equal(r.status, 502);
      assert.match(String(r.headers['content-type']), /application\/json/);
      const err = (json(r) as { error: string }).error;
      assert.match(err, new RegExp(`http://127\\.0\\.0\\.1:${deadPort}`));
      assert.match(err, /ECONNREFUSED/);
      const v1 = await raw(`${n.url}/v1/models`);
      assert.equal(v1.status, 502);
      assert.match((json(v1) as { error: { message: string } }).error.message, /cannot reach Ollama/);
    } finally {
      await n.stop();
      removeHome(n.home);
    }
  });

  test('a stream the upstream breaks off ends with an error line, not a hang', async () => {
    const ollama = new Ollama({ host: node.url });
    const stream = await ollama.generate({
      model: 'llama3.2',
      prompt: 'x',
      stream: true,
      options: { emulator_tokens: 50, emulator_fail_after: 3 } as Record<string, number>,
    });
    let parts = 0;
    await assert.rejects(async () => {
      for await (const _ of stream) parts += 1;
    }, /./);
    assert.equal(parts, 3);
  });

  test('--headers-timeout bounds the wait for the first byte: 504', async () => {
    const n = await startServerNode(emu.url, { workers: 1, args: ['--headers-timeout', '300ms'] });
    try {
      const r = await raw(`${n.url}/api/generate`, {
        method: 'POST',
        body: JSON.stringify({ model: 'llama3.2', prompt: 'x', stream: false, options: { emulator_ttft_ms: 3000 } }),
      });
      assert.equal(r.status, 504);
      assert.match((json(r) as { error: string }).error, /no response headers within/);
    } finally {
      await n.stop();
      removeHome(n.home);
    }
  });
});
