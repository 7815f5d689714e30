/**
 * The Ollama emulator, driven over real loopback sockets with fetch, node:http, and the real
 * `ollama` and `openai` clients, so the fixture every other test relies on is itself pinned down.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Ollama } from 'ollama';
import OpenAI from 'openai';
import {
  REQUEST_LOG_SIZE,
  startEmulator,
  type AbortedEvent,
  type Emulator,
  type EmulatorOptions,
  type RequestRecord,
  type TokenEvent,
} from '../../testkit/ollama-emulator.ts';

const TIMEOUT = { timeout: 15_000 };
const MODEL = 'llama3.2';
const SENTENCE5 = 'The quick brown fox jumps';

async function start(t: TestContext, opts: EmulatorOptions = {}): Promise<Emulator> {
  const emu = await startEmulator({ ttftMs: 5, tokenIntervalMs: 2, ...opts });
  t.after(() => emu.close());
  return emu;
}

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** node:http, for what fetch hides or forbids: Host, HEAD bodies, raw chunking. */
function raw(
  emu: Emulator,
  opts: { method?: string; path: string; headers?: Record<string, string>; body?: string | Buffer },
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port: emu.port,
        method: opts.method ?? 'GET',
        path: opts.path,
        headers: opts.headers,
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
        );
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

async function postJson(emu: Emulator, path: string, body: unknown): Promise<Response> {
  return fetch(`${emu.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
}

function ndjson(text: string): Array<Record<string, unknown>> {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

test('liveness, version and status answer like Ollama, HEAD included', TIMEOUT, async (t) => {
  const emu = await start(t, { version: '0.12.3' });
  const get = await raw(emu, { path: '/' });
  assert.equal(get.status, 200);
  assert.equal(get.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(get.body.toString(), 'Ollama is running');

  const head = await raw(emu, { method: 'HEAD', path: '/' });
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], '17');
  assert.equal(head.body.length, 0);

  const v = await fetch(`${emu.url}/api/version`);
  assert.match(v.headers.get('content-type') ?? '', /^application\/json/);
  assert.deepEqual(await v.json(), { version: '0.12.3' });
  assert.equal((await raw(emu, { method: 'HEAD', path: '/api/version' })).status, 200);
  assert.equal((await raw(emu, { method: 'HEAD', path: '/api/tags' })).status, 200);
  assert.deepEqual(await (await fetch(`${emu.url}/api/status`)).json(), { cloud: { disabled: false, source: 'none' } });
});

test('unknown paths get 404 and wrong methods 405, both text/plain like gin', TIMEOUT, async (t) => {
  const emu = await start(t);
  const nf = await raw(emu, { path: '/api/nope' });
  assert.equal(nf.status, 404);
  assert.equal(nf.headers['content-type'], 'text/plain');
  assert.equal(nf.body.toString(), '404 page not found');

  const na = await raw(emu, { method: 'POST', path: '/api/tags', body: '{}' });
  assert.equal(na.status, 405);
  assert.equal(na.headers['content-type'], 'text/plain');
  assert.equal(na.headers.allow, 'HEAD, GET');
  assert.equal(na.body.toString(), '405 method not allowed');

  // HEAD is only routed where Ollama registers it.
  assert.equal((await raw(emu, { method: 'HEAD', path: '/api/ps' })).status, 405);
  const gen = await raw(emu, { path: '/api/generate' });
  assert.equal(gen.status, 405);
  assert.equal(gen.headers.allow, 'POST');
  assert.equal((await raw(emu, { method: 'POST', path: '/api/delete', body: '{}' })).status, 405);

  const slash = await raw(emu, { path: '/api/tags/' });
  assert.equal(slash.status, 301);
  assert.equal(slash.headers.location, '/api/tags');
});

test('requests are recorded and announced', TIMEOUT, async (t) => {
  const emu = await start(t);
  const seen: RequestRecord[] = [];
  emu.events.on('request', (r: RequestRecord) => seen.push(r));
  await (await postJson(emu, '/api/show', { model: MODEL })).arrayBuffer();
  assert.equal(emu.requests.length, 1);
  const rec = emu.requests[0]!;
  assert.equal(seen[0], rec);
  assert.equal(rec.method, 'POST');
  assert.equal(rec.url, '/api/show');
  assert.equal(rec.headers['content-type'], 'application/json');
  assert.equal(rec.bodyBytes, JSON.stringify({ model: MODEL }).length);
  assert.ok(rec.time > 0 && rec.time <= performance.now());
});

test('the request log keeps the latest requests and stays bounded under load', { timeout: 60_000 }, async (t) => {
  const emu = await start(t);
  const total = 2 * REQUEST_LOG_SIZE + 500;
  // 8 keep-alive connections in parallel, each sending its share in order.
  await Promise.all(
    Array.from({ length: 8 }, async (_, lane) => {
      for (let i = lane; i < total; i += 8) await (await fetch(`${emu.url}/api/version?n=${i}`)).arrayBuffer();
    }),
  );
  assert.ok(
    emu.requests.length >= REQUEST_LOG_SIZE && emu.requests.length < 2 * REQUEST_LOG_SIZE,
    `${emu.requests.length} requests kept after ${total}`,
  );
  const kept = new Set(emu.requests.map((r) => Number(new URL(r.url, 'http://x').searchParams.get('n'))));
  for (let i = total - 8 * 4; i < total; i++) assert.ok(kept.has(i), `the recent request ${i} was dropped`);
  const times = emu.requests.map((r) => r.time);
  assert.deepEqual(
    times,
    [...times].sort((a, b) => a - b),
    'oldest first',
  );
  emu.requests = [];
  await (await fetch(`${emu.url}/api/version`)).arrayBuffer();
  assert.equal(emu.requests.length, 1, 'a reset log starts again');
});

test('ollama client: list, show, ps', TIMEOUT, async (t) => {
  const emu = await start(t, { models: ['llama3.2:latest', 'qwen2.5:7b', 'nomic-embed-text'] });
  const ollama = new Ollama({ host: emu.url });
  const { models } = await ollama.list();
  assert.deepEqual(models.map((m) => m.name).sort(), ['llama3.2:latest', 'nomic-embed-text:latest', 'qwen2.5:7b']);
  for (const m of models) {
    assert.match(m.digest, /^[0-9a-f]{64}$/);
    assert.ok(m.size > 0);
    assert.ok(!Number.isNaN(new Date(m.modified_at).getTime()));
    assert.equal(m.details.format, 'gguf');
  }
  assert.equal(models.find((m) => m.name === 'qwen2.5:7b')?.details.parameter_size, '7B');

  const shown = await ollama.show({ model: MODEL });
  assert.equal(shown.details.family, 'llama');
  assert.ok(shown.capabilities.includes('completion'));
  assert.match(shown.modelfile, /^# Modelfile generated by "ollama show"/);
  assert.equal(typeof shown.model_info, 'object');
  const embedShow = await ollama.show({ model: 'nomic-embed-text' });
  assert.deepEqual(embedShow.capabilities, ['embedding']);

  await assert.rejects(ollama.show({ model: 'missing' }), (err: Error & { status_code?: number }) => {
    assert.equal(err.status_code, 404);
    assert.equal(err.message, "model 'missing' not found");
    return true;
  });

  assert.deepEqual((await ollama.ps()).models, []);
  await ollama.generate({ model: MODEL, prompt: '' });
  const ps = await ollama.ps();
  assert.equal(ps.models.length, 1);
  assert.equal(ps.models[0]!.name, 'llama3.2:latest');
  assert.ok(new Date(ps.models[0]!.expires_at).getTime() > Date.now());
  assert.ok(ps.models[0]!.size_vram > 0);
});

test('ollama client: generate and chat, streamed and not', TIMEOUT, async (t) => {
  const emu = await start(t, { ttftMs: 30, tokenIntervalMs: 10, tokens: 5 });
  const ollama = new Ollama({ host: emu.url });

  const t0 = performance.now();
  const whole = await ollama.generate({ model: MODEL, prompt: 'Say something' });
  assert.ok(performance.now() - t0 >= 30 + 4 * 10 - 2, 'a non-streamed reply takes the whole generation time');
  assert.equal(whole.response, SENTENCE5);
  assert.equal(whole.done, true);
  assert.equal(whole.done_reason, 'stop');
  assert.equal(whole.eval_count, 5);
  assert.ok(Array.isArray(whole.context) && whole.context.length > 5);
  assert.ok(whole.total_duration >= 70e6 - 2e6, 'durations are nanoseconds');

  const parts: string[] = [];
  let last: Record<string, unknown> = {};
  for await (const part of await ollama.generate({ model: MODEL, prompt: 'Say something', stream: true })) {
    if (!part.done) parts.push(part.response ?? '');
    last = part as unknown as Record<string, unknown>;
  }
  assert.deepEqual(parts, ['The', ' quick', ' brown', ' fox', ' jumps']);
  assert.equal(last.done_reason, 'stop');
  for (const k of [
    'total_duration',
    'load_duration',
    'prompt_eval_count',
    'prompt_eval_duration',
    'eval_count',
    'eval_duration',
    'context',
  ]) {
    assert.ok(k in last, `final line has ${k}`);
  }

  const reply = await ollama.chat({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] });
  assert.deepEqual(reply.message, { role: 'assistant', content: SENTENCE5 });
  assert.equal(reply.done_reason, 'stop');

  const chunks: string[] = [];
  let final: Record<string, unknown> = {};
  for await (const part of await ollama.chat({
    model: MODEL,
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
  })) {
    if (!part.done) chunks.push(part.message.content);
    final = part as unknown as Record<string, unknown>;
  }
  assert.equal(chunks.join(''), SENTENCE5);
  assert.equal(final.done, true);
  assert.equal('context' in final, false, 'chat has no context');
});

test('native stream is the default, stream:false gives one JSON object', TIMEOUT, async (t) => {
  const emu = await start(t, { tokens: 3 });
  const streamed = await postJson(emu, '/api/generate', { model: MODEL, prompt: 'x' });
  assert.equal(streamed.headers.get('content-type'), 'application/x-ndjson');
  assert.equal(streamed.headers.get('content-length'), null);
  const lines = ndjson(await streamed.text());
  assert.equal(lines.length, 4);
  assert.deepEqual(
    lines.map((l) => l.done),
    [false, false, false, true],
  );

  const single = await postJson(emu, '/api/chat', {
    model: MODEL,
    messages: [{ role: 'user', content: 'x' }],
    stream: false,
  });
  assert.equal(single.headers.get('content-type'), 'application/json; charset=utf-8');
  const body = (await single.json()) as Record<string, unknown>;
  assert.deepEqual(body.message, { role: 'assistant', content: 'The quick brown' });
});

test('NDJSON lines leave one at a time, each produced only when its timer fires', TIMEOUT, async (t) => {
  const ttftMs = 80;
  const interval = 60;
  const emu = await start(t, { ttftMs, tokenIntervalMs: interval, tokens: 5 });
  const received: Array<Record<string, unknown>> = [];
  const violations: string[] = [];
  const tokenEvents: TokenEvent[] = [];
  emu.events.on('token', (ev: TokenEvent) => {
    tokenEvents.push(ev);
    if (ev.index > 0 && received.length < ev.index) {
      violations.push(`token ${ev.index} produced with only ${received.length} lines received`);
    }
  });

  const sentAt = performance.now();
  const { headersAt, chunksWithLines } = await new Promise<{ headersAt: number; chunksWithLines: number[] }>(
    (resolve, reject) => {
      const req = httpRequest(
        { host: '127.0.0.1', port: emu.port, method: 'POST', path: '/api/generate', agent: false },
        (res) => {
          const at = performance.now();
          assert.equal(res.headers['transfer-encoding'], 'chunked');
          let buffer = '';
          const perChunk: number[] = [];
          res.setEncoding('utf8');
          res.on('data', (chunk: string) => {
            buffer += chunk;
            const parts = buffer.split('\n');
            buffer = parts.pop() ?? '';
            perChunk.push(parts.length);
            for (const p of parts) received.push(JSON.parse(p) as Record<string, unknown>);
          });
          res.on('end', () => resolve({ headersAt: at, chunksWithLines: perChunk }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(JSON.stringify({ model: MODEL, prompt: 'count' }));
    },
  );

  assert.deepEqual(violations, []);
  assert.ok(
    headersAt - sentAt >= ttftMs - 5,
    `headers waited for the first token (${(headersAt - sentAt).toFixed(1)} ms)`,
  );
  assert.equal(received.length, 6);
  assert.equal(received.at(-1)!.done, true);
  assert.deepEqual(
    tokenEvents.map((e) => e.index),
    [0, 1, 2, 3, 4],
  );
  // Timers may fire late under load, never early: token k is not produced before its slot.
  for (const ev of tokenEvents) {
    const due = ttftMs + ev.index * interval;
    assert.ok(
      ev.at - sentAt >= due - 2,
      `token ${ev.index} produced at ${(ev.at - sentAt).toFixed(1)} ms, due at ${due} ms`,
    );
  }
  assert.ok(
    chunksWithLines.slice(0, 4).every((n) => n === 1),
    `token lines arrived one per chunk: ${chunksWithLines.join(',')}`,
  );
});

test('load and unload replies, unknown model, bad bodies', TIMEOUT, async (t) => {
  const emu = await start(t);
  const load = await postJson(emu, '/api/generate', { model: MODEL });
  assert.equal(load.headers.get('content-type'), 'application/json; charset=utf-8');
  const loaded = (await load.json()) as Record<string, unknown>;
  assert.equal(loaded.done_reason, 'load');
  assert.equal(loaded.done, true);
  assert.equal(((await (await fetch(`${emu.url}/api/ps`)).json()) as { models: unknown[] }).models.length, 1);

  const unload = (await (
    await postJson(emu, '/api/chat', { model: MODEL, messages: [], keep_alive: 0 })
  ).json()) as Record<string, unknown>;
  assert.equal(unload.done_reason, 'unload');
  assert.deepEqual(unload.message, { role: 'assistant', content: '' });
  assert.equal(((await (await fetch(`${emu.url}/api/ps`)).json()) as { models: unknown[] }).models.length, 0);

  const missing = await postJson(emu, '/api/generate', { model: 'nope', prompt: 'x' });
  assert.equal(missing.status, 404);
  assert.match(missing.headers.get('content-type') ?? '', /^application\/json/);
  assert.deepEqual(await missing.json(), { error: 'model "nope" not found, try pulling it first' });

  const bad = await fetch(`${emu.url}/api/chat`, { method: 'POST', body: '{"model": nope' });
  assert.equal(bad.status, 400);
  assert.equal(typeof ((await bad.json()) as { error: unknown }).error, 'string');
  const empty = await fetch(`${emu.url}/api/generate`, { method: 'POST' });
  assert.equal(empty.status, 400);
  assert.deepEqual(await empty.json(), { error: 'missing request body' });

  const embedOnly = await postJson(emu, '/api/generate', { model: 'nomic-embed-text', prompt: 'x' });
  assert.equal(embedOnly.status, 400);
  assert.deepEqual(await embedOnly.json(), { error: '"nomic-embed-text" does not support generate' });
});

test('per-request options override tokens and timing; num_predict ends with "length"', TIMEOUT, async (t) => {
  const emu = await start(t, { tokens: 50, ttftMs: 2000 });
  const three = await postJson(emu, '/api/generate', {
    model: MODEL,
    prompt: 'x',
    stream: false,
    options: { emulator_tokens: 3, emulator_ttft_ms: 1, emulator_interval_ms: 1 },
  });
  const body = (await three.json()) as Record<string, unknown>;
  assert.equal(body.response, 'The quick brown');
  assert.equal(body.eval_count, 3);

  const capped = await postJson(emu, '/api/chat', {
    model: MODEL,
    messages: [{ role: 'user', content: 'x' }],
    stream: false,
    options: { num_predict: 2, emulator_ttft_ms: 1, emulator_interval_ms: 1 },
  });
  const cb = (await capped.json()) as Record<string, unknown>;
  assert.equal(cb.done_reason, 'length');
  assert.deepEqual(cb.message, { role: 'assistant', content: 'The quick' });

  emu.set({ ttftMs: 1, tokens: 2 });
  const afterSet = (await (
    await postJson(emu, '/api/generate', { model: MODEL, prompt: 'x', stream: false })
  ).json()) as Record<string, unknown>;
  assert.equal(afterSet.response, 'The quick');
});

test('injected failures: a status before the first byte, an error line after it', TIMEOUT, async (t) => {
  const emu = await start(t, { tokens: 5 });
  const busy = await postJson(emu, '/api/chat', {
    model: MODEL,
    messages: [{ role: 'user', content: 'x' }],
    options: { emulator_status: 503 },
  });
  assert.equal(busy.status, 503);
  assert.match(((await busy.json()) as { error: string }).error, /^server busy/);

  const broken = await postJson(emu, '/api/generate', {
    model: MODEL,
    prompt: 'x',
    options: { emulator_fail_after: 2 },
  });
  assert.equal(broken.status, 200);
  const lines = ndjson(await broken.text());
  assert.equal(lines.length, 3);
  assert.equal(typeof lines[2]!.error, 'string');

  const ollama = new Ollama({ host: emu.url });
  await assert.rejects(async () => {
    const it = await ollama.generate({
      model: MODEL,
      prompt: 'x',
      stream: true,
      options: { emulator_fail_after: 1 } as never,
    });
    for await (const part of it) void part;
  }, /injected failure/);
});

test('ollama client abort stops the stream at once and fires "aborted"', TIMEOUT, async (t) => {
  // The next token is a minute away: "aborted" within the test's timeout, with one token sent, can
  // only come from the client leaving, however slow the machine (no bound in ms to miss).
  const emu = await start(t, { ttftMs: 10, tokenIntervalMs: 60_000, tokens: 200 });
  const ollama = new Ollama({ host: emu.url });
  const tokens: TokenEvent[] = [];
  emu.events.on('token', (ev: TokenEvent) => tokens.push(ev));
  const aborted = once(emu.events, 'aborted') as Promise<[AbortedEvent]>;

  const stream = await ollama.generate({ model: MODEL, prompt: 'x', stream: true });
  let seen = 0;
  try {
    for await (const part of stream) {
      void part;
      if (++seen === 1) stream.abort();
    }
  } catch (err) {
    assert.equal((err as Error).name, 'AbortError');
  }
  const [ev] = await aborted;
  assert.equal(seen, 1);
  assert.equal(ev.url, '/api/generate');
  assert.equal(ev.tokensSent, 1, 'the abort ended the wait for the next token');
  assert.equal(tokens.length, 1, 'production stopped');
});

test('a client leaving a delayed non-streamed reply is seen too', TIMEOUT, async (t) => {
  // The reply is a minute away, past the test's timeout: "aborted" can only come from the client leaving.
  const emu = await start(t, { ttftMs: 60_000 });
  const aborted = once(emu.events, 'aborted') as Promise<[AbortedEvent]>;
  const ac = new AbortController();
  const pending = fetch(`${emu.url}/api/chat`, {
    method: 'POST',
    signal: ac.signal,
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x' }], stream: false }),
  });
  await once(emu.events, 'request');
  ac.abort();
  await assert.rejects(pending, { name: 'AbortError' });
  const [ev] = await aborted;
  assert.equal(ev.tokensSent, 0);
});

test(
  "ollama client: embed and legacy embeddings are deterministic vectors as long as the model's embedding length (768)",
  TIMEOUT,
  async (t) => {
    const emu = await start(t);
    const ollama = new Ollama({ host: emu.url });
    const res = await ollama.embed({ model: 'nomic-embed-text', input: ['alpha', 'beta', 'alpha'] });
    assert.equal(res.embeddings.length, 3);
    for (const v of res.embeddings) {
      assert.equal(v.length, 768);
      assert.ok(Math.abs(Math.hypot(...v) - 1) < 1e-6, 'unit length');
    }
    assert.deepEqual(res.embeddings[0], res.embeddings[2]);
    assert.notDeepEqual(res.embeddings[0], res.embeddings[1]);
    const single = await ollama.embed({ model: 'nomic-embed-text', input: 'alpha' });
    assert.deepEqual(single.embeddings, [res.embeddings[0]]);

    const legacy = await ollama.embeddings({ model: 'nomic-embed-text', prompt: 'alpha' });
    assert.deepEqual(legacy.embedding, res.embeddings[0]);

    await assert.rejects(ollama.embed({ model: 'missing', input: 'x' }), { status_code: 404 });
  },
);

test('ollama client: pull reports progress, then the model is listed', TIMEOUT, async (t) => {
  const emu = await start(t, { tokenIntervalMs: 3 });
  const ollama = new Ollama({ host: emu.url });
  const statuses: string[] = [];
  let lastCompleted = -1;
  let sawBytes = false;
  for await (const p of await ollama.pull({ model: 'mistral:7b', stream: true })) {
    statuses.push(p.status);
    if (p.digest && p.total && p.status === `pulling ${p.digest.slice(7, 19)}`) {
      sawBytes = true;
      if (p.total > 1e6) {
        assert.ok((p.completed ?? 0) >= lastCompleted, 'completed never goes back');
        lastCompleted = p.completed ?? 0;
      }
    }
  }
  assert.equal(statuses[0], 'pulling manifest');
  assert.deepEqual(statuses.slice(-3), ['verifying sha256 digest', 'writing manifest', 'success']);
  assert.ok(sawBytes, 'layer progress lines carry digest, total and completed');
  assert.ok(statuses.length >= 8);
  assert.ok((await ollama.list()).models.some((m) => m.name === 'mistral:7b'));

  const quiet = await ollama.pull({ model: 'phi3', stream: false });
  assert.deepEqual(quiet, { status: 'success' });
  assert.ok((await ollama.list()).models.some((m) => m.name === 'phi3:latest'));
});

test('push and create stream progress; a failing push ends with an error line', TIMEOUT, async (t) => {
  const emu = await start(t, { tokenIntervalMs: 1 });
  const pushed = ndjson(await (await postJson(emu, '/api/push', { name: MODEL })).text());
  assert.equal(pushed[0]!.status, 'retrieving manifest');
  assert.ok(pushed.some((p) => String(p.status).startsWith('pushing ') && typeof p.total === 'number'));
  assert.deepEqual(pushed.at(-1), { status: 'success' });

  const failed = await postJson(emu, '/api/push', { model: 'ghost' });
  assert.equal(failed.status, 200, 'the error comes after the first progress line');
  const lines = ndjson(await failed.text());
  assert.match(String(lines.at(-1)!.error), /no such file or directory/);

  const data = Buffer.from('GGUF fake weights');
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
  const missingBlob = await postJson(emu, '/api/create', { model: 'custom', files: { 'w.gguf': digest } });
  assert.equal(missingBlob.status, 400);
  assert.equal((await fetch(`${emu.url}/api/blobs/${digest}`, { method: 'POST', body: data })).status, 201);
  const created = await postJson(emu, '/api/create', { model: 'custom', files: { 'w.gguf': digest }, stream: false });
  assert.deepEqual(await created.json(), { status: 'success' });
  const tags = (await (await fetch(`${emu.url}/api/tags`)).json()) as { models: Array<{ name: string }> };
  assert.ok(tags.models.some((m) => m.name === 'custom:latest'));
});

test('copy and delete return empty 200s, then 404', TIMEOUT, async (t) => {
  const emu = await start(t);
  const copied = await postJson(emu, '/api/copy', { source: MODEL, destination: 'my-llama' });
  assert.equal(copied.status, 200);
  assert.equal(await copied.text(), '');
  assert.equal((await postJson(emu, '/api/copy', { source: 'nope', destination: 'x' })).status, 404);

  const del = () => fetch(`${emu.url}/api/delete`, { method: 'DELETE', body: JSON.stringify({ name: 'my-llama' }) });
  const first = await del();
  assert.equal(first.status, 200);
  assert.equal(await first.text(), '');
  const second = await del();
  assert.equal(second.status, 404);
  assert.deepEqual(await second.json(), { error: "model 'my-llama' not found" });
});

test('blob upload is hashed while streaming: 201 on a match, 400 on a mismatch', TIMEOUT, async (t) => {
  const emu = await start(t);
  const data = randomBytes(4 * 1024 * 1024 + 123);
  const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;

  assert.equal((await raw(emu, { method: 'HEAD', path: `/api/blobs/${digest}` })).status, 404);
  assert.equal((await raw(emu, { method: 'HEAD', path: '/api/blobs/sha256:1234' })).status, 400);

  const wrong = `sha256:${'0'.repeat(64)}`;
  const bad = await fetch(`${emu.url}/api/blobs/${wrong}`, { method: 'POST', body: data });
  assert.equal(bad.status, 400);
  assert.deepEqual(await bad.json(), { error: `digest mismatch, expected "${wrong}", got "${digest}"` });
  assert.equal((await raw(emu, { method: 'HEAD', path: `/api/blobs/${wrong}` })).status, 404);

  // Chunked, without Content-Length, as the Go client uploads.
  const created = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(
      { host: '127.0.0.1', port: emu.port, method: 'POST', path: `/api/blobs/${digest}`, agent: false },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    for (let off = 0; off < data.length; off += 256 * 1024) req.write(data.subarray(off, off + 256 * 1024));
    req.end();
  });
  assert.equal(created, 201);
  const rec = emu.requests.filter((r) => r.method === 'POST' && r.url === `/api/blobs/${digest}`).at(-1)!;
  assert.equal(rec.bodyBytes, data.length);
  assert.equal(rec.headers['transfer-encoding'], 'chunked');
  assert.equal((await raw(emu, { method: 'HEAD', path: `/api/blobs/${digest}` })).status, 200);
  const again = await fetch(`${emu.url}/api/blobs/${digest}`, { method: 'POST', body: data });
  assert.equal(again.status, 200, 'an existing blob is not uploaded again');
});

test('openai client: chat completions streamed and not, errors, models, embeddings', TIMEOUT, async (t) => {
  const emu = await start(t, { tokens: 5 });
  const client = new OpenAI({ baseURL: `${emu.url}/v1`, apiKey: 'ollama', maxRetries: 0 });

  const completion = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'hi' }],
  });
  assert.equal(completion.object, 'chat.completion');
  assert.match(completion.id, /^chatcmpl-\d+$/);
  assert.equal(completion.choices[0]!.message.content, SENTENCE5);
  assert.equal(completion.choices[0]!.finish_reason, 'stop');
  assert.equal(completion.usage?.completion_tokens, 5);

  const stream = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'hi' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  const finishes: Array<string | null> = [];
  let usage: OpenAI.CompletionUsage | undefined;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'chat.completion.chunk');
    for (const c of chunk.choices) {
      text += c.delta.content ?? '';
      finishes.push(c.finish_reason);
    }
    if (chunk.usage) usage = chunk.usage;
  }
  assert.equal(text, SENTENCE5);
  assert.equal(finishes.at(-1), 'stop');
  assert.equal(usage?.completion_tokens, 5);

  await assert.rejects(
    client.chat.completions.create({ model: 'missing', messages: [{ role: 'user', content: 'x' }] }),
    (err) => {
      assert.ok(err instanceof OpenAI.NotFoundError);
      assert.equal((err.error as { type?: string }).type, 'not_found_error');
      return true;
    },
  );
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [] }), OpenAI.BadRequestError);

  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id).sort(), ['llama3.2:latest', 'nomic-embed-text:latest']);
  assert.equal(models.data[0]!.owned_by, 'library');
  assert.equal((await client.models.retrieve('llama3.2:latest')).id, 'llama3.2:latest');

  const emb = await client.embeddings.create({ model: 'nomic-embed-text', input: ['alpha', 'beta'] });
  assert.equal(emb.data.length, 2);
  assert.equal(emb.data[0]!.embedding.length, 768);

  const legacy = await client.completions.create({ model: MODEL, prompt: 'x', max_tokens: 2 });
  assert.equal(legacy.choices[0]!.text, 'The quick');
  assert.equal(legacy.choices[0]!.finish_reason, 'length');
});

test('SSE framing: data lines, a finish chunk, a usage chunk, then [DONE]', TIMEOUT, async (t) => {
  const emu = await start(t, { tokens: 2 });
  const res = await postJson(emu, '/v1/chat/completions', {
    model: MODEL,
    messages: [{ role: 'user', content: 'x' }],
    stream: true,
    stream_options: { include_usage: true },
  });
  assert.equal(res.headers.get('content-type'), 'text/event-stream');
  const events = (await res.text()).split('\n\n');
  assert.equal(events.pop(), '', 'every event ends with a blank line');
  assert.ok(events.every((e) => e.startsWith('data: ')));
  assert.equal(events.at(-1), 'data: [DONE]');
  const json = events
    .slice(0, -1)
    .map((e) => JSON.parse(e.slice(6)) as { choices: Array<Record<string, unknown>>; usage?: unknown });
  assert.equal(json.length, 4);
  assert.deepEqual(json[0]!.choices[0]!.delta, { role: 'assistant', content: 'The' });
  assert.deepEqual(json[1]!.choices[0]!.delta, { content: ' quick' });
  assert.deepEqual(json[2]!.choices[0], { index: 0, delta: {}, finish_reason: 'stop' });
  assert.deepEqual(json[3]!.choices, []);
  assert.deepEqual(json[3]!.usage, { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 });

  const v1Error = await postJson(emu, '/v1/chat/completions', {
    model: 'missing',
    messages: [{ role: 'user', content: 'x' }],
  });
  assert.equal(v1Error.status, 404);
  assert.deepEqual(await v1Error.json(), {
    error: {
      message: 'model "missing" not found, try pulling it first',
      type: 'not_found_error',
      param: null,
      code: null,
    },
  });
});

test('CORS follows Ollama defaults and the Host check guards a loopback bind', TIMEOUT, async (t) => {
  const emu = await start(t);
  const ok = await raw(emu, { path: '/api/version', headers: { origin: 'http://localhost:3000' } });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['access-control-allow-origin'], 'http://localhost:3000');
  for (const origin of ['app://obsidian.md', 'vscode-webview://abc', 'https://127.0.0.1:8443', 'tauri://localhost']) {
    assert.equal((await raw(emu, { path: '/', headers: { origin } })).status, 200, origin);
  }

  const refused = await raw(emu, { path: '/api/version', headers: { origin: 'https://app.example' } });
  assert.equal(refused.status, 403);
  assert.equal(refused.body.length, 0);
  assert.equal(refused.headers['content-type'], undefined);
  const ext = await raw(emu, { path: '/', headers: { origin: 'chrome-extension://abcdef' } });
  assert.equal(ext.status, 403, 'browser extensions need OLLAMA_ORIGINS');

  const sameOrigin = await raw(emu, { path: '/', headers: { origin: `http://127.0.0.1:${emu.port}` } });
  assert.equal(sameOrigin.status, 200);
  assert.equal(sameOrigin.headers['access-control-allow-origin'], undefined);

  const pre = await raw(emu, {
    method: 'OPTIONS',
    path: '/api/chat',
    headers: { origin: 'http://localhost:5173', 'access-control-request-method': 'POST' },
  });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers['access-control-allow-origin'], 'http://localhost:5173');
  assert.equal(pre.headers['access-control-allow-methods'], 'GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS');
  assert.match(
    pre.headers['access-control-allow-headers'] ?? '',
    /^Authorization,Content-Type,.*X-Stainless-Retry-Count/,
  );
  assert.equal(pre.headers['access-control-max-age'], '43200');

  for (const host of [
    'localhost:11434',
    'box.local',
    'api.internal:80',
    '10.1.2.3:11434',
    '192.168.1.9',
    '[::1]:11434',
  ]) {
    assert.equal((await raw(emu, { path: '/', headers: { host } })).status, 200, host);
  }
  for (const host of ['example.com', 'evil.com:11434', '8.8.8.8']) {
    const r = await raw(emu, { path: '/', headers: { host } });
    assert.equal(r.status, 403, host);
    assert.equal(r.body.length, 0);
  }
  // OPTIONS without Origin: a host name short-circuits to 204, an IP reaches the router.
  assert.equal((await raw(emu, { method: 'OPTIONS', path: '/api/tags', headers: { host: 'localhost' } })).status, 204);
  assert.equal((await raw(emu, { method: 'OPTIONS', path: '/api/tags' })).status, 405);
});

test('extra origins work like OLLAMA_ORIGINS', TIMEOUT, async (t) => {
  const emu = await start(t, { origins: ['chrome-extension://*'] });
  const r = await raw(emu, { path: '/', headers: { origin: 'chrome-extension://abcdef' } });
  assert.equal(r.status, 200);
  assert.equal(r.headers['access-control-allow-origin'], 'chrome-extension://abcdef');
});

test('stampTokens puts the write time into each token', TIMEOUT, async (t) => {
  const emu = await start(t, { stampTokens: true, tokens: 3, tokenIntervalMs: 5 });
  const res = await postJson(emu, '/api/generate', { model: MODEL, prompt: 'x' });
  const lines = ndjson(await res.text()).filter((l) => l.done === false);
  assert.equal(lines.length, 3);
  const now = performance.timeOrigin + performance.now();
  let previous = 0;
  for (const l of lines) {
    const text = String(l.response);
    assert.match(text, /^\d+\.\d{3} $/);
    const stamp = Number(text);
    assert.ok(stamp <= now && now - stamp < 5000, `stamp ${stamp} is a recent epoch time`);
    assert.ok(stamp >= previous);
    previous = stamp;
  }
});

test('GET /emulator/bytes streams exactly n bytes', TIMEOUT, async (t) => {
  const emu = await start(t);
  const n = 3 * 1024 * 1024 + 17;
  const res = await fetch(`${emu.url}/emulator/bytes?n=${n}`);
  assert.equal(res.headers.get('content-type'), 'application/octet-stream');
  assert.equal((await res.arrayBuffer()).byteLength, n);
  assert.equal((await fetch(`${emu.url}/emulator/bytes?n=abc`)).status, 400);
});

test('CLI prints its address first and exits cleanly on SIGTERM', TIMEOUT, async (t) => {
  const entry = fileURLToPath(new URL('../../testkit/ollama-emulator.ts', import.meta.url));
  const child = spawn(
    process.execPath,
    [entry, '--port', '0', '--tokens', '3', '--ttft-ms', '1', '--models', 'a,b:7b'],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const exited = once(child, 'exit');
  const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
  const info = JSON.parse(line) as { url: string; port: number; pid: number };
  assert.equal(info.pid, child.pid);
  assert.equal(info.url, `http://127.0.0.1:${info.port}`);

  const tags = (await (await fetch(`${info.url}/api/tags`)).json()) as { models: Array<{ name: string }> };
  assert.deepEqual(tags.models.map((m) => m.name).sort(), ['a:latest', 'b:7b']);
  const gen = (await (
    await fetch(`${info.url}/api/generate`, {
      method: 'POST',
      body: JSON.stringify({ model: 'a', prompt: 'x', stream: false }),
    })
  ).json()) as { response: string };
  assert.equal(gen.response, 'The quick brown');

  child.kill('SIGTERM');
  const [code, signal] = (await exited) as [number | null, NodeJS.Signals | null];
  assert.equal(signal, null);
  assert.equal(code, 0);
});
