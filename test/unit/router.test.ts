import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Upstream } from '../../src/protocol/messages.ts';
import { affineTarget, candidates, classify, modelOf, retryableStatus } from '../../src/proxy/route/router.ts';
import { parseModel, sameModel } from '../../src/proxy/route/model-name.ts';

function up(id: string, models: string[], over: Partial<Upstream> = {}): Upstream {
  return {
    id,
    url: `https://10.0.0.${id.length}:11435`,
    device: id,
    basePath: '',
    healthy: true,
    models,
    leader: false,
    load: 0,
    ...over,
  };
}

test("classify follows the API's retry-safety classes", () => {
  assert.equal(classify('GET', '/api/tags'), 'tags');
  assert.equal(classify('HEAD', '/api/tags'), 'tags');
  assert.equal(classify('GET', '/api/ps'), 'ps');
  assert.equal(classify('GET', '/v1/models'), 'models');
  for (const p of [
    '/api/generate',
    '/api/chat',
    '/api/embed',
    '/api/embeddings',
    '/api/show',
    '/v1/chat/completions',
    '/v1/embeddings',
  ]) {
    assert.equal(classify('POST', p), 'by-model', p);
  }
  for (const p of ['/api/pull', '/api/push', '/api/create', '/api/copy', '/api/delete', '/api/blobs/sha256:ab']) {
    assert.equal(classify(p === '/api/delete' ? 'DELETE' : 'POST', p), 'affine', p);
  }
  for (const [m, p] of [
    ['POST', '/api/me'],
    ['POST', '/api/signout'],
    ['DELETE', '/api/user/keys/c3NoLWVk'],
  ] as const) {
    assert.equal(classify(m, p), 'affine', `account request ${p} goes to one server`);
  }
  assert.equal(classify('GET', '/v1/models/llama3.2'), 'by-model', 'the model is in the path');
  assert.equal(classify('POST', '/v1/audio/transcriptions'), 'by-model', 'the model is a form field');
  assert.equal(classify('GET', '/api/version'), 'any');
  assert.equal(classify('GET', '/api/generate'), 'any', 'a GET to a POST route is not routed by model');
});

test('model names match as Ollama matches them: defaults, case, source suffixes', () => {
  assert.equal(parseModel('llama3.2').key, 'registry.ollama.ai/library/llama3.2:latest');
  assert.equal(parseModel('registry:5000/ns/m').key, 'registry:5000/ns/m:latest');
  for (const alias of [
    'Qwen3:8b',
    'library/qwen3:8b',
    'registry.ollama.ai/library/qwen3:8b',
    'https://registry.ollama.ai/library/QWEN3:8B',
    'qwen3:8b:local',
    ' qwen3:8b ',
  ]) {
    assert.ok(sameModel(alias, 'qwen3:8b'), alias);
  }
  assert.ok(sameModel('llama3.2', 'llama3.2:latest'));
  assert.ok(!sameModel('qwen3:8b', 'qwen3:4b'));
  assert.ok(!sameModel('other/qwen3:8b', 'qwen3:8b'), 'another namespace is another model');
  // The cloud copy is another model than the local one; its installed name ends in -cloud.
  assert.ok(sameModel('gpt-oss:120b:cloud', 'gpt-oss:120b-cloud'));
  assert.ok(sameModel('gpt-oss:120b-CLOUD', 'gpt-oss:120b:cloud'));
  assert.ok(!sameModel('gpt-oss:120b:cloud', 'gpt-oss:120b'));
  assert.equal(parseModel('gpt-oss:cloud').cloud, true);
  assert.equal(parseModel('gpt-oss:cloud').key, 'registry.ollama.ai/library/gpt-oss:latest');
  assert.equal(modelOf(Buffer.from('{"model":"a"}')), 'a');
  assert.equal(modelOf(Buffer.from('{"name":"b"}')), 'b');
  assert.equal(modelOf(Buffer.from('not json')), null);
});

test('candidates: only servers with the model, least busy first; any server when none has it', () => {
  const ups = [up('a', ['m:latest']), up('bb', ['m:latest', 'n:latest']), up('ccc', ['n:latest'])];
  const busy = new Map([['a', 3]]);
  assert.deepEqual(
    candidates(ups, 'm', busy).map((u) => u.id),
    ['bb', 'a'],
  );
  assert.deepEqual(
    candidates(ups, 'n:latest', new Map()).map((u) => u.id),
    ['bb', 'ccc'],
  );
  assert.deepEqual(
    candidates(ups, 'unknown', new Map()).map((u) => u.id),
    ['a', 'bb', 'ccc'],
  );
  assert.deepEqual(candidates([up('a', [], { healthy: false })], null, new Map()), []);
  assert.deepEqual(
    candidates([up('a', [], { load: 9 }), up('b', [], { load: 1 })], null, new Map()).map((u) => u.id),
    ['b', 'a'],
    'reported load breaks ties',
  );
  const idle = [up('a', []), up('b', []), up('c', [], { load: 5 })];
  assert.deepEqual(
    [0, 1, 2].map((turn) =>
      candidates(idle, null, new Map(), turn)
        .map((u) => u.id)
        .join(''),
    ),
    ['abc', 'bac', 'abc'],
    'equally idle servers take turns; a busier one stays last',
  );
});

test('affine requests go to the leader', () => {
  assert.equal(affineTarget([up('a', []), up('b', [], { leader: true })])?.id, 'b');
  assert.equal(affineTarget([up('b', []), up('a', [])])?.id, 'a');
  assert.equal(affineTarget([]), null);
});

test('retryable statuses', () => {
  assert.equal(retryableStatus(503, 'by-model'), true);
  assert.equal(retryableStatus(404, 'by-model'), true);
  assert.equal(retryableStatus(404, 'any'), false);
  assert.equal(retryableStatus(400, 'by-model'), false);
  assert.equal(retryableStatus(200, 'any'), false);
  assert.equal(retryableStatus(401, 'by-model'), false);
  assert.equal(retryableStatus(401, 'by-model', true), true, 'a cloud model moves past a server not signed in');
  assert.equal(retryableStatus(403, 'by-model', true), true, 'or one with cloud disabled');
});

test('candidates: a name as Ollama accepts it matches; a cloud model no server lists tries the leader first', () => {
  const ups = [up('a', ['qwen3:8b']), up('b', ['gpt-oss:20b-cloud']), up('c', [], { leader: true })];
  assert.deepEqual(
    candidates(ups, 'registry.ollama.ai/library/Qwen3:8b:local', new Map()).map((u) => u.id),
    ['a'],
  );
  assert.deepEqual(
    candidates(ups, 'gpt-oss:20b:cloud', new Map()).map((u) => u.id),
    ['b'],
  );
  assert.deepEqual(
    candidates(ups, 'kimi-k2:1t-cloud', new Map(), 1).map((u) => u.id),
    ['c', 'b', 'a'],
  );
});
