/**
 * The dashboard's numbers (src/dashboard/snapshot.ts): the totals read from a Prometheus text
 * exposition as prom-client writes it, and the rates between two readings.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rates, readTotals } from '../../src/dashboard/snapshot.ts';

const scrape = (requests: number, fbSum: number, fbCount: number, tokens: number): string =>
  [
    '# HELP ollana_requests_total Requests relayed.',
    '# TYPE ollana_requests_total counter',
    `ollana_requests_total{family="generate",model="llama3.2",outcome="2xx",device="AAAA-BBBB"} ${requests - 1}`,
    'ollana_requests_total{family="models",model="",outcome="2xx",device=""} 1',
    `ollana_request_first_byte_seconds_bucket{le="+Inf",family="generate",model="llama3.2"} ${fbCount}`,
    `ollana_request_first_byte_seconds_sum{family="generate",model="llama3.2"} ${fbSum}`,
    `ollana_request_first_byte_seconds_count{family="generate",model="llama3.2"} ${fbCount}`,
    `ollana_generated_tokens_total{family="generate",model="llama3.2",device="AAAA-BBBB"} ${tokens}`,
    'ollana_requests_totally_other 99',
    '',
  ].join('\n');

test('totals add up every series of a name, and per device', () => {
  const t = readTotals(scrape(11, 0.5, 10, 80), 1_000);
  assert.equal(t.requests, 11);
  assert.equal(t.firstByteSum, 0.5);
  assert.equal(t.firstByteCount, 10);
  assert.equal(t.generatedTokens, 80);
  assert.deepEqual(t.devices.get('AAAA-BBBB'), { requests: 10, tokens: 80 });
  assert.deepEqual(t.devices.get(''), { requests: 1, tokens: 0 });
});

test('rates are per second over the interval, the first-byte time a mean of the interval, and never below zero', () => {
  const a = readTotals(scrape(11, 0.5, 10, 80), 1_000);
  const b = readTotals(scrape(31, 1.5, 30, 240), 3_000);
  assert.deepEqual(rates(a, b), { t: 3_000, rps: 10, ttftS: 0.05, tps: 80 });
  // No first byte in the interval: no time to show, rather than a zero.
  assert.equal(rates(b, readTotals(scrape(31, 1.5, 30, 240), 4_000)).ttftS, null);
  // A node that restarted reads lower: rates show 0, not a negative spike.
  assert.deepEqual(rates(b, readTotals(scrape(2, 0.1, 1, 8), 5_000)), { t: 5_000, rps: 0, ttftS: null, tps: 0 });
});
