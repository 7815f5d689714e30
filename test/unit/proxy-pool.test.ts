/**
 * ProxyPool in-process: its threads are a fake that plays each proxy worker over a real (in-process)
 * MessageChannel, and time is a FakeClock, so restarts, backoff, give-up, route pushes, stats and
 * drain are checked without a thread or a child process.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { ProxyPool, type ProxyThreads } from '../../src/actors/proxy-pool.ts';
import { Endpoint } from '../../src/actors/runtime.ts';
import type { OllanaError } from '../../src/errors.ts';
import { decodeForProxy } from '../../src/protocol/proxy-inbox.ts';
import type { ProxyToSupervisor, RouteTable, SupervisorToProxy, WorkerStats } from '../../src/protocol/messages.ts';
import type { ProxyTask, ProxyTaskResult, ProxyWorkerData } from '../../src/protocol/workers.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

/** One proxy worker's life, played by the test: it says ready, answers, ends or crashes. */
class FakeWorker {
  readonly task: ProxyTask;
  readonly received: SupervisorToProxy[] = [];
  readonly #endpoint: Endpoint<SupervisorToProxy, ProxyToSupervisor>;
  readonly #waiters: { type: string; resolve: (m: SupervisorToProxy) => void }[] = [];
  readonly life: Promise<ProxyTaskResult>;
  #settle!: { resolve: (r: ProxyTaskResult) => void; reject: (e: unknown) => void };

  constructor(task: ProxyTask) {
    this.task = task;
    this.life = new Promise((resolve, reject) => {
      this.#settle = { resolve, reject };
    });
    this.#endpoint = new Endpoint<SupervisorToProxy, ProxyToSupervisor>(
      task.port,
      decodeForProxy,
      (msg) => {
        this.received.push(msg);
        const i = this.#waiters.findIndex((w) => w.type === msg.type);
        if (i >= 0) this.#waiters.splice(i, 1)[0]!.resolve(msg);
      },
      (err) => assert.fail(`the pool sent a worker a bad message: ${err.message}`),
    );
  }

  /** The next message of `type` (one already received counts). */
  next<T extends SupervisorToProxy['type']>(type: T): Promise<Extract<SupervisorToProxy, { type: T }>> {
    const had = this.received.find((m) => m.type === type);
    if (had !== undefined) return Promise.resolve(had as Extract<SupervisorToProxy, { type: T }>);
    return new Promise((resolve) => this.#waiters.push({ type, resolve: resolve as (m: SupervisorToProxy) => void }));
  }

  ready(): void {
    this.#endpoint.send({ type: 'proxy.ready', worker: this.task.worker, threadId: 100 + this.task.worker });
  }

  report(id: number, stats: WorkerStats): void {
    this.#endpoint.send({ type: 'stats.report', id, stats });
  }

  /** The task ends (the worker drained) with `cut` requests cut. */
  end(cut = 0): void {
    this.#settle.resolve({ worker: this.task.worker, cut });
    this.#endpoint.close();
  }

  /** The thread dies: the task rejects. */
  crash(message = 'boom'): void {
    this.#settle.reject(new Error(message));
    this.#endpoint.close();
  }
}

class FakeThreads implements ProxyThreads {
  readonly workers: FakeWorker[] = [];
  destroyed = false;

  run(task: ProxyTask): Promise<unknown> {
    const worker = new FakeWorker(task);
    this.workers.push(worker);
    return worker.life;
  }

  on(): this {
    return this;
  }

  destroy(): Promise<void> {
    this.destroyed = true;
    return Promise.resolve();
  }

  /** The newest worker of slot `index`. */
  of(index: number): FakeWorker {
    const w = this.workers.findLast((x) => x.task.worker === index);
    assert.ok(w !== undefined, `no worker ran for slot ${index}`);
    return w;
  }

  runsOf(index: number): number {
    return this.workers.filter((x) => x.task.worker === index).length;
  }
}

// Read by the real worker thread; the pool itself reads only whether a scheduler runs (none: a client node's pool).
const WORKER_DATA = { proxy: { sched: null, trust: { weights: {} } } } as unknown as ProxyWorkerData;
const table = (version: number): RouteTable => ({ version, role: 'server', upstreams: [] });

/** Lets promise reactions and MessageChannel deliveries (macrotasks) that are already due run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

async function startedPool(
  t: TestContext,
  size: number,
): Promise<{ pool: ProxyPool; threads: FakeThreads; clock: FakeClock }> {
  const clock = new FakeClock();
  const threads = new FakeThreads();
  const pool = new ProxyPool(size, WORKER_DATA, table(1), pino({ level: 'silent' }), { clock, threads: () => threads });
  const started = pool.start();
  for (let i = 0; i < size; i++) threads.of(i).ready();
  await started;
  t.after(async () => {
    const stopping = pool.stop(0);
    for (const w of threads.workers) w.end();
    await stopping;
  });
  return { pool, threads, clock };
}

function stats(worker: number, inFlight: number, requests: number): WorkerStats {
  const latency = { count: 0, min: 0, max: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0 };
  return {
    worker,
    threadId: 100 + worker,
    requests,
    inFlight,
    completed: requests - inFlight,
    clientAborts: 0,
    upstreamErrors: 0,
    bytesIn: 0,
    bytesOut: 0,
    statuses: {},
    ttfbMs: latency,
    durationMs: latency,
    rssBytes: 0,
    tlsHandshakes: 0,
    tlsResumed: 0,
    fastRequests: 0,
    handedToNode: 0,
  };
}

test('a worker that dies is restarted after its backoff, not before, and gets the newest route table when ready', async (t) => {
  const { pool, threads, clock } = await startedPool(t, 2);
  assert.deepEqual((await threads.of(0).next('routes.update')).table, table(1), 'a ready worker is sent the routes');
  pool.setRoutes(table(2));
  assert.equal((await threads.of(1).next('routes.update')).table.version, 1);

  threads.of(0).crash();
  await settle();
  pool.setRoutes(table(3)); // while slot 0 is down
  clock.advance(99);
  assert.equal(threads.runsOf(0), 1, 'restarted before its 100 ms backoff');
  clock.advance(1);
  assert.equal(threads.runsOf(0), 2, 'not restarted at its backoff');
  assert.equal(threads.runsOf(1), 1, 'the other worker is left alone');
  const readyAgain = once(pool, 'worker-ready');
  threads.of(0).ready();
  assert.deepEqual(await readyAgain, [0]);
  assert.equal(
    (await threads.of(0).next('routes.update')).table.version,
    3,
    'the new worker gets the table set while it was down',
  );
  assert.equal(pool.restarts, 1);
});

test('a worker that keeps dying within 10 s of its start is given up on at the sixth death: fatal OLN_WORKER_FAILED', async (t) => {
  const { pool, threads, clock } = await startedPool(t, 1);
  const fatal: OllanaError[] = [];
  pool.on('fatal', (err: OllanaError) => fatal.push(err));
  threads.of(0).crash('first');
  await settle();
  const delays: number[] = [];
  for (let death = 2; death <= 6; death++) {
    const runs = threads.runsOf(0);
    let waited = 0;
    while (threads.runsOf(0) === runs && waited < 10_000) {
      clock.advance(100);
      waited += 100;
    }
    delays.push(waited);
    assert.equal(threads.runsOf(0), runs + 1, `restart ${death - 1} came`);
    threads.of(0).crash(`death ${death}`); // before it said ready
    await settle();
  }
  assert.deepEqual(delays, [100, 200, 400, 800, 1600]);
  assert.equal(fatal.length, 1, 'given up once');
  assert.equal(fatal[0]!.code, 'OLN_WORKER_FAILED');
  assert.match(fatal[0]!.message, /proxy worker 0 died: death 6/);
  clock.advance(60_000);
  assert.equal(threads.runsOf(0), 6, 'no restart after giving up');
});

test('a worker that ran 10 s before it died starts the count afresh: backoff 100 ms again', async (t) => {
  const { threads, clock } = await startedPool(t, 1);
  for (let i = 0; i < 3; i++) {
    threads.of(0).crash();
    await settle();
    clock.advance(5_000);
    threads.of(0).ready();
    await settle();
  }
  clock.advance(10_000);
  threads.of(0).crash();
  await settle();
  const runs = threads.runsOf(0);
  clock.advance(100);
  assert.equal(threads.runsOf(0), runs + 1);
});

test("inFlight and openConnections sum the workers' shared boards; a dead worker's share is cleared", async (t) => {
  const { pool, threads } = await startedPool(t, 3);
  const { loadBoard, connectionBoard } = threads.of(0).task;
  for (const [i, n] of [2, 5, 1].entries()) Atomics.store(loadBoard, i, n);
  for (const [i, n] of [10, 0, 7].entries()) Atomics.store(connectionBoard, i, n);
  assert.equal(pool.inFlight(), 8);
  assert.equal(pool.openConnections(), 17);
  threads.of(1).crash();
  await settle();
  assert.equal(pool.inFlight(), 3, "the dead worker's requests went with it");
  threads.of(2).crash();
  await settle();
  assert.equal(pool.openConnections(), 10, "the dead worker's connections went with it");
});

test("stats(): each ready worker's report; one that does not answer by the 1 s deadline is listed as not ready", async (t) => {
  const { pool, threads, clock } = await startedPool(t, 3);
  threads.of(2).crash();
  await settle();
  const gathering = pool.stats();
  const r0 = await threads.of(0).next('stats.request');
  await threads.of(1).next('stats.request');
  threads.of(0).report(r0.id, stats(0, 2, 40));
  await settle();
  clock.advance(999);
  await settle();
  let done = false;
  void gathering.then(() => {
    done = true;
  });
  await settle();
  assert.equal(done, false, 'gave up on worker 1 before its deadline');
  clock.advance(1);
  const reports = await gathering;
  assert.deepEqual(reports, [stats(0, 2, 40), { worker: 1, ready: false }, { worker: 2, ready: false }]);
});

test('stop(): ready workers are told to drain with the deadline; the cut requests they report are summed; the threads end', async () => {
  const clock = new FakeClock();
  const threads = new FakeThreads();
  const pool = new ProxyPool(2, WORKER_DATA, table(1), pino({ level: 'silent' }), { clock, threads: () => threads });
  const started = pool.start();
  threads.of(0).ready();
  threads.of(1).ready();
  await started;
  const stopping = pool.stop(2_000);
  assert.equal((await threads.of(0).next('proxy.drain')).deadlineMs, 2_000);
  assert.equal((await threads.of(1).next('proxy.drain')).deadlineMs, 2_000);
  threads.of(0).end(2);
  threads.of(1).end(1);
  assert.equal(await stopping, 3);
  assert.equal(pool.cut, 3);
  assert.equal(threads.destroyed, true);
});

test('stop(): a worker that does not finish its drain by deadline + 3 s is cut with its in-flight requests', async (t) => {
  const clock = new FakeClock();
  const threads = new FakeThreads();
  const pool = new ProxyPool(2, WORKER_DATA, table(1), pino({ level: 'silent' }), { clock, threads: () => threads });
  const started = pool.start();
  threads.of(0).ready();
  threads.of(1).ready();
  await started;
  Atomics.store(threads.of(1).task.loadBoard, 1, 4);
  t.after(() => threads.of(1).end()); // its thread, ended by destroy() in production
  const stopping = pool.stop(1_000);
  await threads.of(1).next('proxy.drain');
  threads.of(0).end(0);
  await settle();
  clock.advance(3_999);
  await settle();
  let done = false;
  void stopping.then(() => {
    done = true;
  });
  await settle();
  assert.equal(done, false, 'stopped before the drain deadline + 3 s');
  clock.advance(1);
  assert.equal(await stopping, 4, "the hung worker's 4 in-flight requests are cut");
  assert.equal(threads.destroyed, true);
});
