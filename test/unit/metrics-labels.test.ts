/**
 * The pieces of the request metrics that decide label values and token counts: route families,
 * the cap on distinct values, and the token counts read from the tail of an answer however the
 * answer was cut into pieces.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LabelCap, OTHER, routeFamily } from '../../src/metrics/labels.ts';
import { TAIL_BYTES, UsageTail } from '../../src/metrics/usage-tail.ts';

test('route families by path, query ignored, unknown paths as other', () => {
  assert.equal(routeFamily('/api/generate'), 'generate');
  assert.equal(routeFamily('/api/chat?x=1'), 'chat');
  assert.equal(routeFamily('/v1/chat/completions'), 'openai_chat');
  assert.equal(routeFamily('/api/blobs/sha256:abc'), 'blobs');
  assert.equal(routeFamily('/v1/models/llama3.2'), 'models');
  assert.equal(routeFamily('/no/such/thing'), 'other');
});

test('a capped label passes its first values and turns later new ones into other', () => {
  const cap = new LabelCap(2);
  assert.equal(cap.value('a'), 'a');
  assert.equal(cap.value('b'), 'b');
  assert.equal(cap.value('c'), OTHER);
  assert.equal(cap.value('a'), 'a', 'a value seen before keeps its name');
  assert.equal(cap.value(null), '');
  assert.equal(new LabelCap(5).value('x'.repeat(500)).length, 128, 'long values are cut');
});

/** An answer fed in pieces of `size` bytes. */
function fed(answer: string, size: number): UsageTail {
  const tail = new UsageTail();
  const bytes = Buffer.from(answer);
  for (let i = 0; i < bytes.length; i += size) tail.add(bytes.subarray(i, i + size));
  return tail;
}

test('token counts from the final done object of a native stream, in pieces of any size', () => {
  const lines = Array.from({ length: 200 }, (_, i) => JSON.stringify({ response: `tok${i}`, done: false }));
  lines.push(
    JSON.stringify({
      done: true,
      context: Array.from({ length: 300 }, (_, i) => i),
      prompt_eval_count: 26,
      eval_count: 298,
    }),
  );
  const answer = `${lines.join('\n')}\n`;
  assert.ok(answer.length > 4 * TAIL_BYTES);
  for (const size of [1, 7, 100, TAIL_BYTES - 1, TAIL_BYTES, 5000])
    assert.deepEqual(fed(answer, size).usage(), { prompt: 26, generated: 298 }, `pieces of ${size}`);
});

test('token counts from the last usage of an OpenAI stream; none when the answer names none', () => {
  const zero = 'data: {"choices":[{"delta":{"content":"x"}}],"usage":{"prompt_tokens":0,"completion_tokens":0}}\n\n';
  const last = 'data: {"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":34,"total_tokens":46}}\n\n';
  assert.deepEqual(fed(`${zero.repeat(50)}${last}data: [DONE]\n\n`, 64).usage(), { prompt: 12, generated: 34 });
  assert.equal(fed('{"models":[]}', 4).usage(), null);
  assert.equal(new UsageTail().usage(), null);
});

test("the prom-client parts ollana requires by path are prom-client's own classes", async () => {
  const entry = await import('prom-client');
  const parts = await import('../../src/metrics/prom.ts');
  assert.equal(parts.Registry, entry.Registry);
  assert.equal(parts.Counter, entry.Counter);
  assert.equal(parts.Histogram, entry.Histogram);
  assert.equal(parts.mainThreadParts().Gauge, entry.Gauge);
  assert.equal(parts.mainThreadParts().AggregatorRegistry, entry.AggregatorRegistry);
});
