import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encode } from '@msgpack/msgpack';
import { decoderFor, encodeMessage, ProtocolError } from '../../src/protocol/codec.ts';
import { SUPERVISOR_TO_PROXY, type SupervisorToProxy } from '../../src/protocol/messages.ts';
import { decodeForProxy } from '../../src/protocol/proxy-inbox.ts';
import { assertMutationsAlike, assertRefusedAlike } from '../helpers/schema-parity.ts';

/** The supervisor side's verdict: the zod schema, limited to the proxy's message types. */
const bySchema = decoderFor<SupervisorToProxy>(SUPERVISOR_TO_PROXY);

const VALID: SupervisorToProxy[] = [
  { type: 'routes.update', table: { version: 0, role: 'server', upstreams: [] } },
  {
    type: 'routes.update',
    table: {
      version: 9,
      role: 'client',
      upstreams: [
        {
          id: 'local',
          url: 'http://127.0.0.1:11434',
          device: '',
          basePath: '',
          healthy: true,
          models: ['llama3:8b', 'qwen3'],
          leader: true,
          load: 0,
        },
        {
          id: 'peer-1',
          url: 'https://[fd00::1]:443',
          device: 'peer-1',
          basePath: '/ollama',
          healthy: false,
          models: [],
          leader: false,
          load: 2.5,
        },
      ],
    },
  },
  { type: 'log.level', level: 'trace' },
  { type: 'log.level', level: 'error' },
  { type: 'stats.request', id: 1 },
  { type: 'trust.update', trust: { trustLan: false, allowed: ['AAAAAAA-BBBBBBB'], disabled: [] } },
  { type: 'trust.update', trust: { trustLan: true, allowed: [], disabled: ['CCCCCCC'] } },
  { type: 'proxy.drain', deadlineMs: 0 },
  { type: 'proxy.drain', deadlineMs: 1500.5 },
  { type: 'status.reply', id: 5, status: { role: 'server', workers: [1, 2], nested: { a: null } }, error: null },
  {
    type: 'status.reply',
    id: 6,
    status: null,
    error: { code: 'OLN_INTERNAL', message: 'boom', details: { n: 1, ok: false, z: null, s: 'x' } },
  },
  { type: 'status.reply', id: 7, status: null, error: { code: 'OLN_INTERNAL', message: 'no details' } },
  { type: 'sched.grant', ticket: 9, index: 255 },
  { type: 'sched.refuse', ticket: 10, code: 'OLN_QUEUE_FULL', retryAfterS: 1 },
  { type: 'sched.refuse', ticket: 11, code: 'OLN_QUEUE_TIMEOUT', retryAfterS: 30 },
];

test('every valid supervisor-to-proxy message decodes as the schema decodes it', () => {
  for (const msg of VALID) {
    const bytes = encodeMessage(msg);
    assert.deepEqual(decodeForProxy(bytes), msg);
    assert.deepEqual(decodeForProxy(bytes), bySchema(bytes));
  }
});

test('unknown keys are dropped, as the schema drops them', () => {
  const bytes = encode({
    type: 'routes.update',
    extra: 1,
    table: {
      version: 1,
      role: 'server',
      evil: true,
      upstreams: [
        {
          id: 'a',
          url: 'http://x',
          device: 'd',
          basePath: '',
          healthy: true,
          models: [],
          leader: true,
          load: 0,
          more: 'x',
        },
      ],
    },
  });
  assert.deepEqual(decodeForProxy(bytes), bySchema(bytes));
  assert.deepEqual(decodeForProxy(bytes), {
    type: 'routes.update',
    table: {
      version: 1,
      role: 'server',
      upstreams: [
        { id: 'a', url: 'http://x', device: 'd', basePath: '', healthy: true, models: [], leader: true, load: 0 },
      ],
    },
  });
});

test('malformed messages are refused naming the same field as the schema', () => {
  const cases: unknown[] = [
    42,
    null,
    [1, 2],
    'text',
    {},
    { type: 'stats.request' },
    { type: 'stats.request', id: 1.5 },
    { type: 'stats.request', id: '1' },
    { type: 'stats.request', id: 2 ** 60 },
    { type: 'log.level', level: 'loud' },
    { type: 'log.level' },
    { type: 'proxy.drain', deadlineMs: 'soon' },
    { type: 'proxy.drain', deadlineMs: Number.POSITIVE_INFINITY },
    { type: 'routes.update' },
    { type: 'routes.update', table: [] },
    { type: 'routes.update', table: { version: 1, role: 'leader', upstreams: [] } },
    { type: 'routes.update', table: { version: 1.1, role: 'server', upstreams: [] } },
    { type: 'routes.update', table: { version: 1, role: 'client', upstreams: {} } },
    { type: 'routes.update', table: { version: 1, role: 'client', upstreams: [{ id: 'x' }] } },
    {
      type: 'routes.update',
      table: {
        version: 1,
        role: 'client',
        upstreams: [
          {
            id: 'a',
            url: 'http://x',
            device: 'a',
            basePath: '',
            healthy: true,
            models: ['m', 3],
            leader: true,
            load: 0,
          },
        ],
      },
    },
    {
      type: 'routes.update',
      table: {
        version: 1,
        role: 'client',
        upstreams: [
          { id: 'a', url: 'http://x', device: 'a', basePath: '', healthy: 'yes', models: [], leader: true, load: 0 },
        ],
      },
    },
    {
      type: 'routes.update',
      table: {
        version: 1,
        role: 'client',
        upstreams: [{ id: 'a', url: 'http://x', basePath: '', healthy: true, models: [], leader: true, load: 0 }],
      },
    },
    { type: 'trust.update' },
    { type: 'trust.update', trust: { trustLan: 'yes', allowed: [], disabled: [] } },
    { type: 'trust.update', trust: { trustLan: false, allowed: [1], disabled: [] } },
    { type: 'trust.update', trust: { trustLan: false, allowed: [] } },
    { type: 'status.reply', id: 1, status: null, error: { code: 1, message: 'm' } },
    { type: 'status.reply', id: 1, status: null, error: { code: 'C', message: 'm', details: { a: [1] } } },
    { type: 'status.reply', id: 1, status: [1], error: null },
    { type: 'status.reply', id: 1, status: new Date(0), error: null },
    { type: 'status.reply', id: 1, error: null },
    { type: 'status.reply', id: 1, status: null },
  ];
  assertRefusedAlike(decodeForProxy, bySchema, cases);
});

test('a message of another direction or an unknown type is refused as unexpected, garbage as undecodable', () => {
  assert.throws(() => decodeForProxy(encodeMessage({ type: 'proxy.ready', worker: 1, threadId: 2 })), {
    name: 'ProtocolError',
    code: 'OLN_BAD_MESSAGE',
    reason: 'unexpected-type',
    detail: 'proxy.ready',
  });
  assert.throws(
    () => decodeForProxy(encode({ type: 'x'.repeat(1000) })),
    (err: Error) => err instanceof ProtocolError && err.message.length < 100,
  );
  assert.throws(() => decodeForProxy(encode({ type: 7 })), {
    name: 'ProtocolError',
    code: 'OLN_BAD_MESSAGE',
    reason: 'malformed',
    detail: 'type',
  });
  assert.throws(() => decodeForProxy(new Uint8Array([0xc1])), {
    name: 'ProtocolError',
    code: 'OLN_BAD_MESSAGE',
    reason: 'undecodable',
  });
  assert.throws(() => decodeForProxy('hello'), {
    name: 'ProtocolError',
    code: 'OLN_BAD_MESSAGE',
    reason: 'not-bytes',
  });
});

test('mutated valid messages get the same verdict from both decoders', () => {
  assertMutationsAlike(decodeForProxy, bySchema, VALID, 2_000);
});
