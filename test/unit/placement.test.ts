/**
 * Where a client node sends a request for a model (route/placement.ts), which requests only unload
 * or manage a model (route/model-routes.ts), and how a server's loaded models are read
 * (actors/residency-poll.ts, on a FakeClock). The same behaviour end to end, with real nodes and
 * ollama-js: test/netns/residency.test.ts.
 */
import { normalizeModel } from '../../src/proxy/route/model-name.ts';
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PS_INTERVAL_MS, ResidencyPoll } from '../../src/actors/residency-poll.ts';
import type { Upstream } from '../../src/protocol/messages.ts';
import { isUnload, managedModel } from '../../src/proxy/route/model-routes.ts';
import { place } from '../../src/proxy/route/placement.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

function up(id: string, models: string[], loaded: string[] = [], over: Partial<Upstream> = {}): Upstream {
  return {
    id,
    url: `https://${id}:11435`,
    device: id,
    basePath: '',
    healthy: true,
    models,
    leader: false,
    load: 0,
    loaded,
    ...over,
  };
}

const inputs = (inFlight: Record<string, number> = {}, spillAfter = 2) => ({
  inFlight: new Map(Object.entries(inFlight)),
  loaded: (u: Upstream) => new Set((u.loaded ?? []).map(normalizeModel)),
  spillAfter,
});
const ids = (list: Upstream[]): string[] => list.map((u) => u.id);

test('a server with the model loaded wins; of several warm ones always the same, whatever the order', () => {
  const a = up('a', ['m:latest'], []);
  const b = up('b', ['m:latest'], ['m:latest']);
  const c = up('c', ['m:latest'], ['m:latest']);
  assert.notEqual(ids(place([a, b], 'm', inputs()))[0], 'a');
  assert.deepEqual(ids(place([a, b], 'm', inputs())), ['b', 'a']);
  const first = ids(place([a, b, c], 'm', inputs()))[0];
  for (const order of [
    [c, b, a],
    [b, a, c],
    [a, c, b],
  ])
    assert.equal(ids(place(order, 'm:latest', inputs()))[0], first, 'sticky');
  assert.equal(ids(place([a, b, c], 'm', inputs()))[2], 'a', 'the cold server last');
});

test('past --spill-after in flight the next warm server takes it, then a cold one; saturated ones stay last', () => {
  const a = up('a', ['m:latest'], ['m:latest']);
  const b = up('b', ['m:latest'], ['m:latest']);
  const c = up('c', ['m:latest'], []);
  const sticky = ids(place([a, b, c], 'm', inputs()))[0]!;
  const other = sticky === 'a' ? 'b' : 'a';
  assert.deepEqual(ids(place([a, b, c], 'm', inputs({ [sticky]: 1 }))), [sticky, other, 'c'], 'below the bound');
  assert.deepEqual(ids(place([a, b, c], 'm', inputs({ [sticky]: 2 }))), [other, 'c', sticky]);
  assert.deepEqual(ids(place([a, b, c], 'm', inputs({ a: 2, b: 3 }))), ['c', 'a', 'b']);
  assert.deepEqual(
    ids(place([a, b, c], 'm', inputs({ a: 3, b: 2, c: 2 }))),
    ['b', 'a', 'c'],
    'all full: warm, least busy',
  );
});

test('a cold load goes where the fewest models are loaded, then the least busy; only servers that list the model', () => {
  const a = up('a', ['m:latest', 'x:latest'], ['x:latest']);
  const b = up('b', ['m:latest', 'x:latest'], []);
  const n = up('n', ['x:latest'], []);
  assert.deepEqual(ids(place([a, b, n], 'm', inputs())), ['b', 'a']);
  const b2 = up('b', ['m:latest'], ['y:latest']);
  assert.deepEqual(ids(place([a, b2], 'm', inputs({ a: 1 }))), ['b', 'a']);
  assert.deepEqual(ids(place([a, b2], 'm', inputs({ b: 1 }))), ['a', 'b']);
  assert.deepEqual(ids(place([a, b, n], 'nowhere', inputs())).sort(), ['a', 'b', 'n'], 'listed nowhere: every server');
  assert.deepEqual(ids(place([up('a', ['m:latest'], ['m:latest'], { healthy: false }), b], 'm', inputs())), ['b']);
});

test('an unload is an empty prompt (or no messages) with keep_alive 0, as Ollama reads keep_alive', () => {
  const body = (o: unknown) => Buffer.from(JSON.stringify(o));
  assert.ok(isUnload('/api/generate', body({ model: 'm', keep_alive: 0 })));
  assert.ok(isUnload('/api/generate', body({ model: 'm', prompt: '', keep_alive: '0s' })));
  assert.ok(isUnload('/api/chat', body({ model: 'm', messages: [], keep_alive: '0' })));
  assert.ok(!isUnload('/api/generate', body({ model: 'm', prompt: 'hi', keep_alive: 0 })));
  assert.ok(!isUnload('/api/generate', body({ model: 'm', prompt: '' })));
  assert.ok(!isUnload('/api/generate', body({ model: 'm', keep_alive: '5m' })));
  assert.ok(!isUnload('/api/generate', body({ model: 'm', keep_alive: -1 })));
  assert.ok(!isUnload('/api/chat', body({ model: 'm', messages: [{ role: 'user', content: 'x' }], keep_alive: 0 })));
  assert.ok(!isUnload('/api/embed', body({ model: 'm', keep_alive: 0 })));
  assert.ok(!isUnload('/api/generate', Buffer.from('{not json')));
  assert.equal(managedModel('/api/copy', body({ source: 's', destination: 'd' })), 's');
  assert.equal(managedModel('/api/delete', body({ name: 'n' })), 'n');
  assert.equal(managedModel('/api/push', body({ model: 'p' })), 'p');
  assert.equal(managedModel('/api/pull', body({ model: 'p' })), null, 'pull stays on the leader');
});

test("a server's loaded models are read every second; an unchanged list tells nobody; failures back off", async () => {
  const clock = new FakeClock();
  const answers: (string[] | Error)[] = [
    ['b:latest', 'a:latest'],
    ['a:latest', 'b:latest'],
    new Error('refused'),
    ['a:latest'],
  ];
  const reads: number[] = [];
  let changes = 0;
  const t0 = clock.now();
  const poll = new ResidencyPoll(
    clock,
    async () => {
      reads.push(clock.now() - t0);
      const next = answers.shift() ?? [];
      if (next instanceof Error) throw next;
      return next;
    },
    () => changes++,
  );
  const settle = async () => {
    for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  };
  for (let i = 0; i < 60 && answers.length > 0; i++) {
    clock.advance(100);
    await settle();
  }
  poll.stop();
  // The first read at once; each next one an interval after the last ended (reads end within the
  // 100 ms step); after the failure, two intervals.
  assert.deepEqual(reads, [0, 100 + PS_INTERVAL_MS, 100 + 2 * PS_INTERVAL_MS, 100 + 4 * PS_INTERVAL_MS]);
  assert.equal(changes, 2, 'first list, then a:latest alone');
  assert.deepEqual(poll.loaded, ['a:latest']);
  const pending = clock.pending;
  clock.advance(10 * PS_INTERVAL_MS);
  await settle();
  assert.equal(reads.length, 4, 'stopped');
  assert.ok(pending <= 1);
});

test('/api/ps through a client node: the union, longest keep_alive left first as Ollama sorts, each entry with its server', async () => {
  const { aggregate } = await import('../../src/proxy/route/aggregate.ts');
  const at = (s: number) => new Date(Date.UTC(2026, 0, 1, 0, 0, s)).toISOString();
  const bodies: Record<string, unknown> = {
    a: {
      models: [
        { name: 'm1:latest', expires_at: at(10) },
        { name: 'm2:latest', expires_at: at(30) },
      ],
    },
    b: {
      models: [
        { name: 'm1:latest', expires_at: at(20) },
        { name: 'm3:latest', expires_at: at(10) },
      ],
    },
  };
  const pool = (u: Upstream) =>
    ({
      request: async () => ({ statusCode: 200, body: { json: async () => bodies[u.id] } }),
    }) as unknown as import('undici').Pool;
  const r = await aggregate('ps', [up('a', []), up('b', [])], pool);
  assert.deepEqual(
    (r.body.models as { name: string; server: string }[]).map((m) => `${m.name}@${m.server}`),
    ['m2:latest@a', 'm1:latest@b', 'm1:latest@a', 'm3:latest@b'],
  );
});
