/**
 * The bench runners' one option parser (bench/lib/cli.ts) and the load bench's options on it: where
 * a value comes from (flag > the runner's environment variable > default), what --ci changes, and
 * that a bad value is refused before anything starts, naming the flag or variable it came from.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { BenchUsageError, helpText, parseOptions, positive, type OptionSpec } from '../../bench/lib/cli.ts';
import { parseBenchArgs } from '../../bench/lib/options.ts';

test('a flag wins over BENCH_*, which wins over the default', () => {
  assert.equal(parseBenchArgs(['--rounds', '5'], { BENCH_ROUNDS: '4' }).options.rounds, 5);
  assert.equal(parseBenchArgs([], { BENCH_ROUNDS: '4' }).options.rounds, 4);
  assert.equal(parseBenchArgs([], {}).options.rounds, 3);
  // An empty variable counts as unset.
  assert.equal(parseBenchArgs([], { BENCH_ROUNDS: '' }).options.rounds, 3);
});

test('--ci swaps the defaults for the short ones, and a flag still wins over them', () => {
  const ci = parseBenchArgs(['--ci'], {}).options;
  assert.deepEqual(
    [ci.duration, ci.warmup, ci.scenarios, ci.systems, ci.concurrency],
    [2.5, 6, ['rate', 'streams'], ['direct', 'one-hop'], [32]],
  );
  assert.match(ci.out, /bench\/results\/[\dT-]+-ci$/);
  assert.equal(parseBenchArgs(['--ci', '--duration', '1'], {}).options.duration, 1);
  assert.equal(parseBenchArgs([], { BENCH_CI: '1' }).options.ci, true);
});

test('--no-pin and BENCH_PIN=0 both turn pinning off; any one-hop-b setting adds one-hop-b unless --systems is given', () => {
  assert.equal(parseBenchArgs(['--no-pin'], {}).options.pin, false);
  assert.equal(parseBenchArgs([], { BENCH_PIN: '0' }).options.pin, false);
  assert.equal(parseBenchArgs([], {}).options.pin, true);
  assert.ok(
    parseBenchArgs([], { BENCH_OLLANA_B_ARGS: '--upstream-connections 64' }).options.systems.includes('one-hop-b'),
  );
  assert.deepEqual(parseBenchArgs(['--systems', 'direct,one-hop'], { BENCH_OLLANA_B_ARGS: '--x' }).options.systems, [
    'direct',
    'one-hop',
  ]);
});

test('a bad value is a usage error that names where it came from', () => {
  assert.throws(
    () => parseBenchArgs(['--rounds', 'x'], {}),
    (e: unknown) => e instanceof BenchUsageError && /^--rounds must be a positive integer, got "x"$/.test(e.message),
  );
  assert.throws(
    () => parseBenchArgs([], { BENCH_ROUNDS: '0' }),
    /^BenchUsageError: BENCH_ROUNDS must be a positive integer, got "0"$/,
  );
  assert.throws(
    () => parseBenchArgs(['--scenarios', 'rate,nope'], {}),
    /--scenarios: unknown "nope"; choose from rate, streams/,
  );
  assert.throws(() => parseBenchArgs(['--bogus'], {}), BenchUsageError);
  assert.throws(() => parseBenchArgs(['--ci', '--systems', 'direct'], {}), /--systems must include one-hop/);
});

test('each runner reads only its own prefix, and its help lists the variables', () => {
  const specs = {
    rounds: {
      flag: 'rounds',
      arg: 'N',
      env: 'ROUNDS',
      help: 'rounds',
      parse: positive({ max: 50 }),
      fallback: () => 3,
    },
  } satisfies Record<string, OptionSpec<unknown>>;
  const env = { BENCH_ROUNDS: '9', BENCH_TWO_HOP_ROUNDS: '2' };
  assert.equal(parseOptions(specs, [], env, 'BENCH_TWO_HOP_').options.rounds, 2);
  assert.equal(parseOptions(specs, [], { BENCH_ROUNDS: '9' }, 'BENCH_TWO_HOP_').options.rounds, 3);
  assert.throws(
    () => parseOptions(specs, ['--rounds', '51'], {}, 'BENCH_TWO_HOP_'),
    /--rounds must be a positive integer up to 50/,
  );
  assert.match(helpText('Usage: x', specs, 'BENCH_TWO_HOP_'), /--rounds N {11}rounds \(BENCH_TWO_HOP_ROUNDS\)/);
});
