/**
 * ModelScan finds the model of a JSON body as it streams in, agreeing with modelOf (router.ts),
 * which parses a whole body, however the body is split, and without holding more than its bound.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ModelScan } from '../../src/proxy/route/model-scan.ts';
import { modelOf } from '../../src/proxy/route/router.ts';

function scan(body: Buffer, cuts: number[], limit = 1 << 20): { model: string | null; result: string } {
  const s = new ModelScan(limit);
  let result = 'more';
  let from = 0;
  for (const to of [...cuts, body.length]) {
    result = s.feed(body.subarray(from, to));
    from = to;
    if (result !== 'more') break;
  }
  return { model: s.model, result };
}

const BODIES = [
  '{"model":"llama3.2","prompt":"hi"}',
  '{"prompt":"hi","model":"llama3.2"}',
  ' {\n "messages": [{"role":"user","content":"a \\"model\\": \\"x\\"","images":["AAAA"]}],\n "model" : "qwen2.5:7b" }',
  '{"options":{"model":"nested-not-this"},"stream":false,"n":1.5e3,"t":true,"z":null,"model":"m1"}',
  '{"name":"llama3.2"}',
  '{"name":"n1","model":"m2"}',
  '{"model":"","name":"n2"}',
  '{"model":42,"name":"n3"}',
  '{"model":"caf\\u00e9/\\"q\\""}',
  '{"model":"ünïcödé"}',
  '{"prompt":"no model here"}',
  '[{"model":"array"}]',
  '"model"',
  '{}',
  '{"model":["x"],"name":"n4"}',
];

test('the model found agrees with modelOf, at every split of the body', () => {
  for (const text of BODIES) {
    const body = Buffer.from(text);
    const want = modelOf(body);
    for (let a = 0; a <= body.length; a++) {
      for (let b = a; b <= body.length; b += 5) {
        assert.equal(scan(body, [a, b]).model, want, `${text} cut at ${a}, ${b}`);
      }
    }
  }
});

test('it stops as soon as `model` is read, and gives up at its bound', () => {
  const image = 'A'.repeat(5_000_000);
  const first = Buffer.from(`{"model":"llama3.2","messages":[{"images":["${image}"]}]}`);
  const s = new ModelScan(1 << 20);
  assert.equal(s.feed(first.subarray(0, 30)), 'found');
  assert.equal(s.model, 'llama3.2');
  const last = Buffer.from(`{"messages":[{"images":["${image}"]}],"model":"llama3.2"}`);
  const bounded = scan(last, [65_536, 131_072], 1 << 20);
  assert.deepEqual(bounded, { model: null, result: 'stop' }, 'past the bound the model is not known');
  assert.deepEqual(
    scan(last, [65_536], 8 << 20),
    { model: 'llama3.2', result: 'found' },
    'within a larger bound it is',
  );
});
