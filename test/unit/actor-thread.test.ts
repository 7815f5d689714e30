/**
 * ActorThread in-process: its threads are fake Workers (event emitters) and time a FakeClock, so the
 * restart rule (restart-policy.ts), the escalation of a coded error and the patience with a process
 * out of file descriptors are checked without a thread.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { ActorThread, type ActorWorker } from '../../src/actors/actor-thread.ts';
import { OllanaError } from '../../src/errors.ts';
import type { ElectionToSupervisor, SupervisorToElection } from '../../src/protocol/messages.ts';
import { encodeMessage } from '../../src/protocol/wire.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

class FakeWorker extends EventEmitter implements ActorWorker {
  readonly posted: unknown[] = [];
  terminated = false;

  postMessage(value: unknown): void {
    this.posted.push(value);
  }

  terminate(): Promise<number> {
    this.terminated = true;
    this.emit('exit', 1);
    return Promise.resolve(1);
  }
}

interface Line {
  level: string;
  msg: string;
}

function harness() {
  const clock = new FakeClock();
  const workers: FakeWorker[] = [];
  const lines: Line[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Line);
      done();
    },
  });
  let starts = 0;
  const actor = new ActorThread<ElectionToSupervisor, SupervisorToElection>({
    name: 'test',
    file: '/nowhere.js',
    workerData: null,
    accepts: ['election.view'],
    log: pino({ level: 'info', formatters: { level: (label) => ({ level: label }) } }, dest),
    onStart: () => {
      starts++;
    },
    clock,
    spawn: () => {
      const w = new FakeWorker();
      workers.push(w);
      return w;
    },
  });
  const fatal: OllanaError[] = [];
  actor.on('fatal', (err: OllanaError) => fatal.push(err));
  return { actor, clock, workers, lines, fatal, starts: () => starts, last: () => workers.at(-1)! };
}

/** Advances 100 ms at a time until a new thread starts; returns how long that took. */
function waitForRestart(h: ReturnType<typeof harness>, limitMs = 30_000): number {
  const before = h.workers.length;
  let waited = 0;
  while (h.workers.length === before && waited < limitMs) {
    h.clock.advance(100);
    waited += 100;
  }
  assert.equal(h.workers.length, before + 1, `restarted within ${limitMs} ms`);
  return waited;
}

test('a thread that keeps dying within 10 s of its start is restarted after 100, 200, 400, 800, 1600 ms, then given up on', () => {
  const h = harness();
  h.actor.start();
  assert.equal(h.starts(), 1);
  const delays: number[] = [];
  for (let i = 0; i < 5; i++) {
    h.last().emit('exit', 1);
    delays.push(waitForRestart(h));
  }
  assert.deepEqual(delays, [100, 200, 400, 800, 1600]);
  assert.equal(h.starts(), 6, 'each new thread gets its start messages');
  assert.equal(h.actor.restarts, 5);
  assert.equal(h.fatal.length, 0);
  h.last().emit('exit', 1);
  assert.equal(h.fatal.length, 1);
  assert.equal(h.fatal[0]!.code, 'OLN_WORKER_FAILED');
  assert.equal(h.fatal[0]!.message, 'the test actor keeps dying (exit 1); giving up');
  h.clock.advance(60_000);
  assert.equal(h.workers.length, 6, 'no restart after giving up');
});

test('a thread that ran 10 s had recovered: its death is restarted after 100 ms again', () => {
  const h = harness();
  h.actor.start();
  for (let i = 0; i < 4; i++) {
    h.last().emit('exit', 1);
    waitForRestart(h);
  }
  h.clock.advance(10_000);
  h.last().emit('exit', 1);
  assert.equal(waitForRestart(h), 100);
});

test('a thread that fails with a coded error is not restarted: its error is escalated at once', () => {
  const h = harness();
  h.actor.start();
  const coded = new OllanaError('OLN_PORT_IN_USE', 'discovery UDP port 0.0.0.0:11436 is in use');
  h.last().emit('error', coded.toData());
  h.last().emit('exit', 1);
  assert.equal(h.fatal.length, 1);
  assert.equal(h.fatal[0]!.code, 'OLN_PORT_IN_USE');
  h.clock.advance(60_000);
  assert.equal(h.workers.length, 1);
});

test('out of file descriptors: tried again every 5 s without end, said once, and said when it runs again', async () => {
  const h = harness();
  h.actor.start();
  for (let i = 0; i < 8; i++) {
    h.last().emit('error', Object.assign(new Error('open failed'), { code: 'EMFILE' }));
    h.last().emit('exit', 1);
    assert.equal(waitForRestart(h), 5_000);
  }
  assert.equal(h.fatal.length, 0, 'never given up on');
  assert.equal(h.lines.filter((l) => l.level === 'error' && /file descriptors/.test(l.msg)).length, 1);
  const got = new Promise((resolve) => h.actor.once('message', resolve));
  h.last().emit(
    'message',
    encodeMessage({ type: 'election.view', view: { term: 1, leader: '', servers: [], conflicts: [] } }),
  );
  assert.deepEqual(await got, { type: 'election.view', view: { term: 1, leader: '', servers: [], conflicts: [] } });
  assert.ok(
    h.lines.some(
      (l) => l.level === 'info' && l.msg === 'the test actor runs again: file descriptors are available again',
    ),
  );
});

test('stop() ends the thread and no death after it is restarted', async () => {
  const h = harness();
  h.actor.start();
  await h.actor.stop();
  assert.equal(h.last().terminated, true);
  h.clock.advance(60_000);
  assert.equal(h.workers.length, 1);
  assert.equal(h.fatal.length, 0);
});
