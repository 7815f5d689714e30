/**
 * GET /ollana/v1/metrics on a real server node with two proxy workers: known traffic gives known
 * counts and token sums (read from what the emulator sent), a scrape taken under load passes
 * Prometheus' own `promtool check metrics`, and a killed worker does not take its counts with it.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import type { ResponseEvent } from '../../testkit/emulator/types.ts';
import { removeHome, type Started, startServerNode } from '../helpers/ollana-process.ts';

const N = 6;
let emu: Emulator;
let node: Started;
/** Tokens the emulator wrote per route, from its 'response' events. */
const sent = new Map<string, number>();

before(async () => {
  emu = await startEmulator({ tokens: 4, tokenIntervalMs: 0, ttftMs: 0 });
  emu.events.on('response', (e: ResponseEvent) => {
    const path = e.url.split('?')[0]!;
    sent.set(path, (sent.get(path) ?? 0) + e.tokensSent);
  });
  node = await startServerNode(emu.url, { workers: 2, env: { OLLANA_DEBUG_HOOKS: '1' } });
});

after(async () => {
  await node?.stop();
  if (node) removeHome(node.home);
  await emu?.close();
});

interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

function parse(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-z_:][a-z0-9_:]*)(?:\{(.*)\})? (\S+)$/i.exec(line);
    assert.ok(m, `a sample line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(/([a-z_]+)="((?:[^"\\]|\\.)*)"/gi)) labels[l[1]!] = l[2]!;
    out.push({ name: m[1]!, labels, value: Number(m[3]) });
  }
  return out;
}

/** The sum of the samples named `name` whose labels include `want`. */
function sum(samples: Sample[], name: string, want: Record<string, string> = {}): number {
  return samples
    .filter((s) => s.name === name && Object.entries(want).every(([k, v]) => s.labels[k] === v))
    .reduce((n, s) => n + s.value, 0);
}

async function scrape(): Promise<{ text: string; samples: Sample[] }> {
  const res = await request(`${node.url}/ollana/v1/metrics`, { reset: true });
  const text = await res.body.text();
  assert.equal(res.statusCode, 200);
  assert.match(String(res.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  return { text, samples: parse(text) };
}

/** One request on a new connection (the kernel spreads connections over both workers). */
async function post(path: string, body: unknown): Promise<string> {
  const res = await request(`${node.url}${path}`, { method: 'POST', body: JSON.stringify(body), reset: true });
  const text = await res.body.text();
  assert.equal(res.statusCode, 200, text);
  return text;
}

/** prompt and generated tokens the client read in the answers, per family */
const read = { generate: [0, 0], chat: [0, 0], openai_chat: [0, 0] };

test('n requests of each kind give n, and the tokens add up to what the emulator sent', async () => {
  for (let i = 0; i < N; i++) {
    const gen = await post('/api/generate', { model: 'llama3.2', prompt: `why is the sky blue ${i}` });
    const last = JSON.parse(gen.trim().split('\n').at(-1)!) as { prompt_eval_count: number; eval_count: number };
    read.generate[0]! += last.prompt_eval_count;
    read.generate[1]! += last.eval_count;
    const chat = JSON.parse(
      await post('/api/chat', { model: 'llama3.2', messages: [{ role: 'user', content: 'hello' }], stream: false }),
    ) as { prompt_eval_count: number; eval_count: number };
    read.chat[0]! += chat.prompt_eval_count;
    read.chat[1]! += chat.eval_count;
    const sse = await post('/v1/chat/completions', {
      model: 'llama3.2',
      messages: [{ role: 'user', content: 'one two three' }],
      stream: true,
      stream_options: { include_usage: true },
    });
    const usage = sse
      .split('\n')
      .filter((l) => l.startsWith('data: {'))
      .map((l) => JSON.parse(l.slice(6)) as { usage?: { prompt_tokens: number; completion_tokens: number } })
      .at(-1)!.usage!;
    read.openai_chat[0]! += usage.prompt_tokens;
    read.openai_chat[1]! += usage.completion_tokens;
    const tags = await request(`${node.url}/api/tags`, { reset: true });
    await tags.body.text();
  }
  const { samples } = await scrape();
  for (const family of ['generate', 'chat', 'openai_chat', 'models'])
    assert.equal(sum(samples, 'ollana_requests_total', { family, outcome: '2xx' }), N, family);
  assert.equal(sum(samples, 'ollana_requests_total', { family: 'generate', model: 'llama3.2' }), N);
  assert.equal(sum(samples, 'ollana_request_first_byte_seconds_count', { family: 'chat' }), N);
  assert.equal(sum(samples, 'ollana_request_duration_seconds_count', { family: 'models' }), N);
  assert.equal(
    sum(samples, 'ollana_request_duration_seconds_bucket', { family: 'generate', le: '+Inf' }),
    N,
    'the +Inf bucket holds every request',
  );
  // What the emulator wrote is what the client read is what the metrics counted.
  assert.equal(read.generate[1], sent.get('/api/generate'));
  assert.equal(read.chat[1], sent.get('/api/chat'));
  assert.equal(read.openai_chat[1], sent.get('/v1/chat/completions'));
  for (const [family, [prompt, generated]] of Object.entries(read)) {
    assert.ok(generated! > 0 && prompt! > 0, family);
    assert.equal(sum(samples, 'ollana_generated_tokens_total', { family, model: 'llama3.2' }), generated, family);
    assert.equal(sum(samples, 'ollana_prompt_tokens_total', { family, model: 'llama3.2' }), prompt, family);
  }
  assert.equal(sum(samples, 'ollana_build_info', { version: '0.1.0' }), 1);
  assert.equal(sum(samples, 'ollana_ollama_up'), 1);
  assert.equal(sum(samples, 'ollana_worker_restarts_total'), 0);
});

test('a scrape taken under load passes promtool check metrics', async () => {
  const promtool = spawnSync('promtool', ['--version'], { encoding: 'utf8' });
  assert.equal(
    promtool.error,
    undefined,
    'promtool (Debian package prometheus) is needed: run node test/helpers/install-test-tools.ts as root',
  );
  let running = true;
  let done = 0;
  const load = Array.from({ length: 8 }, async () => {
    while (running) {
      await post('/api/chat', { model: 'llama3.2', messages: [{ role: 'user', content: 'hi' }] });
      done += 1;
    }
  });
  try {
    // Under load: scrapes until one shows requests in flight (bounded in count).
    let text = '';
    for (let i = 0; i < 200; i++) {
      const s = await scrape();
      text = s.text;
      if (sum(s.samples, 'ollana_in_flight_requests') > 0) break;
    }
    const check = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 60_000 });
    assert.equal(check.status, 0, `promtool check metrics: ${check.stdout}${check.stderr}`);
    assert.equal(check.stdout + check.stderr, '', 'promtool has no lint findings');
  } finally {
    running = false;
    await Promise.all(load);
  }
  assert.ok(done > 0);
});

test('a killed worker does not reset the counters', async () => {
  const before = (await scrape()).samples;
  const requests = sum(before, 'ollana_requests_total');
  const generated = sum(before, 'ollana_generated_tokens_total');
  assert.ok(requests >= 4 * N);
  const crash = await request(`${node.url}/ollana/v1/debug/crash`, { method: 'POST', reset: true }).catch(
    (err: Error) => err,
  );
  if (!(crash instanceof Error)) await crash.body.text().catch(() => undefined);
  // Until the supervisor has restarted the worker and the new thread listens (bounded).
  let live = 0;
  let restarts = 0;
  for (let i = 0; i < 300 && (restarts < 1 || live < 2); i++) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const res = await request(`${node.url}/ollana/v1/status`, { reset: true });
    const status = (await res.body.json()) as { workers: { live: number; restarts: number } };
    live = status.workers.live;
    restarts = status.workers.restarts;
  }
  const after = (await scrape()).samples;
  assert.equal(sum(after, 'ollana_worker_restarts_total'), 1, 'the worker was restarted');
  // Both workers, the new one included, answer this scrape: the dead one's counts are still there.
  assert.equal(sum(after, 'ollana_requests_total'), requests);
  assert.equal(sum(after, 'ollana_generated_tokens_total'), generated);
  for (let i = 0; i < 4; i++) await post('/api/generate', { model: 'llama3.2', prompt: 'again' });
  const later = (await scrape()).samples;
  assert.equal(sum(later, 'ollana_requests_total'), requests + 4);
  assert.equal(
    sum(later, 'ollana_requests_total', { family: 'generate' }),
    sum(before, 'ollana_requests_total', { family: 'generate' }) + 4,
  );
});
