/**
 * The emulator answers the OpenAI Responses, Anthropic Messages and transcription routes, account
 * requests and cloud models as Ollama does, and frames its replies as Go's net/http does (issue #17
 * part 6), so that tests of ollana through it catch what a real Ollama would show. Checked with the
 * official client libraries where the shape is theirs, and on the wire where framing matters.
 */
import assert from 'node:assert/strict';
import { Agent, request } from 'node:http';
import { after, before, test } from 'node:test';
import { zstdCompressSync } from 'node:zlib';
import Anthropic from '@anthropic-ai/sdk';
import OpenAI, { toFile } from 'openai';
import { startEmulator } from '../../testkit/ollama-emulator.ts';
import type { Emulator } from '../../testkit/emulator/types.ts';

let emu: Emulator;

before(async () => {
  emu = await startEmulator({
    models: ['llama3.2:latest', 'nomic-embed-text:latest', 'whisper-small:latest'],
    tokens: 3,
    tokenIntervalMs: 1,
    ttftMs: 0,
  });
});
after(() => emu.close());

const openai = (): OpenAI => new OpenAI({ baseURL: `${emu.url}/v1`, apiKey: 'ollama', maxRetries: 0 });
const anthropic = (): Anthropic => new Anthropic({ baseURL: emu.url, apiKey: 'ollama', maxRetries: 0 });

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function raw(method: string, path: string, body?: Buffer | string, headers: Record<string, string> = {}): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = request(`${emu.url}${path}`, { method, headers, agent: false }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => {
        text += c.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('/v1/messages: a reply, a typed event stream, and errors in the Anthropic shape', async () => {
  const client = anthropic();
  const msg = await client.messages.create({
    model: 'llama3.2',
    max_tokens: 64,
    messages: [{ role: 'user', content: 'hi' }],
  });
  assert.equal(msg.type, 'message');
  assert.equal(msg.stop_reason, 'end_turn');
  assert.equal(msg.content[0]?.type, 'text');

  const types: string[] = [];
  const stream = await client.messages.create({
    model: 'llama3.2',
    max_tokens: 64,
    stream: true,
    messages: [{ role: 'user', content: 'hi' }],
  });
  for await (const ev of stream) types.push(ev.type);
  assert.deepEqual(
    [...new Set(types)],
    [
      'message_start',
      'content_block_start',
      'content_block_delta',
      'content_block_stop',
      'message_delta',
      'message_stop',
    ],
  );

  const err = await client.messages
    .create({ model: 'nope', max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] })
    .catch((e: unknown) => e);
  assert.ok(err instanceof Anthropic.NotFoundError, String(err));
  assert.equal(err.type, 'not_found_error');

  const r = await raw('POST', '/v1/messages', JSON.stringify({ model: 'llama3.2', messages: [] }), {
    'content-type': 'application/json',
  });
  assert.equal(r.status, 400);
  assert.equal((JSON.parse(r.body) as { type: string }).type, 'error');

  const s = await raw(
    'POST',
    '/v1/messages',
    JSON.stringify({ model: 'llama3.2', max_tokens: 8, stream: true, messages: [{ role: 'user', content: 'x' }] }),
    { 'content-type': 'application/json' },
  );
  assert.equal(s.headers['cache-control'], 'no-cache');
  assert.match(s.body, /^event: message_start\ndata: \{"type":"message_start"/);
});

test('/v1/responses: a reply, typed events with sequence numbers, and a zstd body as Codex sends it', async () => {
  const client = openai();
  const r = await client.responses.create({ model: 'llama3.2', input: 'hi' });
  assert.equal(r.status, 'completed');
  assert.ok(r.output_text.length > 0);

  const events: { type: string; sequence_number: number }[] = [];
  const stream = await client.responses.create({ model: 'llama3.2', input: 'hi', stream: true });
  for await (const ev of stream) events.push(ev);
  assert.equal(events[0]?.type, 'response.created');
  assert.equal(events.at(-1)?.type, 'response.completed');
  assert.ok(events.some((e) => e.type === 'response.output_text.delta'));
  assert.deepEqual(
    events.map((e) => e.sequence_number),
    events.map((_, i) => i),
  );

  const json = JSON.stringify({ model: 'llama3.2', input: 'hi' });
  const z = await raw('POST', '/v1/responses', zstdCompressSync(Buffer.from(json)), {
    'content-type': 'application/json',
    'content-encoding': 'zstd',
  });
  assert.equal(z.status, 200, z.body);
  const bad = await raw('POST', '/v1/responses', 'not zstd', {
    'content-type': 'application/json',
    'content-encoding': 'zstd',
  });
  assert.equal(bad.status, 400);
  assert.equal((JSON.parse(bad.body) as { error: { type: string } }).error.type, 'invalid_request_error');
});

test('/v1/audio/transcriptions reads a multipart form; /v1/images routes are gone', async () => {
  const t = await openai().audio.transcriptions.create({
    file: await toFile(Buffer.alloc(1000, 1), 'a.wav'),
    model: 'whisper-small',
  });
  assert.ok(t.text.length > 0);
  const err = await openai()
    .audio.transcriptions.create({ file: await toFile(Buffer.alloc(10, 1), 'a.wav'), model: 'nope' })
    .catch((e: unknown) => e);
  assert.ok(err instanceof OpenAI.NotFoundError, String(err));
  const img = await raw('POST', '/v1/images/generations', '{}', { 'content-type': 'application/json' });
  assert.equal(img.status, 404);
  assert.equal(img.body, '404 page not found');
});

test('account requests and cloud models answer as a server not signed in, signed in, and with cloud off', async () => {
  const me = await raw('POST', '/api/me');
  assert.equal(me.status, 401);
  assert.match((JSON.parse(me.body) as { signin_url: string }).signin_url, /^https:\/\/ollama\.com\/connect\?/);
  const cloudChat = (): Promise<unknown> =>
    openai()
      .chat.completions.create({ model: 'gpt-oss:120b-cloud', messages: [{ role: 'user', content: 'hi' }] })
      .catch((e: unknown) => e);
  assert.ok((await cloudChat()) instanceof OpenAI.AuthenticationError);

  emu.set({ account: 'alice' });
  const who = await raw('POST', '/api/me');
  assert.equal(who.status, 200);
  assert.equal((JSON.parse(who.body) as { name: string }).name, 'alice');
  const ok = (await cloudChat()) as { choices: unknown[] };
  assert.equal(ok.choices.length, 1);

  emu.set({ cloudDisabled: true });
  assert.ok((await cloudChat()) instanceof OpenAI.PermissionDeniedError);
  emu.set({ cloudDisabled: false });

  assert.equal((await raw('POST', '/api/signout')).status, 200);
  assert.equal((await raw('POST', '/api/me')).status, 401, 'signed out');
  assert.equal((await raw('DELETE', '/api/user/keys/abc')).status, 401, 'not signed in any more');
});

test("replies are framed as Go's net/http frames them", async () => {
  // Up to 2 KiB: Content-Length; longer: chunked.
  const small = await raw('GET', '/api/version');
  assert.equal(small.headers['content-length'], String(Buffer.byteLength(small.body)));
  emu.set({ models: Array.from({ length: 40 }, (_, i) => `model-${i}:latest`) });
  const big = await raw('GET', '/api/tags');
  assert.ok(big.body.length > 2048);
  assert.equal(big.headers['content-length'], undefined);
  assert.equal(big.headers['transfer-encoding'], 'chunked');
  emu.set({ models: ['llama3.2:latest', 'nomic-embed-text:latest', 'whisper-small:latest'] });

  // An answer before a 1 MiB body was read closes the connection, as Go does once more than 256 KiB
  // is left unread (node:http does the same on its own); a small body read along does not.
  const early = await new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
    const req = request(
      `${emu.url}/api/no-such-route`,
      { method: 'POST', agent: false, headers: { 'content-length': String(1 << 20) } },
      (res) => {
        res.resume();
        resolve({ status: res.statusCode ?? 0, connection: res.headers.connection });
        req.destroy();
      },
    );
    req.on('error', (e) => {
      if ((e as { code?: string }).code !== 'ECONNRESET') reject(e);
    });
    req.write('x');
  });
  assert.deepEqual(early, { status: 404, connection: 'close' });
  const agent = new Agent({ keepAlive: true });
  const kept = await new Promise<{ status: number; connection: string | undefined }>((resolve, reject) => {
    const req = request(`${emu.url}/api/no-such-route`, { method: 'POST', agent }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, connection: res.headers.connection }));
    });
    req.on('error', reject);
    req.end('x'.repeat(100));
  });
  agent.destroy();
  assert.deepEqual(kept, { status: 404, connection: 'keep-alive' });
});
