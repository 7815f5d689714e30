/**
 * RefusalLog: the first refusal of a kind is logged at once, the rest of its window are counted into
 * one summary line, and the window restarts only while refusals keep coming.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import type { Logger } from '../../src/log.ts';
import { RefusalLog } from '../../src/proxy/listen/refusal-log.ts';

function sink(): { log: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
      done();
    },
  });
  const log: Logger = pino({ level: 'info', formatters: { level: (label) => ({ level: label }) } }, dest);
  return { log, lines };
}

const KINDS = {
  bad: { level: 'info', what: 'bad requests refused' },
  cap: { level: 'warn', what: 'connections refused' },
} as const;

/** pino writes through a stream: let it deliver before reading the lines. */
const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

test('first refusal logged at once, the rest of the window summed up in one line', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { log, lines } = sink();
  const refusals = new RefusalLog(log, KINDS, 10_000);
  for (let i = 0; i < 1000; i++) refusals.note('bad', { remote: `10.0.0.${i % 250}` }, 'refused a bad request');
  refusals.note('cap', { remote: '10.0.0.9' }, 'connection limit reached');
  await settle();
  assert.deepEqual(
    lines.map((l) => [l.level, l.refusal, l.msg]),
    [
      ['info', 'bad', 'refused a bad request'],
      ['warn', 'cap', 'connection limit reached'],
    ],
  );
  assert.equal(lines[0]!.remote, '10.0.0.0');

  t.mock.timers.tick(9_999);
  await settle();
  assert.equal(lines.length, 2, 'no summary before the window ends');
  t.mock.timers.tick(1);
  await settle();
  assert.equal(lines.length, 3, 'one summary for the kind that had more; none for the other');
  assert.equal(lines[2]!.msg, '999 more bad requests refused in the last 10 s');
  assert.equal(lines[2]!.count, 999);
  assert.deepEqual(lines[2]!.last, { remote: '10.0.0.249' });

  // The flood goes on: the next window sums it up too, and nothing is logged per refusal.
  for (let i = 0; i < 5; i++) refusals.note('bad', {}, 'refused a bad request');
  t.mock.timers.tick(10_000);
  await settle();
  assert.equal(lines.length, 4);
  assert.equal(lines[3]!.msg, '5 more bad requests refused in the last 10 s');

  // Quiet for a window: the window closes silently and the next refusal is logged at once.
  t.mock.timers.tick(10_000);
  await settle();
  assert.equal(lines.length, 4);
  refusals.note('bad', { remote: '10.0.0.7' }, 'refused a bad request');
  await settle();
  assert.equal(lines.length, 5);
  assert.equal(lines[4]!.msg, 'refused a bad request');
});

test('flush logs pending summaries and leaves no window open', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { log, lines } = sink();
  const refusals = new RefusalLog(log, KINDS, 10_000);
  refusals.note('cap', {}, 'connection limit reached');
  refusals.note('cap', {}, 'connection limit reached');
  refusals.flush();
  await settle();
  assert.deepEqual(
    lines.map((l) => l.msg),
    ['connection limit reached', '1 more connections refused in the last 10 s'],
  );
  t.mock.timers.tick(60_000);
  await settle();
  assert.equal(lines.length, 2);
  refusals.note('cap', {}, 'connection limit reached');
  await settle();
  assert.equal(lines.length, 3, 'a refusal after flush is logged at once');
});
