/**
 * Fair sharing of one Ollama between devices (issue #16): real `ollana serve` processes on loopback,
 * clients with device certificates of their own over mutual TLS, and the emulator's request log as
 * what reached "Ollama". Each request carries an `x-test-tag` header, which the relay passes on, so
 * the order in which requests reached the emulator is read from its log. Slots are held by long
 * generations and freed by aborting them, so every assertion is about counts and orders.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Pool, request } from 'undici';
import { pinnedConnector } from '../../src/net/tls.ts';
import type { NodeStatus } from '../../src/protocol/status.ts';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { makeIdentities, type TestIdentity } from '../helpers/lan-identities.ts';
import { freePort, removeHome, runCli, startOllana, tempHome, type Started } from '../helpers/ollana-process.ts';

const MODEL = 'llama3:latest';
const INFERENCE = new Set(['/api/generate', '/api/chat', '/v1/chat/completions']);

let emu: Emulator;
let ids: TestIdentity[];
const homes: string[] = [];
const servers: Started[] = [];
const clients: Pool[] = [];
/** Inference requests in flight at the emulator now, and the most seen at once. */
let inFlight = 0;
let maxInFlight = 0;

interface Node {
  readonly server: Started;
  readonly id: string;
}

/** A server node with its own data dir, allowing every test identity (weights as given). */
async function serverNode(args: string[], weights: Record<number, number> = {}, env: Record<string, string> = {}) {
  const home = tempHome('ollana-fair-');
  homes.push(home);
  const show = await runCli(['device', 'show', '--json'], { home });
  assert.equal(show.code, 0, show.stderr);
  const id = (JSON.parse(show.stdout) as { id: string }).id;
  for (const [i, who] of ids.entries()) {
    const w = weights[i];
    const r = await runCli(['device', 'allow', who.id, ...(w === undefined ? [] : ['--weight', String(w)])], { home });
    assert.equal(r.code, 0, r.stderr);
  }
  const server = await startOllana(
    // One slot per model, Ollama's default: the emulator has no limit of its own here, ollana's is tested.
    ['--mode', 'server', '--listen', `127.0.0.1:${await freePort()}`, '--ollama-url', emu.url, '--slots', '1', ...args],
    { home, env },
  );
  servers.push(server);
  return { server, id };
}

interface Sent {
  readonly tag: string;
  readonly done: Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>;
  abort(): void;
}

const dispatchers = new Map<string, Pool>();
function dispatcher(node: Node, who: TestIdentity): Pool {
  const key = `${node.server.port}/${who.id}`;
  let c = dispatchers.get(key);
  if (c === undefined) {
    c = new Pool(node.server.url, {
      connections: 32,
      pipelining: 1,
      connect: pinnedConnector({ self: who, expectedId: node.id, timeoutMs: 10_000 }),
    });
    dispatchers.set(key, c);
    clients.push(c);
  }
  return c;
}

/** One inference request as device `who`, tagged for the emulator's log. */
function send(node: Node, who: TestIdentity, tag: string, tokens = 2, path = '/api/generate'): Sent {
  const ac = new AbortController();
  const body =
    path === '/v1/chat/completions'
      ? { model: MODEL, messages: [{ role: 'user', content: tag }], emulator_tokens: tokens, stream: false }
      : { model: MODEL, prompt: tag, stream: false, options: { emulator_tokens: tokens } };
  const done = request(`${node.server.url}${path}`, {
    method: 'POST',
    dispatcher: dispatcher(node, who),
    headers: { 'content-type': 'application/json', 'x-test-tag': tag },
    body: JSON.stringify(body),
    signal: ac.signal,
  }).then(async (res) => ({ status: res.statusCode, headers: res.headers, body: await res.body.text() }));
  done.catch(() => undefined);
  return { tag, done, abort: () => ac.abort() };
}

/** Tags in the order their requests reached the emulator. */
function arrivals(): string[] {
  return emu.requests.map((r) => r.headers['x-test-tag']).filter((t): t is string => typeof t === 'string');
}

async function status(node: Node): Promise<NodeStatus> {
  const res = await request(`${node.server.url}/ollana/v1/status`, { dispatcher: dispatcher(node, ids[0]!) });
  return (await res.body.json()) as NodeStatus;
}

/** Polls every 50 ms until `check` holds; bounded in count and time. */
async function until(check: () => boolean | Promise<boolean>, what: string, limitMs = 30_000): Promise<void> {
  const t0 = Date.now();
  for (let i = 0; i < limitMs / 50 && Date.now() - t0 < limitMs; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`not within ${limitMs} ms: ${what}`);
}

async function queued(node: Node): Promise<Record<string, number>> {
  return (await status(node)).sched?.models.find((m) => m.model === MODEL)?.queued ?? {};
}

/** Starts a long generation that holds the model's one slot until aborted. */
async function holdSlot(node: Node, who: TestIdentity, tag: string): Promise<Sent> {
  const hold = send(node, who, tag, 100_000);
  await until(() => arrivals().includes(tag), `${tag} reached the emulator`);
  return hold;
}

before(async () => {
  emu = await startEmulator({ port: 0, tokenIntervalMs: 5, ttftMs: 0, models: [MODEL] });
  emu.events.on('request', (r: { url: string }) => {
    if (!INFERENCE.has(r.url)) return;
    inFlight += 1;
    maxInFlight = Math.max(maxInFlight, inFlight);
  });
  const down = (e: { url: string }): void => {
    if (INFERENCE.has(e.url)) inFlight -= 1;
  };
  emu.events.on('response', down);
  emu.events.on('aborted', down);
  ids = await makeIdentities(5);
});

after(async () => {
  for (const c of clients) await c.destroy().catch(() => undefined);
  for (const s of servers) await s.stop();
  await emu?.close();
  for (const h of homes) removeHome(h);
});

/**
 * A greedy device with a backlog and two interactive devices that ask after it: the interactive ones
 * reach Ollama right after the request holding the slot, before the rest of the backlog; never more
 * than the one slot is in flight at Ollama.
 */
async function greedyAndInteractive(node: Node, run: string): Promise<string[]> {
  const [greedy, alice, bob] = [ids[0]!, ids[1]!, ids[2]!];
  maxInFlight = 0;
  const hold = await holdSlot(node, greedy, `${run}-hold`);
  const backlog = [1, 2, 3, 4].map((i) => send(node, greedy, `${run}-g${i}`));
  await until(async () => (await queued(node))[greedy.id] === 4, 'the greedy backlog queued');
  const a = send(node, alice, `${run}-alice`);
  const b = send(node, bob, `${run}-bob`);
  await until(async () => {
    const q = await queued(node);
    return q[alice.id] === 1 && q[bob.id] === 1;
  }, 'the interactive requests queued');
  const snapshot = await status(node);
  const model = snapshot.sched!.models.find((m) => m.model === MODEL)!;
  assert.equal(model.slots, 1);
  assert.equal(model.inFlight, 1);
  assert.ok(snapshot.sched!.devices.find((d) => d.device === greedy.id)?.throttled);
  hold.abort();
  const results = await Promise.all([a, b, ...backlog].map((s) => s.done));
  for (const r of results) assert.equal(r.status, 200, r.body);
  for (const r of results) assert.match(String(r.headers['x-ollana-queue-wait-ms']), /^\d+$/);
  await until(() => inFlight === 0, 'the emulator idle');
  const order = arrivals().filter((t) => t.startsWith(`${run}-`) && t !== `${run}-hold`);
  assert.equal(maxInFlight, 1, 'one slot: never two requests at Ollama at once');
  return order;
}

test('--workers 4: interactive devices are served before a greedy backlog, one slot in flight at Ollama', async () => {
  const node = await serverNode(['--workers', '4', '--queue-depth', '8']);
  const order = await greedyAndInteractive(node, 'w4');
  assert.deepEqual(order.slice(0, 2).sort(), ['w4-alice', 'w4-bob'], order.join(' '));
  assert.equal(order.length, 6);
  await node.server.waitFor((l) => l.msg.includes(`device ${ids[0]!.id} is throttled`), 5_000, 'throttle logged');
});

test('--workers 1 gives the same order as --workers 4', async () => {
  const node = await serverNode(['--workers', '1', '--queue-depth', '8']);
  const order = await greedyAndInteractive(node, 'w1');
  assert.deepEqual(order.slice(0, 2).sort(), ['w1-alice', 'w1-bob'], order.join(' '));
  assert.equal(order.length, 6);
});

test('weights 2:1 (`device allow --weight 2`): two saturating devices get two and one grants per round', async () => {
  const node = await serverNode(['--workers', '4', '--queue-depth', '8'], { 3: 2 });
  const [heavy, light] = [ids[3]!, ids[4]!];
  const hold = await holdSlot(node, ids[0]!, 'wt-hold');
  const sent: Sent[] = [];
  for (let i = 0; i < 6; i++) sent.push(send(node, heavy, `wt-heavy${i}`), send(node, light, `wt-light${i}`));
  await until(async () => {
    const q = await queued(node);
    return q[heavy.id] === 6 && q[light.id] === 6;
  }, 'both backlogs queued');
  assert.equal((await status(node)).sched!.devices.find((d) => d.device === heavy.id)?.weight, 2);
  hold.abort();
  await Promise.all(sent.map((s) => s.done));
  const order = arrivals().filter((t) => t.startsWith('wt-') && t !== 'wt-hold');
  const first9 = order.slice(0, 9);
  assert.equal(first9.filter((t) => t.startsWith('wt-heavy')).length, 6, first9.join(' '));
  assert.equal(first9.filter((t) => t.startsWith('wt-light')).length, 3, first9.join(' '));
});

test('past the queue depth: 503 with Retry-After in the endpoint shape; aborted queued requests never reach Ollama', async () => {
  const node = await serverNode(['--workers', '2', '--queue-depth', '3']);
  const who = ids[1]!;
  const hold = await holdSlot(node, ids[0]!, 'qd-hold');
  const waiting = [1, 2, 3].map((i) => send(node, who, `qd-w${i}`));
  await until(async () => (await queued(node))[who.id] === 3, 'three queued');

  // `ollana status`, as people and scripts read it.
  const listen = ['--listen', `127.0.0.1:${node.server.port}`];
  const json = await runCli(['status', '--json', ...listen], { home: node.server.home });
  assert.equal(json.code, 0, json.stderr);
  const sched = (JSON.parse(json.stdout) as NodeStatus).sched!;
  const model = sched.models.find((m) => m.model === MODEL)!;
  assert.deepEqual([model.slots, model.inFlight, model.queued[who.id]], [1, 1, 3]);
  assert.equal(sched.devices.find((d) => d.device === who.id)?.waiting, 3);
  const human = await runCli(['status', ...listen], { home: node.server.home });
  assert.equal(human.code, 0, human.stderr);
  assert.match(human.stdout, new RegExp(`${MODEL}  1/1 in flight, 3 waiting`));
  assert.match(human.stdout, new RegExp(`device ${who.id}  weight 1  3 waiting.*THROTTLED`));

  const native = await send(node, who, 'qd-over-api').done;
  assert.equal(native.status, 503);
  assert.match(String(native.headers['retry-after']), /^[1-9]\d*$/);
  assert.equal(native.headers['x-ollana-error'], 'OLN_QUEUE_FULL');
  const nativeBody = JSON.parse(native.body) as { error: string };
  assert.match(nativeBody.error, /\[OLN_QUEUE_FULL\]$/);

  const openai = await send(node, who, 'qd-over-v1', 2, '/v1/chat/completions').done;
  assert.equal(openai.status, 503);
  const openaiBody = JSON.parse(openai.body) as { error: { message: string; type: string } };
  assert.match(openaiBody.error.message, /\[OLN_QUEUE_FULL\]$/);
  assert.equal(openaiBody.error.type, 'api_error');

  for (const w of waiting) w.abort();
  await until(async () => (await queued(node))[who.id] === undefined, 'the aborted requests left the queue');
  const after = send(node, ids[2]!, 'qd-after');
  await until(async () => (await queued(node))[ids[2]!.id] === 1, 'a later request queued');
  hold.abort();
  assert.equal((await after.done).status, 200);
  const seen = arrivals();
  for (const t of ['qd-w1', 'qd-w2', 'qd-w3', 'qd-over-api', 'qd-over-v1'])
    assert.ok(!seen.includes(t), `${t} reached Ollama`);
  const device = (await status(node)).sched!.devices.find((d) => d.device === who.id)!;
  assert.equal(device.refused, 2);
  assert.equal(device.waiting, 0);
});

test('a request that waits past --queue-timeout gets 503 OLN_QUEUE_TIMEOUT; a worker killed while requests wait gives its slot back', async () => {
  const node = await serverNode(['--workers', '1', '--queue-timeout', '1s'], {}, { OLLANA_DEBUG_HOOKS: '1' });
  await holdSlot(node, ids[0]!, 'to-hold');
  const late = await send(node, ids[1]!, 'to-late').done;
  assert.equal(late.status, 503);
  assert.equal(late.headers['x-ollana-error'], 'OLN_QUEUE_TIMEOUT');
  assert.match((JSON.parse(late.body) as { error: string }).error, /\[OLN_QUEUE_TIMEOUT\]$/);
  assert.ok(!arrivals().includes('to-late'));

  // The slot is held and a request waits when the only worker dies.
  const waiting = send(node, ids[1]!, 'to-waiting');
  await until(async () => (await queued(node))[ids[1]!.id] === 1, 'a request queued');
  await request(`${node.server.url}/ollana/v1/debug/crash`, { method: 'POST', dispatcher: dispatcher(node, ids[2]!) })
    .then((r) => r.body.dump())
    .catch(() => undefined);
  await assert.rejects(waiting.done);
  await node.server.waitFor((l) => l.msg.includes('proxy worker 0 restarted'), 20_000, 'the worker restarted');
  // Had the dead worker's slot not come back, this would wait and time out with 503.
  const next = await send(node, ids[2]!, 'to-next').done;
  assert.equal(next.status, 200, next.body);
  assert.equal(next.headers['x-ollana-queue-wait-ms'], undefined);
  const model = (await status(node)).sched!.models.find((m) => m.model === MODEL)!;
  assert.equal(model.inFlight, 0);
  assert.deepEqual(model.queued, {});
});
