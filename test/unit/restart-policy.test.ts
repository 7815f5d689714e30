/**
 * The one restart rule of ollana's threads (src/actors/restart-policy.ts), on a fake clock: backoff
 * doubling from 100 ms to at most 5 s, the count wiped by a run of 10 s, and the give-up after five
 * retries of deaths within 10 s of a start.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RestartPolicy, RESTART_LIMITS } from '../../src/actors/restart-policy.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

test('deaths soon after a start back off 100, 200, 400, 800, 1600 ms; the sixth in a row gives up', () => {
  const clock = new FakeClock();
  const policy = new RestartPolicy(clock);
  const delays: number[] = [];
  for (let i = 0; i < 5; i++) {
    policy.started();
    clock.advance(50);
    const d = policy.died();
    assert.ok(d.restart, `death ${i + 1} is restarted`);
    delays.push(d.delayMs);
    clock.advance(d.delayMs);
  }
  assert.deepEqual(delays, [100, 200, 400, 800, 1600]);
  policy.started();
  clock.advance(9_999);
  assert.deepEqual(policy.died(), { restart: false, failures: 6 }, 'the sixth death within 10 s of its start gives up');
});

test('a thread that ran 10 s had recovered: its death starts the count afresh', () => {
  const clock = new FakeClock();
  const policy = new RestartPolicy(clock);
  for (let i = 0; i < 5; i++) {
    policy.started();
    const d = policy.died();
    assert.ok(d.restart);
  }
  assert.equal(policy.failures, 5);
  policy.started();
  clock.advance(RESTART_LIMITS.stableAfterMs);
  assert.deepEqual(policy.died(), { restart: true, delayMs: 100, failures: 1 });
});

test('the backoff never passes 5 s, and the pace for a thread starved of file descriptors is that maximum', () => {
  const clock = new FakeClock();
  const policy = new RestartPolicy(clock, { ...RESTART_LIMITS, maxRetries: 10 });
  const delays: number[] = [];
  for (let i = 0; i < 8; i++) {
    policy.started();
    const d = policy.died();
    assert.ok(d.restart);
    delays.push(d.delayMs);
  }
  assert.deepEqual(delays, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
  assert.equal(policy.starvedDelayMs, 5_000);
});
