/**
 * The fair-share scheduler in-process: the DRR queue alone (orders and shares), and the workers'
 * gates with the owner over one shared board on a fake clock (slots across workers, grants in turn,
 * timeouts, aborts, a dead worker's slots).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import { DrrQueue, type Waiting } from '../../src/sched/drr.ts';
import { normalizeModel as sameModelKey } from '../../src/proxy/route/model-name.ts';
import { createBoard, inFlightOf, modelIndex, normalizeModel } from '../../src/sched/board.ts';
import { SchedGate, type Pass, type SchedRefusal } from '../../src/sched/gate.ts';
import { SchedOwner } from '../../src/sched/owner.ts';
import type { MessageOf } from '../../src/protocol/messages.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

let seq = 0;
const item = (device: string, now = 0, deadline = 1e12): Waiting => ({
  key: `k${++seq}`,
  device,
  since: now,
  deadline,
});

function drain(q: DrrQueue, n: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const w = q.next();
    if (w === null) break;
    out.push(w.device);
  }
  return out;
}

test('DRR: interactive devices that arrive behind a greedy backlog are served before the rest of it', () => {
  const q = new DrrQueue(100, () => 1);
  for (let i = 0; i < 20; i++) q.enqueue(item('greedy'));
  assert.equal(q.next()?.device, 'greedy');
  q.enqueue(item('alice'));
  q.enqueue(item('bob'));
  q.enqueue(item('carol'));
  const order = drain(q, 100);
  // Each interactive device waits for at most one greedy grant per device ahead of it.
  const firstThree = order.slice(0, 4).filter((d) => d !== 'greedy');
  assert.deepEqual(firstThree.sort(), ['alice', 'bob', 'carol']);
  assert.equal(order.length, 22);
  assert.equal(q.size, 0);
  assert.equal(q.next(), null);
});

test('DRR: saturating devices share grants equally (Jain 1.0), and 2:1 with weights 2 and 1', () => {
  const equal = new DrrQueue(1000, () => 1);
  for (const d of ['a', 'b', 'c']) for (let i = 0; i < 100; i++) equal.enqueue(item(d));
  const shares = count(drain(equal, 150));
  assert.deepEqual(shares, { a: 50, b: 50, c: 50 });

  const weighted = new DrrQueue(1000, (d) => (d === 'heavy' ? 2 : 1));
  for (const d of ['heavy', 'light']) for (let i = 0; i < 100; i++) weighted.enqueue(item(d));
  assert.deepEqual(count(drain(weighted, 90)), { heavy: 60, light: 30 });
});

test('DRR: a device past its depth is refused; removed requests are never served', () => {
  const q = new DrrQueue(2, () => 1);
  const a1 = item('a');
  assert.equal(q.enqueue(a1), 'queued');
  assert.equal(q.enqueue(item('a')), 'queued');
  assert.equal(q.enqueue(item('a')), 'full');
  assert.equal(q.enqueue(item('b', 5)), 'queued');
  assert.deepEqual(q.waitingByDevice(), { a: 2, b: 1 });
  assert.equal(q.remove(a1.key, 'a'), true);
  assert.equal(q.remove(a1.key, 'a'), false);
  assert.deepEqual(
    q.removeWhere((w) => w.device === 'b').map((w) => w.device),
    ['b'],
  );
  assert.deepEqual(drain(q, 10), ['a']);
});

function count(list: string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const d of list) out[d] = (out[d] ?? 0) + 1;
  return out;
}

test('board: model names resolve to one entry per name, with and without :latest', () => {
  const board = createBoard(2, 1);
  const a = modelIndex(board, normalizeModel('llama3'));
  assert.equal(modelIndex(board, normalizeModel('llama3:latest')), a);
  assert.notEqual(modelIndex(board, normalizeModel('qwen3:8b')), a);
  assert.equal(normalizeModel('hf.co/org/model'), 'hf.co/org/model:latest');
  assert.equal(normalizeModel('host:5000/org/model:q4'), 'host:5000/org/model:q4');
});

/** Two workers' gates and the owner over one board; messages are delivered when flush() runs. */
function node(slots: number, opts: { maxWaitMs?: number; queueDepth?: number } = {}) {
  const clock = new FakeClock();
  const board = createBoard(2, slots);
  const toOwner: [number, MessageOf<'sched.wait'> | MessageOf<'sched.cancel'> | MessageOf<'sched.kick'>][] = [];
  const toWorker: [number, MessageOf<'sched.grant'> | MessageOf<'sched.refuse'>][] = [];
  const logs: string[] = [];
  const log = pino({ level: 'info' }, { write: (line: string) => logs.push(JSON.parse(line).msg as string) });
  const owner = new SchedOwner(
    board,
    { slots, maxWaitMs: opts.maxWaitMs ?? 10_000, queueDepth: opts.queueDepth ?? 8 },
    clock,
    log,
    (w, msg) => toWorker.push([w, msg]),
  );
  const gates = [0, 1].map((w) => new SchedGate(board, w, 'SELF', (msg) => toOwner.push([w, msg])));
  const flush = (): void => {
    for (let i = 0; i < 100 && (toOwner.length > 0 || toWorker.length > 0); i++) {
      for (const [w, m] of toOwner.splice(0)) {
        if (m.type === 'sched.wait') owner.wait(w, m);
        else if (m.type === 'sched.cancel') owner.cancel(w, m.ticket);
        else owner.kick(m.index);
      }
      for (const [w, m] of toWorker.splice(0)) {
        if (m.type === 'sched.grant') gates[w]!.granted(m.ticket, m.index);
        else gates[w]!.refused(m.ticket, m.code, m.retryAfterS);
      }
    }
  };
  return { clock, board, owner, gates, flush, logs };
}

const idOf = (device: string): string => device;

interface Req {
  readonly pass: Pass | null;
  state: 'running' | 'waiting' | SchedRefusal;
}

function request(gate: SchedGate, device: string, url = '/api/chat', model = 'm'): Req {
  const pass = gate.admit({
    method: 'POST',
    url,
    body: Buffer.from(JSON.stringify({ model, messages: [] })),
    device,
  });
  const r: Req = { pass, state: 'running' };
  if (pass !== null && !pass.held) {
    r.state = 'waiting';
    pass.wait(
      () => {
        r.state = 'running';
      },
      (code) => {
        r.state = code;
      },
    );
  }
  return r;
}

test('gate: only inference requests with a model pass admission; the rest need no slot', () => {
  const { gates } = node(1);
  const g = gates[0]!;
  const body = Buffer.from('{"model":"m"}');
  const p = 'x';
  assert.equal(g.admit({ method: 'GET', url: '/api/tags', body: null, device: p }), null);
  assert.equal(g.admit({ method: 'POST', url: '/api/show', body, device: p }), null);
  assert.equal(g.admit({ method: 'POST', url: '/api/chat', body: Buffer.from('{"messages":[]}'), device: p }), null);
  for (const url of ['/api/generate', '/api/embed', '/v1/chat/completions?x=1', '/v1/responses', '/v1/messages']) {
    const pass = g.admit({ method: 'POST', url, body, device: p });
    assert.ok(pass?.held, url);
    pass.done();
  }
});

test('gate: names Ollama takes for one model share its slots (case, library/ and registry prefixes, :latest)', () => {
  const { gates } = node(1);
  const g = gates[0]!;
  const ask = (model: string) =>
    g.admit({ method: 'POST', url: '/api/chat', body: Buffer.from(JSON.stringify({ model })), device: 'x' });
  const first = ask('Qwen3:8b');
  assert.ok(first?.held);
  for (const alias of ['qwen3:8b', 'library/qwen3:8b', 'registry.ollama.ai/library/QWEN3:8b'])
    assert.equal(ask(alias)?.held, false, `${alias} waits for the one slot`);
  assert.equal(ask('qwen3:4b')?.held, true, 'another model has a slot of its own');
  first.done();
});

test('slots are shared by all workers; a full model queues per device and grants in turn as slots free', () => {
  const { gates, flush, board, owner } = node(1);
  const first = request(gates[0]!, 'greedy');
  assert.equal(first.state, 'running');
  // Worker 1 finds the model full although it holds no slot itself.
  const greedy = [1, 2, 3].map(() => request(gates[1]!, 'greedy'));
  flush();
  const alice = request(gates[0]!, 'alice');
  flush();
  assert.deepEqual(
    [...greedy, alice].map((r) => r.state),
    ['waiting', 'waiting', 'waiting', 'waiting'],
  );
  assert.equal(inFlightOf(board, modelIndex(board, sameModelKey('m'))), 1);
  const q = owner.snapshot().models[0]!;
  assert.deepEqual(q.queued, { [idOf('greedy')]: 3, [idOf('alice')]: 1 });

  first.pass!.done();
  flush();
  // Alice, who holds nothing, has her turn before the greedy backlog.
  assert.deepEqual(
    [...greedy, alice].map((r) => r.state),
    ['waiting', 'waiting', 'waiting', 'running'],
  );
  assert.ok(alice.pass!.waitedMs >= 0);
  alice.pass!.done();
  flush();
  assert.deepEqual(
    [...greedy, alice].map((r) => r.state),
    ['running', 'waiting', 'waiting', 'running'],
  );
  // A request that finds a free slot while others wait does not jump the queue.
  greedy[0]!.pass!.done();
  const late = request(gates[0]!, 'bob');
  flush();
  assert.equal(late.state, 'waiting');
  assert.deepEqual(
    [...greedy].map((r) => r.state),
    ['running', 'running', 'waiting'],
  );
  assert.equal(inFlightOf(board, modelIndex(board, sameModelKey('m'))), 1);
});

test('a queued request whose client leaves is never granted; one past its depth or its wait bound is refused', () => {
  const { gates, flush, clock, owner } = node(1, { maxWaitMs: 5_000, queueDepth: 2 });
  const running = request(gates[0]!, 'a');
  const gone = request(gates[1]!, 'b');
  const b2 = request(gates[1]!, 'b');
  const b3 = request(gates[1]!, 'b');
  flush();
  assert.equal(b3.state, 'OLN_QUEUE_FULL');
  gone.pass!.done();
  flush();
  assert.deepEqual(owner.snapshot().models[0]!.queued, { [idOf('b')]: 1 });
  clock.advance(5_250);
  flush();
  assert.equal(b2.state, 'OLN_QUEUE_TIMEOUT');
  assert.equal(gone.state, 'waiting');
  running.pass!.done();
  flush();
  assert.equal(gone.state, 'waiting', 'the request whose client left never got a slot');
  assert.equal(owner.snapshot().models[0]!.inFlight, 0);
  assert.deepEqual(
    owner.snapshot().devices.find((d) => d.device === idOf('b')),
    { device: idOf('b'), weight: 1, servedAfterWait: 0, waiting: 0, refused: 2, throttled: true },
  );
});

test("a dead worker's slots and waiting requests are given back; the others' requests get them", () => {
  const { gates, flush, owner, board, logs, clock } = node(2);
  request(gates[0]!, 'a');
  request(gates[0]!, 'a');
  request(gates[0]!, 'a');
  const waiting = request(gates[1]!, 'b');
  flush();
  assert.equal(waiting.state, 'waiting');
  owner.workerGone(0);
  flush();
  assert.equal(waiting.state, 'running');
  assert.equal(inFlightOf(board, modelIndex(board, sameModelKey('m'))), 1);
  assert.deepEqual(owner.snapshot().models[0]!.queued, {});
  assert.ok(logs.some((l) => l.includes(`device ${idOf('b')} is throttled`)));
  waiting.pass!.done();
  clock.advance(6_000);
  assert.ok(logs.some((l) => l.includes(`device ${idOf('b')} is no longer throttled`)));
});

test('weights reach the owner: a weight-2 device gets two grants per round', () => {
  const { gates, flush, owner } = node(1, { queueDepth: 20 });
  owner.setWeights({ [idOf('heavy')]: 2 });
  const hold = request(gates[0]!, 'x');
  const order: string[] = [];
  const passes: Pass[] = [];
  for (let i = 0; i < 6; i++) {
    for (const [device, w] of [
      ['heavy', 0],
      ['light', 1],
    ] as const) {
      const pass = gates[w].admit({
        method: 'POST',
        url: '/api/generate',
        body: Buffer.from('{"model":"m"}'),
        device,
      })!;
      passes.push(pass);
      pass.wait(
        () => order.push(device),
        () => assert.fail('refused'),
      );
    }
  }
  flush();
  hold.pass!.done();
  flush();
  // Each grant's request finishes at once, freeing the slot for the next.
  for (let i = 0; i < 9; i++) {
    passes.find((p) => p.held)!.done();
    flush();
  }
  assert.deepEqual(count(order.slice(0, 9)), { heavy: 6, light: 3 });
});
