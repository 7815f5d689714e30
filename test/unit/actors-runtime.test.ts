import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { encode } from '@msgpack/msgpack';
import { Endpoint, PendingReplies } from '../../src/actors/runtime.ts';
import { decoderFor, encodeMessage, ProtocolError } from '../../src/protocol/codec.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { decodeForProxy } from '../../src/protocol/proxy-inbox.ts';
import type { Message, ProxyToSupervisor, SupervisorToProxy } from '../../src/protocol/messages.ts';

interface Recorder {
  readonly events: ({ ok: Message } | { bad: ProtocolError })[];
  /** Resolves once `n` events (messages or bad reports) have arrived in total. */
  until(n: number): Promise<void>;
}

function recorder(): Recorder & { onMessage: (m: Message) => void; onBad: (e: ProtocolError) => void } {
  const events: ({ ok: Message } | { bad: ProtocolError })[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const check = (): void => {
    for (const w of [...waiters]) {
      if (events.length >= w.n) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  };
  return {
    events,
    until: (n) =>
      new Promise<void>((resolve) => {
        waiters.push({ n, resolve });
        check();
      }),
    onMessage: (m) => {
      events.push({ ok: m });
      check();
    },
    onBad: (e) => {
      events.push({ bad: e });
      check();
    },
  };
}

/**
 * A proxy-side endpoint, decoding as a proxy worker does (the hand-written guards of proxy-inbox.ts),
 * on one end of a real MessageChannel; the other end is returned raw.
 */
function proxySide(t: TestContext): {
  rec: ReturnType<typeof recorder>;
  endpoint: Endpoint<SupervisorToProxy, ProxyToSupervisor>;
  peer: MessagePort;
} {
  const { port1, port2 } = new MessageChannel();
  const rec = recorder();
  const endpoint = new Endpoint<SupervisorToProxy, ProxyToSupervisor>(port1, decodeForProxy, rec.onMessage, rec.onBad);
  t.after(() => {
    endpoint.close();
    port2.close();
  });
  return { rec, endpoint, peer: port2 };
}

test('Endpoint delivers accepted messages in order', async (t) => {
  const { rec, peer } = proxySide(t);
  const sent: SupervisorToProxy[] = [
    { type: 'log.level', level: 'debug' },
    { type: 'stats.request', id: 4 },
    {
      type: 'routes.update',
      table: {
        version: 1,
        role: 'client',
        upstreams: [
          {
            id: 'a',
            url: 'https://10.0.0.2:11435',
            device: 'a',
            basePath: '',
            healthy: true,
            models: ['m'],
            leader: true,
            load: 0,
          },
        ],
      },
    },
    { type: 'proxy.drain', deadlineMs: 1000 },
  ];
  for (const m of sent) peer.postMessage(encodeMessage(m));
  await rec.until(4);
  assert.deepEqual(
    rec.events,
    sent.map((ok) => ({ ok })),
  );
});

test('Endpoint reports garbage and unexpected messages through onBad and keeps working', async (t) => {
  const { rec, peer } = proxySide(t);
  peer.postMessage(new Uint8Array([0xc1])); // undecodable
  peer.postMessage('not bytes'); // not a buffer
  peer.postMessage(encode({ type: 'stats.request', id: 'x' })); // wrong shape
  peer.postMessage(encodeMessage({ type: 'proxy.ready', worker: 1, threadId: 2 })); // valid, wrong direction
  peer.postMessage(encodeMessage({ type: 'stats.request', id: 11 })); // still works
  await rec.until(5);
  const [a, b, c, d, e] = rec.events;
  assert.ok(a && 'bad' in a && a.bad instanceof ProtocolError);
  assert.equal(a.bad.reason, 'undecodable');
  assert.ok(b && 'bad' in b && b.bad instanceof ProtocolError);
  assert.equal(b.bad.reason, 'not-bytes');
  assert.ok(c && 'bad' in c && c.bad instanceof ProtocolError);
  assert.deepEqual([c.bad.reason, c.bad.detail], ['malformed', 'id']);
  assert.ok(d && 'bad' in d && d.bad instanceof ProtocolError);
  assert.deepEqual([d.bad.reason, d.bad.detail], ['unexpected-type', 'proxy.ready']);
  assert.deepEqual(e, { ok: { type: 'stats.request', id: 11 } });
});

test('Endpoint.send encodes for the peer, and two endpoints talk to each other', async (t) => {
  const { port1, port2 } = new MessageChannel();
  const proxyRec = recorder();
  const supRec = recorder();
  const proxy = new Endpoint<SupervisorToProxy, ProxyToSupervisor>(
    port1,
    decoderFor(['stats.request']),
    proxyRec.onMessage,
    proxyRec.onBad,
  );
  const supervisor = new Endpoint<ProxyToSupervisor, SupervisorToProxy>(
    port2,
    decoderFor(['proxy.ready', 'stats.report', 'status.request']),
    supRec.onMessage,
    supRec.onBad,
  );
  t.after(() => {
    proxy.close();
    supervisor.close();
  });

  proxy.send({ type: 'proxy.ready', worker: 3, threadId: 9 });
  supervisor.send({ type: 'stats.request', id: 1 });
  supervisor.send({ type: 'log.level', level: 'warn' }); // not accepted by this proxy endpoint
  await Promise.all([supRec.until(1), proxyRec.until(2)]);
  assert.deepEqual(supRec.events, [{ ok: { type: 'proxy.ready', worker: 3, threadId: 9 } }]);
  assert.deepEqual(proxyRec.events[0], { ok: { type: 'stats.request', id: 1 } });
  const second = proxyRec.events[1];
  assert.ok(second && 'bad' in second);
  assert.deepEqual([second.bad.reason, second.bad.detail], ['unexpected-type', 'log.level']);
});

test('Endpoint.send posts msgpack bytes, not the object', async (t) => {
  const { port1, port2 } = new MessageChannel();
  const endpoint = new Endpoint<SupervisorToProxy, ProxyToSupervisor>(
    port1,
    decoderFor([]),
    () => {},
    () => {},
  );
  t.after(() => {
    endpoint.close();
    port2.close();
  });
  const got = new Promise<unknown>((resolve) => port2.once('message', resolve));
  endpoint.send({ type: 'status.request', id: 8 });
  const raw = await got;
  assert.ok(raw instanceof Uint8Array);
  assert.deepEqual(raw, encodeMessage({ type: 'status.request', id: 8 }));
});

test('PendingReplies settles each request by its id', async () => {
  const pending = new PendingReplies<string>();
  const a = pending.open(60_000, 'a');
  const b = pending.open(60_000, 'b');
  assert.notEqual(a.id, b.id);
  assert.equal(pending.settle(b.id, 'B'), true);
  assert.equal(pending.settle(a.id, 'A'), true);
  assert.equal(await a.reply, 'A');
  assert.equal(await b.reply, 'B');
  assert.equal(pending.settle(a.id, 'again'), false, 'a second reply to the same id is ignored');
  assert.equal(pending.settle(9999, 'unknown'), false);
});

/** Lets already-queued promise reactions run (mocked timers do not affect the microtask queue). */
async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}

test('PendingReplies rejects at the deadline, not before, and ignores the late reply', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const pending = new PendingReplies<number>();
  const { id, reply } = pending.open(1_000, 'stats from worker 2');
  let outcome: { value: number } | { err: unknown } | null = null;
  reply.then(
    (value) => {
      outcome = { value };
    },
    (err: unknown) => {
      outcome = { err };
    },
  );

  t.mock.timers.tick(999);
  await flushMicrotasks();
  assert.equal(outcome, null, 'rejected before its deadline');

  t.mock.timers.tick(1);
  await flushMicrotasks();
  assert.ok(outcome !== null && 'err' in outcome, 'not rejected at its deadline');
  const err = (outcome as { err: unknown }).err;
  assert.ok(err instanceof Error);
  assert.equal(err.message, 'stats from worker 2 got no reply within 1000 ms');

  assert.equal(pending.settle(id, 42), false, 'a late reply must be ignored');
});

test('PendingReplies: a settled request never times out; deadlines are per request', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const pending = new PendingReplies<string>();
  const fast = pending.open(100, 'fast');
  const slow = pending.open(500, 'slow');
  const outcomes: string[] = [];
  fast.reply.then(
    (v) => outcomes.push(`fast:${v}`),
    (e: Error) => outcomes.push(`fast!${e.message}`),
  );
  slow.reply.then(
    (v) => outcomes.push(`slow:${v}`),
    (e: Error) => outcomes.push(`slow!${e.message}`),
  );

  assert.equal(pending.settle(slow.id, 'ok'), true);
  t.mock.timers.tick(100);
  await flushMicrotasks();
  t.mock.timers.tick(10_000);
  await flushMicrotasks();
  assert.deepEqual(outcomes, ['slow:ok', 'fast!fast got no reply within 100 ms']);
});

test('PendingReplies.rejectAll fails every waiting request once', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const pending = new PendingReplies<string>();
  const a = pending.open(1_000, 'a');
  const b = pending.open(1_000, 'b');
  const done = pending.open(1_000, 'done');
  pending.settle(done.id, 'yes');
  const stop = new Error('worker exited');
  pending.rejectAll(stop);
  await assert.rejects(a.reply, (err) => err === stop);
  await assert.rejects(b.reply, (err) => err === stop);
  assert.equal(await done.reply, 'yes');
  assert.equal(pending.settle(a.id, 'late'), false);
  t.mock.timers.tick(5_000); // cleared timers must not fire into settled promises
  await flushMicrotasks();
});

test('PendingReplies keeps its deadlines on the clock it is given', async () => {
  const clock = new FakeClock();
  const pending = new PendingReplies<string>(clock);
  const { reply } = pending.open(250, 'status of worker 1');
  let outcome: string | null = null;
  reply.then(
    (v) => {
      outcome = v;
    },
    (e: Error) => {
      outcome = e.message;
    },
  );
  clock.advance(249);
  await flushMicrotasks();
  assert.equal(outcome, null, 'rejected before its deadline on the injected clock');
  clock.advance(1);
  await flushMicrotasks();
  assert.equal(outcome, 'status of worker 1 got no reply within 250 ms');
  assert.equal(clock.pending, 0);
});
