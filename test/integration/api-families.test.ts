/**
 * A client node in front of several Ollama emulators carries each API family as Ollama does (issue
 * #17 parts 3-5), tested with each family's official client library: the model read wherever
 * Ollama reads it (path, multipart field, zstd body; names written as Ollama accepts them), account
 * requests on one server, cloud models moved past servers that cannot run them, and ollana's own
 * errors and broken-stream tails in the shape of the family (native, OpenAI, Anthropic).
 *
 * The client node's workers run in a process of their own (test/fixtures/client-pool/), routing
 * between the emulators named on its command line; the first is the leader.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { zstdCompressSync } from 'node:zlib';
import Anthropic from '@anthropic-ai/sdk';
import { Ollama } from 'ollama';
import OpenAI, { toFile } from 'openai';
import { startEmulator } from '../../testkit/ollama-emulator.ts';
import type { Emulator } from '../../testkit/emulator/types.ts';
import { freePort } from '../helpers/ollana-process.ts';

const FIXTURE = fileURLToPath(new URL('../fixtures/client-pool/client-pool.ts', import.meta.url));

/** The leader: signed in to ollama.com as alice, but with cloud disabled. */
let lead: Emulator;
/** Has qwen3:8b and a transcription model; not signed in. */
let other: Emulator;
/** Signed in as bob: the one that can run cloud models. */
let cloudy: Emulator;
/** One stream each, closed mid-stream by the tests that break a stream. */
let breaksMessages: Emulator;
let breaksResponses: Emulator;
let child: ChildProcess;
let base: string;

before(async () => {
  const slow = { tokens: 200, tokenIntervalMs: 50, ttftMs: 0 };
  [lead, other, cloudy, breaksMessages, breaksResponses] = await Promise.all([
    startEmulator({ models: ['llama3.2:latest'], account: 'alice', cloudDisabled: true }),
    startEmulator({ models: ['qwen3:8b', 'whisper-small:latest'] }),
    startEmulator({ models: ['nomic-embed-text:latest'], account: 'bob' }),
    startEmulator({ models: ['breaks-messages:latest'], ...slow }),
    startEmulator({ models: ['breaks-responses:latest'], ...slow }),
  ]);
  const port = await freePort();
  child = spawn(
    process.execPath,
    [
      FIXTURE,
      String(port),
      `lead=${lead.url}=llama3.2:latest`,
      `other=${other.url}=qwen3:8b,whisper-small:latest`,
      `cloudy=${cloudy.url}=nomic-embed-text:latest`,
      `bm=${breaksMessages.url}=breaks-messages:latest`,
      `br=${breaksResponses.url}=breaks-responses:latest`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve);
    child.once('exit', (code) => reject(new Error(`client pool exited with ${code}`)));
  });
  base = `http://127.0.0.1:${port}`;
});

after(async () => {
  child?.kill('SIGKILL');
  await Promise.all([lead, other, cloudy, breaksMessages, breaksResponses].map((e) => e?.close()));
});

/** How many requests to `path` an emulator saw. */
function seen(emu: Emulator, path: string): number {
  return emu.requests.filter((r) => r.url.split('?', 1)[0] === path).length;
}

/**
 * Runs `fn` and checks that requests to `path` reached `target` alone: a server without the model
 * would answer 404 and the request would move on, so landing there at all means the model was not
 * read.
 */
async function onlyOn(target: Emulator, path: string, fn: () => Promise<void>): Promise<number> {
  const all = [lead, other, cloudy, breaksMessages, breaksResponses];
  const before = all.map((e) => seen(e, path));
  await fn();
  const delta = all.map((e, i) => seen(e, path) - before[i]!);
  all.forEach((e, i) => {
    if (e !== target) assert.equal(delta[i], 0, `${path} reached a server without the model`);
  });
  return delta[all.indexOf(target)]!;
}

const openai = (): OpenAI => new OpenAI({ baseURL: `${base}/v1`, apiKey: 'ollama', maxRetries: 0 });
const anthropic = (): Anthropic => new Anthropic({ baseURL: base, apiKey: 'ollama', maxRetries: 0 });

test('model names written as Ollama accepts them reach the server that has the model', async () => {
  const ollama = new Ollama({ host: base });
  const n = await onlyOn(other, '/api/chat', async () => {
    for (const name of ['Qwen3:8b', 'library/qwen3:8b', 'registry.ollama.ai/library/qwen3:8b', 'QWEN3:8B']) {
      const r = await ollama.chat({ model: name, messages: [{ role: 'user', content: 'hi' }], stream: false });
      assert.equal(r.done, true, name);
    }
  });
  assert.equal(n, 4, 'every spelling went to the server with qwen3:8b');
});

test('GET /v1/models/{id} answers from the server that has the model; 404 only when none has it', async () => {
  const client = openai();
  await onlyOn(other, '/v1/models/qwen3:8b', async () => {
    for (let i = 0; i < 4; i++) {
      // Several requests in a row: servers that are equally idle take turns, yet each lands on `other`.
      const m = await client.models.retrieve('qwen3:8b');
      assert.equal(m.id, 'qwen3:8b');
    }
  });
  const err = await client.models.retrieve('no-such-model').catch((e: unknown) => e);
  assert.ok(err instanceof OpenAI.NotFoundError, String(err));
});

test('a zstd-compressed /v1/responses body is routed by its model and forwarded byte for byte', async () => {
  const json = JSON.stringify({ model: 'qwen3:8b', input: 'hello there', stream: false });
  const body = zstdCompressSync(Buffer.from(json));
  const before = other.requests.length;
  // Several in a row: equally idle servers take turns, so a model not read would land elsewhere.
  const n = await onlyOn(other, '/v1/responses', async () => {
    for (let i = 0; i < 5; i++) {
      const r = await fetch(`${base}/v1/responses`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': 'zstd' },
        body,
      });
      const out = (await r.json()) as { status: string; output: unknown[] };
      assert.equal(r.status, 200, JSON.stringify(out));
      assert.equal(out.status, 'completed');
    }
  });
  assert.equal(n, 5);
  const rec = other.requests.slice(before).find((x) => x.url === '/v1/responses' && x.bodyBytes > 0);
  assert.ok(rec, 'the server with the model got it');
  assert.equal(rec.headers['content-encoding'], 'zstd', 'Content-Encoding kept');
  assert.equal(rec.bodyBytes, body.length, 'the compressed bytes arrived as sent');
});

test('multipart /v1/audio/transcriptions is routed by its model field, after a 3 MiB file', async () => {
  const audio = Buffer.alloc(3 * 1024 * 1024, 7);
  const file = await toFile(audio, 'speech.wav', { type: 'audio/wav' });
  const n = await onlyOn(other, '/v1/audio/transcriptions', async () => {
    const r = await openai().audio.transcriptions.create({ file, model: 'whisper-small' });
    assert.equal(typeof r.text, 'string');
    assert.ok(r.text.length > 0);
  });
  assert.equal(n, 1);
});

test('account requests all go to the leader, the server signed in', async () => {
  for (let i = 0; i < 4; i++) {
    const r = await fetch(`${base}/api/me`, { method: 'POST' });
    assert.equal(r.status, 200);
    assert.equal(((await r.json()) as { name: string }).name, 'alice');
  }
  assert.equal(seen(other, '/api/me') + seen(cloudy, '/api/me'), 0);
});

test('a cloud model moves past servers answering 401/403 to one that can run it', async () => {
  const leadBefore = seen(lead, '/v1/chat/completions');
  const r = await openai().chat.completions.create({
    model: 'gpt-oss:120b:cloud',
    messages: [{ role: 'user', content: 'hi' }],
  });
  assert.equal(r.choices[0]?.message.role, 'assistant');
  assert.equal(seen(lead, '/v1/chat/completions') - leadBefore, 1, 'the leader was asked first (and refused: 403)');
  assert.ok(seen(cloudy, '/v1/chat/completions') >= 1, 'the signed-in server answered');
});

test('a /v1/messages stream broken mid-way ends with an `event: error` the Anthropic SDK raises', async () => {
  const stream = await anthropic().messages.create({
    model: 'breaks-messages',
    max_tokens: 1000,
    stream: true,
    messages: [{ role: 'user', content: 'hi' }],
  });
  let deltas = 0;
  const err = await (async () => {
    for await (const ev of stream) {
      if (ev.type === 'content_block_delta' && ++deltas === 1) void breaksMessages.close(); // the server dies
    }
  })().then(
    () => null,
    (e: unknown) => e,
  );
  assert.ok(deltas >= 1);
  assert.ok(err instanceof Anthropic.APIError, `the SDK raised the error tail, not a silent end: ${String(err)}`);
  assert.equal(err.type, 'api_error');
});

test('a /v1/responses stream broken mid-way ends with a typed `event: error` record', async () => {
  // Read raw: the OpenAI SDK raises an untyped `data: {"error":...}` too, but Responses clients
  // such as Codex dispatch on the event type and would drop it.
  const r = await fetch(`${base}/v1/responses`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'breaks-responses', input: 'hi', stream: true }),
  });
  assert.equal(r.status, 200);
  const decoder = new TextDecoder();
  let text = '';
  let closed = false;
  for await (const chunk of r.body as AsyncIterable<Uint8Array>) {
    text += decoder.decode(chunk, { stream: true });
    if (!closed && text.includes('event: response.output_text.delta')) {
      closed = true;
      void breaksResponses.close(); // the server dies mid-stream
    }
  }
  const records = text.trim().split('\n\n');
  const last = records.at(-1)!.split('\n');
  assert.equal(last[0], 'event: error', `the tail is a typed error event: ${records.at(-1)}`);
  const data = JSON.parse(last[1]!.replace(/^data: /, '')) as { type: string; message: string };
  assert.equal(data.type, 'error');
  assert.equal(typeof data.message, 'string');
});

// After the stream tests: the server with breaks-messages is gone, so ollana answers 502 itself.
test("ollana's own errors on /v1/messages are Anthropic's shape; on /v1/chat OpenAI's; on /api Ollama's", async () => {
  const a = await anthropic()
    .messages.create({ model: 'breaks-messages', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] })
    .catch((e: unknown) => e);
  assert.ok(a instanceof Anthropic.APIError, String(a));
  assert.equal(a.status, 502);
  assert.equal(a.type, 'api_error');
  const shape = a.error as { type?: unknown; error?: { type?: unknown; message?: unknown } };
  assert.equal(shape.type, 'error');
  assert.equal(shape.error?.type, 'api_error');
  assert.equal(typeof shape.error?.message, 'string');

  const o = await openai()
    .chat.completions.create({ model: 'breaks-messages', messages: [{ role: 'user', content: 'hi' }] })
    .catch((e: unknown) => e);
  assert.ok(o instanceof OpenAI.APIError, String(o));
  assert.equal(o.status, 502);
  assert.equal(o.type, 'api_error');

  const n = await new Ollama({ host: base })
    .chat({ model: 'breaks-messages', messages: [{ role: 'user', content: 'hi' }], stream: false })
    .catch((e: unknown) => e);
  assert.ok(n instanceof Error && 'status_code' in n, String(n));
  assert.equal((n as { status_code: number }).status_code, 502);
});
