import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FakeClock } from '../helpers/fake-clock.ts';

test('FakeClock runs timers in time order as time advances, intervals repeatedly, cleared ones never', () => {
  const clock = new FakeClock(1000);
  const seen: string[] = [];
  clock.setTimeout(() => seen.push(`b@${clock.now()}`), 20);
  clock.setTimeout(() => seen.push(`a@${clock.now()}`), 10);
  const gone = clock.setTimeout(() => seen.push('never'), 15);
  clock.clearTimeout(gone);
  const every = clock.setInterval(() => seen.push(`i@${clock.now()}`), 8);
  clock.advance(5);
  assert.deepEqual(seen, []);
  clock.advance(20);
  assert.deepEqual(seen, ['i@1008', 'a@1010', 'i@1016', 'b@1020', 'i@1024']);
  assert.equal(clock.now(), 1025);
  clock.clearInterval(every);
  clock.advance(100);
  assert.equal(seen.length, 5);
  assert.equal(clock.pending, 0);
});

test('FakeClock: a timer set by a running timer fires within the same advance when due', () => {
  const clock = new FakeClock(0);
  const seen: number[] = [];
  clock.setTimeout(() => {
    seen.push(clock.now());
    clock.setTimeout(() => seen.push(clock.now()), 5);
  }, 5);
  clock.advance(10);
  assert.deepEqual(seen, [5, 10]);
});
