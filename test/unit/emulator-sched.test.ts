/**
 * The emulator schedules like Ollama (testkit/emulator/scheduler.ts): slots per loaded model with
 * FIFO waits, loads that cost time, a bounded pending queue, eviction in Ollama's order, keep_alive,
 * /api/ps, and the counters at GET /emulator/v1/sched. Everything goes over real loopback HTTP;
 * time that matters is either a fake clock the test moves or a wait for a condition.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Ollama } from 'ollama';
import {
  startEmulator,
  type Emulator,
  type EmulatorOptions,
  type SchedCounters,
  type TokenEvent,
} from '../../testkit/ollama-emulator.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

const TIMEOUT = { timeout: 30_000 };
const MODEL = 'llama3.2:latest';
/** A request with this many ms between tokens holds its slot until the test lets it go. */
const HOLD = { emulator_tokens: 3, emulator_ttft_ms: 0, emulator_interval_ms: 600_000 };
const QUICK = { emulator_tokens: 1, emulator_ttft_ms: 0 };

async function start(t: TestContext, opts: EmulatorOptions = {}): Promise<Emulator> {
  const emu = await startEmulator({ ttftMs: 1, tokenIntervalMs: 1, tokens: 2, ...opts });
  t.after(() => emu.close());
  return emu;
}

async function counters(emu: Emulator): Promise<SchedCounters> {
  const res = await fetch(`${emu.url}/emulator/v1/sched`);
  assert.equal(res.status, 200);
  return (await res.json()) as SchedCounters;
}

/** Polls `probe` until it holds: at most 1000 rounds and 20 s, then fails naming `what`. */
async function until(probe: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const deadline = Date.now() + 20_000;
  for (let round = 0; round < 1000; round++) {
    if (await probe()) return;
    if (Date.now() > deadline) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.fail(`timed out waiting for ${what}`);
}

interface Ps {
  models: Array<{
    name: string;
    model: string;
    size: number;
    size_vram: number;
    digest: string;
    details: Record<string, unknown>;
    expires_at: string;
    context_length: number;
  }>;
}

async function ps(emu: Emulator): Promise<Ps['models']> {
  return ((await (await fetch(`${emu.url}/api/ps`)).json()) as Ps).models;
}

/** POSTs a JSON body; `id` goes into the query so token events tell requests apart. */
function post(
  emu: Emulator,
  path: string,
  body: Record<string, unknown>,
  opts: { id?: string; signal?: AbortSignal } = {},
): Promise<Response> {
  return fetch(`${emu.url}${path}${opts.id ? `?id=${opts.id}` : ''}`, {
    method: 'POST',
    body: JSON.stringify(body),
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
}

/** Starts a generate that holds a slot (its body is left unread) until `ac` aborts. */
function hold(emu: Emulator, model: string, ac: AbortController, extra: Record<string, unknown> = {}): void {
  post(emu, '/api/generate', { model, prompt: 'hold', ...HOLD, ...extra }, { signal: ac.signal }).catch(() => {});
}

/** A request that only ends when the emulator closes: its failure then is expected. */
function background(p: Promise<Response>): Promise<Response> {
  p.catch(() => {});
  return p;
}

async function json(res: Response | Promise<Response>): Promise<Record<string, unknown>> {
  return (await (await res).json()) as Record<string, unknown>;
}

test(
  'N slots per model: the rest wait FIFO, a leaver frees its slot or leaves the line at once',
  TIMEOUT,
  async (t) => {
    const emu = await start(t, { numParallel: 2 });
    const tokens: string[] = [];
    emu.events.on('token', (ev: TokenEvent) => tokens.push(ev.url));
    const a = new AbortController();
    const b = new AbortController();
    hold(emu, MODEL, a);
    hold(emu, MODEL, b);
    await until(async () => (await counters(emu)).models[MODEL]?.inFlight === 2, 'two requests in their slots');

    const done: string[] = [];
    const left = new AbortController();
    const waiting: Array<Promise<unknown>> = [];
    for (const id of ['c', 'd', 'e', 'f']) {
      const signal = id === 'd' ? left.signal : undefined;
      const p = post(emu, '/api/generate', { model: MODEL, prompt: id, stream: false, ...QUICK }, { id, signal });
      waiting.push(
        p.then(
          async (res) => {
            assert.equal(res.status, 200);
            await res.json();
            done.push(id);
          },
          (err: Error) => assert.equal(err.name, 'AbortError'),
        ),
      );
      const queued = waiting.length;
      await until(async () => (await counters(emu)).models[MODEL]?.queued === queued, `${id} waiting for a slot`);
    }
    let c = (await counters(emu)).models[MODEL]!;
    assert.deepEqual({ slots: c.slots, inFlight: c.inFlight, queued: c.queued }, { slots: 2, inFlight: 2, queued: 4 });
    assert.equal(tokens.filter((u) => u.includes('?id=')).length, 0, 'no waiting request produced a token');

    left.abort();
    await until(async () => (await counters(emu)).models[MODEL]?.queued === 3, 'd to leave the line');
    assert.equal((await counters(emu)).totals.aborted_queued, 1);

    a.abort();
    await Promise.all(waiting);
    assert.deepEqual(done, ['c', 'e', 'f'], 'one freed slot served the line in arrival order');
    assert.equal(tokens.includes('/api/generate?id=d'), false, 'the leaver never got a slot');
    c = (await counters(emu)).models[MODEL]!;
    assert.deepEqual({ inFlight: c.inFlight, queued: c.queued }, { inFlight: 1, queued: 0 }, 'b still holds its slot');
    b.abort();
    await until(async () => (await counters(emu)).models[MODEL]?.inFlight === 0, 'b to free its slot');
  },
);

test('embedding models get one slot; embed, chat and /v1 routes wait for slots too', TIMEOUT, async (t) => {
  const emu = await start(t, { numParallel: 4, models: [MODEL, 'nomic-embed-text:latest'] });
  const embed = 'nomic-embed-text:latest';
  background(post(emu, '/api/embed', { model: embed, input: 'x', emulator_ttft_ms: 600_000 }));
  await until(async () => (await counters(emu)).models[embed]?.inFlight === 1, 'the first embed in its slot');
  const second = new AbortController();
  const queued = post(emu, '/v1/embeddings', { model: embed, input: 'y' }, { signal: second.signal });
  await until(async () => (await counters(emu)).models[embed]?.queued === 1, 'the second embed waiting');
  assert.equal((await counters(emu)).models[embed]?.slots, 1);
  second.abort();
  await assert.rejects(queued, { name: 'AbortError' });

  const holders = [1, 2, 3, 4].map(() => new AbortController());
  for (const ac of holders) hold(emu, MODEL, ac);
  await until(async () => (await counters(emu)).models[MODEL]?.inFlight === 4, 'four slots taken');
  const v1 = post(emu, '/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'hi' }], ...QUICK });
  const chat = post(emu, '/api/chat', {
    model: MODEL,
    messages: [{ role: 'user', content: 'hi' }],
    stream: false,
    ...QUICK,
  });
  const completion = post(emu, '/v1/completions', { model: MODEL, prompt: 'hi', ...QUICK });
  await until(async () => (await counters(emu)).models[MODEL]?.queued === 3, 'three requests waiting');
  holders[0]!.abort();
  for (const res of await Promise.all([v1, chat, completion])) assert.equal(res.status, 200);
  for (const ac of holders) ac.abort();
});

test('a model not loaded costs loadMs before its first token; load_duration reports it', TIMEOUT, async (t) => {
  const emu = await start(t, { loadMs: 400 });
  const cold = await json(post(emu, '/api/generate', { model: MODEL, prompt: 'x', stream: false }));
  // A timer may fire a fraction of a millisecond early by performance.now().
  assert.ok((cold.load_duration as number) >= 399e6, `load_duration ${cold.load_duration} ns covers the load`);
  assert.ok((cold.total_duration as number) >= (cold.load_duration as number));
  const warm = await json(post(emu, '/api/generate', { model: MODEL, prompt: 'x', stream: false }));
  assert.ok((warm.load_duration as number) > 0, 'a loaded model still reports its (short) scheduling');
  assert.ok((warm.load_duration as number) < (cold.load_duration as number));
  assert.equal((await counters(emu)).models[MODEL]?.loads, 1);

  // A per-request load time; the requests behind a load wait for it in the pending queue.
  const embed = 'nomic-embed-text:latest';
  background(post(emu, '/api/embed', { model: embed, input: 'x', emulator_load_ms: 600_000 }));
  await until(async () => (await counters(emu)).totals.pending === 1, 'the load to start');
  background(post(emu, '/api/embed', { model: embed, input: 'y' }));
  await until(async () => (await counters(emu)).models[embed]?.queued === 2, 'a request behind the load');
  const c = (await counters(emu)).models[embed]!;
  assert.deepEqual({ loaded: c.loaded, loads: c.loads }, { loaded: false, loads: 0 });
});

test('only requests that need a load queue, up to maxQueue; beyond it 503 "server busy"', TIMEOUT, async (t) => {
  const emu = await start(t, { maxQueue: 2, loadMs: 600_000, models: [MODEL, 'qwen3:0.6b'] });
  const other = 'qwen3:0.6b';
  // Loaded at once: its own load time is 0.
  assert.equal((await json(post(emu, '/api/generate', { model: other, emulator_load_ms: 0 }))).done_reason, 'load');

  const head = new AbortController();
  const headLeft = assert.rejects(post(emu, '/api/generate', { model: MODEL, prompt: 'x' }, { signal: head.signal }), {
    name: 'AbortError',
  });
  await until(async () => (await counters(emu)).totals.pending === 1, 'the load at the head');
  const leaving = new AbortController();
  background(
    post(emu, '/api/chat', { model: MODEL, messages: [{ role: 'user', content: 'x' }] }, { signal: leaving.signal }),
  );
  background(post(emu, '/api/generate', { model: MODEL, prompt: 'y' }));
  await until(async () => (await counters(emu)).totals.pending === 3, 'two requests queued behind the load');

  const busy = await post(emu, '/api/generate', { model: MODEL, prompt: 'z' });
  assert.equal(busy.status, 503);
  assert.deepEqual(await busy.json(), { error: 'server busy, please try again.  maximum pending requests exceeded' });
  const busyV1 = await post(emu, '/v1/chat/completions', { model: MODEL, messages: [{ role: 'user', content: 'z' }] });
  assert.equal(busyV1.status, 503);
  assert.deepEqual(await busyV1.json(), {
    error: {
      message: 'server busy, please try again.  maximum pending requests exceeded',
      type: 'api_error',
      param: null,
      code: null,
    },
  });
  assert.equal((await counters(emu)).totals.rejected, 2);

  // A loaded model answers while the queue is full: its requests never enter it.
  const fast = await json(post(emu, '/api/generate', { model: other, prompt: 'x', stream: false }));
  assert.equal(fast.done, true);

  // A client that leaves the queue makes room at once; one that leaves the head cancels its load.
  leaving.abort();
  await until(async () => (await counters(emu)).totals.pending === 2, 'the leaver out of the queue');
  head.abort();
  await until(async () => (await counters(emu)).totals.pending === 1, 'the head gone, the next one loading');
  const after = await counters(emu);
  assert.equal(after.totals.aborted_queued, 2);
  assert.equal(after.models[MODEL]?.loads, 0, 'the cancelled load did not complete');
  await headLeft;
});

test('eviction follows Ollama: shortest keep_alive first, then digest; idle before busy', TIMEOUT, async (t) => {
  const names = ['a:latest', 'b:latest', 'c:latest', 'd:latest'];
  const emu = await start(t, { maxLoadedModels: 2, models: names });
  const tags = (await (await fetch(`${emu.url}/api/tags`)).json()) as {
    models: Array<{ name: string; digest: string }>;
  };
  const digest = new Map(tags.models.map((m) => [m.name, m.digest]));
  const resident = async (): Promise<string[]> => (await ps(emu)).map((m) => m.name).sort();
  const load = (model: string, keep_alive: string): Promise<Record<string, unknown>> =>
    json(post(emu, '/api/generate', { model, keep_alive }));

  // a is used first and longest ago, but its keep_alive is longer: b goes (not least recently used).
  await load('a:latest', '10m');
  await load('b:latest', '5m');
  await load('a:latest', '10m');
  await load('c:latest', '10m');
  assert.deepEqual(await resident(), ['a:latest', 'c:latest']);
  assert.equal((await counters(emu)).totals.evictions, 1);

  // Equal keep_alive: the lower digest (Ollama compares model file paths) goes.
  const [lower, higher] = ['a:latest', 'c:latest'].sort((x, y) => (digest.get(x)! < digest.get(y)! ? -1 : 1));
  await load('d:latest', '10m');
  assert.deepEqual(await resident(), [higher!, 'd:latest'].sort());
  assert.equal((await counters(emu)).models[lower!]?.unloads, 1);

  // A busy runner is passed over for an idle one, even one with a longer keep_alive.
  const busy = new AbortController();
  hold(emu, higher!, busy, { keep_alive: '1m' });
  await until(async () => (await counters(emu)).models[higher!]?.inFlight === 1, `${higher} busy`);
  await load('b:latest', '10m');
  assert.deepEqual(await resident(), [higher!, 'b:latest'].sort());

  // None idle: the shortest keep_alive is picked and the load waits for its requests to finish.
  const busyB = new AbortController();
  hold(emu, 'b:latest', busyB, { keep_alive: '10m' });
  await until(async () => (await counters(emu)).models['b:latest']?.inFlight === 1, 'b busy');
  const waiting = load('d:latest', '10m');
  await until(async () => (await counters(emu)).totals.pending === 1, 'the load of d waiting for an eviction');
  assert.deepEqual(await resident(), [higher!, 'b:latest'].sort(), 'nothing unloaded while both are busy');
  busy.abort();
  assert.equal((await waiting).done_reason, 'load');
  assert.deepEqual(await resident(), ['b:latest', 'd:latest']);
  const c = await counters(emu);
  assert.equal(c.models[higher!]?.unloads, 1);
  assert.equal(c.totals.evictions, 4);
  busyB.abort();
});

test('keep_alive: set by the request, counted from the last request, 0 and forever', TIMEOUT, async (t) => {
  const clock = new FakeClock(Date.parse('2026-03-01T12:00:00Z'));
  const emu = await start(t, { clock, models: [MODEL, 'qwen3:0.6b', 'nomic-embed-text:latest'] });
  const at = (ms: number): string => new Date(clock.now() + ms).toISOString();

  await json(post(emu, '/api/generate', { model: MODEL, keep_alive: '10m' }));
  await until(async () => (await ps(emu)).length === 1, 'the model resident and idle');
  assert.equal((await ps(emu))[0]!.expires_at, at(600_000));
  clock.advance(599_000);
  assert.equal((await ps(emu)).length, 1);

  // Without keep_alive a request keeps the runner's (10m), not the 5m default; the timer restarts.
  await json(post(emu, '/api/generate', { model: MODEL, prompt: 'x', stream: false }));
  await until(async () => (await ps(emu))[0]?.expires_at === at(600_000), 'the timer restarted at 10m');
  clock.advance(600_000);
  await until(async () => (await ps(emu)).length === 0, 'the model to expire');
  assert.equal((await counters(emu)).models[MODEL]?.unloads, 1);

  // In use, it never expires; the timer starts when the last request ends.
  const busy = new AbortController();
  hold(emu, MODEL, busy, { keep_alive: '1m' });
  await until(async () => (await counters(emu)).models[MODEL]?.inFlight === 1, 'the model busy');
  clock.advance(3_600_000);
  assert.equal((await ps(emu)).length, 1);
  busy.abort();
  await until(async () => (await counters(emu)).models[MODEL]?.inFlight === 0, 'the request gone');
  await until(async () => (await ps(emu))[0]?.expires_at === at(60_000), 'expiry a minute after the last request');

  // Forever (negative, number or string) is Go's largest duration; 0 unloads once the request is done.
  await json(post(emu, '/api/generate', { model: 'qwen3:0.6b', keep_alive: -1 }));
  await json(post(emu, '/api/embed', { model: 'nomic-embed-text:latest', input: 'x', keep_alive: 0 }));
  await until(
    async () => (await counters(emu)).models['nomic-embed-text:latest']?.unloads === 1,
    'keep_alive 0 to unload after the request',
  );
  const listed = await ps(emu);
  assert.deepEqual(
    listed.map((m) => m.name),
    ['qwen3:0.6b', MODEL],
    'longest remaining first',
  );
  assert.equal(listed[0]!.expires_at, new Date(clock.now() + 9_223_372_036_854.775).toISOString());
  clock.advance(100 * 365 * 86_400_000);
  assert.deepEqual(
    (await ps(emu)).map((m) => m.name),
    ['qwen3:0.6b'],
  );
});

test('an empty prompt loads; with keep_alive 0 it unloads, after in-flight requests', TIMEOUT, async (t) => {
  const emu = await start(t, { numParallel: 1 });
  const ollama = new Ollama({ host: emu.url });
  const loaded = await ollama.generate({ model: MODEL, prompt: '' });
  assert.equal(loaded.done_reason, 'load');
  assert.equal((await counters(emu)).models[MODEL]?.loads, 1);
  await until(async () => (await ps(emu)).length === 1, 'the model resident');

  const busy = new AbortController();
  hold(emu, MODEL, busy);
  await until(async () => (await counters(emu)).models[MODEL]?.inFlight === 1, 'the model busy');
  const unload = await json(post(emu, '/api/generate', { model: MODEL, keep_alive: 0 }));
  assert.deepEqual(
    { done: unload.done, done_reason: unload.done_reason, response: unload.response },
    { done: true, done_reason: 'unload', response: '' },
  );
  assert.equal((await ps(emu)).length, 1, 'still resident while a request runs');
  busy.abort();
  await until(async () => (await ps(emu)).length === 0, 'the unload once the request is done');

  const chat = await json(post(emu, '/api/chat', { model: MODEL, messages: [], keep_alive: '0s' }));
  assert.equal(chat.done_reason, 'unload');
  const c = await counters(emu);
  assert.deepEqual(c.models[MODEL], { loaded: false, slots: 1, inFlight: 0, queued: 0, loads: 1, unloads: 1 });
  assert.equal(c.totals.evictions, 0);
  assert.deepEqual(emu.sched(), c, 'the in-process counters are the same');
});

test('/api/ps lists what is resident with the fields Ollama reports', TIMEOUT, async (t) => {
  const emu = await start(t, { models: [MODEL, 'qwen3:0.6b'] });
  assert.deepEqual(await ps(emu), []);
  await json(post(emu, '/api/generate', { model: MODEL, keep_alive: '1h' }));
  await until(async () => (await ps(emu)).length === 1, 'the model resident');
  const [m] = await ps(emu);
  const tags = (await (await fetch(`${emu.url}/api/tags`)).json()) as {
    models: Array<{ name: string; size: number; digest: string; details: unknown }>;
  };
  const tag = tags.models.find((x) => x.name === MODEL)!;
  assert.deepEqual(Object.keys(m!).sort(), [
    'context_length',
    'details',
    'digest',
    'expires_at',
    'model',
    'name',
    'size',
    'size_vram',
  ]);
  assert.deepEqual(
    { name: m!.name, model: m!.model, size: m!.size, size_vram: m!.size_vram, digest: m!.digest, details: m!.details },
    { name: MODEL, model: MODEL, size: tag.size, size_vram: tag.size, digest: tag.digest, details: tag.details },
  );
  assert.equal(m!.context_length, 4096);
  const left = new Date(m!.expires_at).getTime() - Date.now();
  assert.ok(left > 50 * 60_000 && left <= 3_600_000, `expires in about an hour (${left} ms)`);
});

test('the CLI takes the scheduling flags and refuses bad ones', TIMEOUT, async (t) => {
  const entry = fileURLToPath(new URL('../../testkit/ollama-emulator.ts', import.meta.url));
  const bad = spawn(process.execPath, [entry, '--max-loaded-models', '0'], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  bad.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const [code] = (await once(bad, 'exit')) as [number];
  assert.equal(code, 2);
  assert.match(stderr, /--max-loaded-models must be an integer of at least 1/);

  const child = spawn(
    process.execPath,
    [entry, '--num-parallel', '3', '--max-queue', '0', '--load-ms', '600000', '--keep-alive=-1'],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const [line] = (await once(createInterface({ input: child.stdout }), 'line')) as [string];
  const { url } = JSON.parse(line) as { url: string };
  const send = (prompt: string): Promise<Response> =>
    fetch(`${url}/api/generate`, { method: 'POST', body: JSON.stringify({ model: 'llama3.2', prompt }) });
  background(send('x'));
  const sched = async (): Promise<SchedCounters> =>
    (await (await fetch(`${url}/emulator/v1/sched`)).json()) as SchedCounters;
  await until(async () => (await sched()).totals.pending === 1, 'the load in progress');
  assert.equal((await send('y')).status, 503, '--max-queue 0 leaves room for the load only');
  assert.equal((await sched()).models[MODEL]?.slots, 3);
  child.kill('SIGTERM');
  await once(child, 'exit');
});
