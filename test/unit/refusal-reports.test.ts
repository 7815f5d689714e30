/**
 * RefusalReports: which refused TLS clients a worker reports (and the supervisor logs and lists as
 * pending). Free certificates must not buy one host a log line, or a pending entry, per connection.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { RefusalReports } from '../../src/proxy/listen/refusal-reports.ts';

const SETTINGS = { idEveryMs: 5_000, sourceWindowMs: 60_000, perSource: 4, maxKeys: 64 };

test('400 fresh certificates from one host: 4 reported, the rest held back and summed up per source', () => {
  let now = 0;
  const r = new RefusalReports(SETTINGS, () => now);
  let reported = 0;
  for (let i = 0; i < 400; i++) {
    if (r.due(`FORGED-${i}`, '10.0.0.66')) reported += 1;
    now += 10;
  }
  assert.equal(reported, 4);
  // Another host's device is reported meanwhile: the flood does not use up its share.
  assert.equal(r.due('REAL-DEVICE', '10.0.0.7'), true);
  assert.deepEqual(r.summary(), [{ source: '10.0.0.66', count: 396, ids: 64 }]);
  assert.deepEqual(r.summary(), [], 'a summary is given once');
  // The next window reports four again.
  now += 60_000;
  assert.equal(r.due('FORGED-1000', '10.0.0.66'), true);
});

test('one id is reported once per idEveryMs, whichever source; no certificate counts by address', () => {
  let now = 0;
  const r = new RefusalReports(SETTINGS, () => now);
  assert.equal(r.due('DEV', '10.0.0.1'), true);
  assert.equal(r.due('DEV', '10.0.0.2'), false);
  assert.equal(r.due(null, '10.0.0.3'), true);
  assert.equal(r.due(null, '10.0.0.3'), false);
  now += 5_000;
  assert.equal(r.due('DEV', '10.0.0.1'), true);
  assert.deepEqual(r.summary(), [], 'repeats of one id are not a flood of identities');
});

test('the maps stay bounded however many sources and ids come', () => {
  let now = 0;
  const r = new RefusalReports(SETTINGS, () => now);
  for (let i = 0; i < 10_000; i++) {
    r.due(`ID-${i}`, `fd00::${i.toString(16)}`);
    now += 1;
  }
  const heap = process.memoryUsage().heapUsed;
  for (let i = 10_000; i < 20_000; i++) r.due(`ID-${i}`, `fd00::${i.toString(16)}`);
  assert.ok(process.memoryUsage().heapUsed - heap < 8 * 1024 * 1024);
  assert.ok(r.summary().length <= SETTINGS.maxKeys);
});
