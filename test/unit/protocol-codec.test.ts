import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { encode } from '@msgpack/msgpack';
import { decodeMessage, encodeMessage, ProtocolError } from '../../src/protocol/codec.ts';
import type {
  DiscoveryStats,
  LatencySummary,
  Message,
  MessageType,
  SelfInfo,
  WorkerStats,
} from '../../src/protocol/messages.ts';
import type { PeerInfo } from '../../src/protocol/lan.ts';

const latency: LatencySummary = { count: 3, min: 1, max: 9.5, mean: 4.25, p50: 3, p90: 9, p99: 9.5, p999: 9.5 };
const stats: WorkerStats = {
  worker: 2,
  threadId: 7,
  requests: 10,
  inFlight: 1,
  completed: 9,
  clientAborts: 0,
  fastRequests: 8,
  handedToNode: 1,
  upstreamErrors: 1,
  bytesIn: 1234,
  bytesOut: 2 ** 40,
  statuses: { '2xx': 8, '5xx': 1 },
  ttfbMs: latency,
  durationMs: latency,
  rssBytes: 50_000_000,
  tlsHandshakes: 12,
  tlsResumed: 11,
};
const self: SelfInfo = {
  id: 'a'.repeat(64),
  boot: 'b00t',
  role: 'server',
  port: 11435,
  fp: '',
  load: { inFlight: 2, workers: 4 },
  models: 'sha256:0f',
  term: 3,
  leader: 'a'.repeat(64),
  draining: false,
};
const peer: PeerInfo = {
  id: 'c'.repeat(64),
  boot: 'x1',
  role: 'client',
  addr: 'fe80::1',
  port: 0,
  fp: 'AB:CD',
  load: { inFlight: 0, workers: 0 },
  models: '',
  term: 0,
  leader: '',
  draining: true,
  lastSeen: 1_700_000_000_123,
};
const discoveryStats: DiscoveryStats = {
  received: 10,
  sent: 4,
  sendErrors: 1,
  peers: 2,
  dropped: {
    magic: 1,
    version: 2,
    malformed: 3,
    oversize: 4,
    rateLimited: 5000,
    duplicate: 6,
    forged: 7,
    verifyLimited: 8,
    stale: 9,
    peerLimit: 10,
  },
};

/** One sample of every message type; the record's type makes a new message type a compile error here. */
const SAMPLES: { readonly [T in MessageType]: readonly Extract<Message, { type: T }>[] } = {
  'sched.grant': [{ type: 'sched.grant', ticket: 1, index: 17 }],
  'sched.refuse': [
    { type: 'sched.refuse', ticket: 2, code: 'OLN_QUEUE_FULL', retryAfterS: 1 },
    { type: 'sched.refuse', ticket: 3, code: 'OLN_QUEUE_TIMEOUT', retryAfterS: 120 },
  ],
  'sched.wait': [{ type: 'sched.wait', ticket: 4, index: 200, model: 'llama3:latest', device: 'local' }],
  'sched.cancel': [{ type: 'sched.cancel', ticket: 4 }],
  'sched.kick': [{ type: 'sched.kick', index: 0 }],
  'routes.update': [
    { type: 'routes.update', table: { version: 3, role: 'client', upstreams: [] } },
    {
      type: 'routes.update',
      table: {
        version: 4,
        role: 'server',
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
            leader: true,
            load: 0,
          },
        ],
      },
    },
  ],
  'log.level': [
    { type: 'log.level', level: 'trace' },
    { type: 'log.level', level: 'error' },
  ],
  'stats.request': [{ type: 'stats.request', id: 1 }],
  'proxy.drain': [{ type: 'proxy.drain', deadlineMs: 30_000 }],
  'status.reply': [
    {
      type: 'status.reply',
      id: 5,
      status: { role: 'server', workers: [1, 2], nested: { a: null, b: 'x' } },
      error: null,
    },
    {
      type: 'status.reply',
      id: 6,
      status: null,
      error: { code: 'OLN_INTERNAL', message: 'boom', details: { n: 1, ok: false, z: null } },
    },
    { type: 'status.reply', id: 7, status: null, error: { code: 'OLN_INTERNAL', message: 'no details' } },
  ],
  'proxy.ready': [{ type: 'proxy.ready', worker: 0, threadId: 12 }],
  'stats.report': [{ type: 'stats.report', id: 9, stats }],
  'status.request': [{ type: 'status.request', id: 2 }],
  'metrics.collect': [{ type: 'metrics.collect', id: 3 }],
  'metrics.reply': [
    { type: 'metrics.reply', id: 4, text: '# HELP x y\n', error: null },
    { type: 'metrics.reply', id: 5, text: null, error: { code: 'OLN_INTERNAL', message: 'no metrics' } },
  ],
  'metrics.report': [
    {
      type: 'metrics.report',
      id: 6,
      metrics: [{ name: 'ollana_requests_total', help: 'h', type: 'counter', values: [] }],
    },
  ],
  'metrics.request': [{ type: 'metrics.request', id: 7 }],
  'trust.update': [{ type: 'trust.update', trust: { trustLan: false, allowed: ['AAAAAAA-BBBBBBB'], disabled: [] } }],
  'trust.refused': [
    { type: 'trust.refused', id: 'AAAAAAA-BBBBBBB', name: 'lab-h2', addr: '10.0.0.2', verdict: 'unknown' },
    { type: 'trust.refused', id: '', name: '', addr: '::1', verdict: 'no-certificate' },
  ],
  'trust.refused-by': [{ type: 'trust.refused-by', server: 'CCCCCCC-DDDDDDD' }],
  'discovery.configure': [
    { type: 'discovery.configure', self, announce: true },
    { type: 'discovery.configure', self: { ...self, role: 'client', port: 0, leader: '' }, announce: false },
  ],
  'discovery.stop': [{ type: 'discovery.stop' }],
  'discovery.stats.request': [{ type: 'discovery.stats.request', id: 11 }],
  'discovery.ready': [
    {
      type: 'discovery.ready',
      port: 11436,
      group: '239.255.11.36',
      multicast: true,
      broadcast: false,
      interfaces: ['192.168.1.2', '10.0.0.5'],
    },
    { type: 'discovery.ready', port: 40000, group: '239.255.11.36', multicast: false, broadcast: true, interfaces: [] },
  ],
  'peer.seen': [
    { type: 'peer.seen', peer },
    { type: 'peer.seen', peer: { ...peer, role: 'server', addr: '10.1.2.3', port: 11435 } },
  ],
  'peer.gone': [
    { type: 'peer.gone', id: 'c1', reason: 'bye' },
    { type: 'peer.gone', id: 'c2', reason: 'timeout' },
  ],
  'peer.clone': [{ type: 'peer.clone', id: 'a'.repeat(64), addr: '192.168.1.20', boot: 'other' }],
  'discovery.stats.report': [{ type: 'discovery.stats.report', id: 11, stats: discoveryStats }],
  'discovery.stopped': [{ type: 'discovery.stopped' }],
  'election.self': [
    { type: 'election.self', id: 'a1', boot: 'b1', role: 'server', healthy: true },
    { type: 'election.self', id: 'a1', boot: 'b1', role: 'client', healthy: false },
  ],
  'election.view': [
    { type: 'election.view', view: { term: 0, leader: '', servers: [], conflicts: [] } },
    {
      type: 'election.view',
      view: {
        term: 7,
        leader: 'a1',
        servers: ['a1', 'a2'],
        conflicts: [
          {
            kind: 'duplicate-id',
            id: 'a2',
            detail: 'two boots',
            addrs: ['10.0.0.2', '10.0.0.3'],
            since: 1_700_000_000_000,
          },
          { kind: 'two-leaders', id: 'a3', detail: 'partition healed', addrs: [], since: 5 },
        ],
      },
    },
  ],
};

for (const [type, samples] of Object.entries(SAMPLES)) {
  test(`${type} survives encode/decode unchanged`, () => {
    for (const msg of samples) {
      const bytes = encodeMessage(msg);
      assert.ok(bytes instanceof Uint8Array);
      assert.deepEqual(decodeMessage(bytes), msg);
      assert.deepEqual(decodeMessage(Buffer.from(bytes)), msg); // a Buffer is a Uint8Array too
    }
  });
}

test('decode drops unknown keys rather than passing them on', () => {
  const bytes = encode({ type: 'stats.request', id: 3, extra: { evil: true } });
  assert.deepEqual(decodeMessage(bytes), { type: 'stats.request', id: 3 });
});

/** Asserts decodeMessage throws a ProtocolError (not any other exception) and returns its message. */
/** The refusal's reason and detail (the field, the type or what arrived), as one string. */
function protocolError(input: unknown): string {
  let caught: unknown;
  try {
    decodeMessage(input);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof ProtocolError, `expected a ProtocolError, got ${String(caught)}`);
  assert.equal(caught.name, 'ProtocolError');
  assert.equal(caught.code, 'OLN_BAD_MESSAGE');
  return caught.detail === null ? caught.reason : `${caught.reason} ${caught.detail}`;
}

test('a non-Uint8Array is a ProtocolError naming what arrived', () => {
  assert.equal(protocolError('hello'), 'not-bytes string');
  assert.equal(protocolError(undefined), 'not-bytes undefined');
  assert.equal(protocolError(null), 'not-bytes object');
  assert.equal(protocolError(42), 'not-bytes number');
  assert.equal(protocolError({ type: 'stats.request', id: 1 }), 'not-bytes object');
  assert.equal(protocolError(new ArrayBuffer(4)), 'not-bytes object');
  assert.equal(protocolError([0x80]), 'not-bytes object');
});

test('undecodable bytes are a ProtocolError', () => {
  assert.match(protocolError(new Uint8Array([])), /^undecodable$/);
  assert.match(protocolError(new Uint8Array([0xc1])), /^undecodable$/); // 0xc1 is never used
  const good = encodeMessage({ type: 'stats.report', id: 9, stats });
  for (const cut of [1, 2, 10, good.length - 1]) {
    assert.match(protocolError(good.subarray(0, cut)), /^undecodable$/, `truncated to ${cut}`);
  }
  const extra = new Uint8Array([...encodeMessage({ type: 'stats.request', id: 1 }), 0x01]);
  assert.match(protocolError(extra), /^undecodable$/);
});

test('well-formed msgpack of the wrong shape is a ProtocolError naming the path', () => {
  assert.match(protocolError(encode(42)), /^malformed /);
  assert.match(protocolError(encode(null)), /^malformed /);
  assert.match(protocolError(encode([1, 2])), /^malformed /);
  assert.match(protocolError(encode({})), /^malformed type$/);
  assert.match(protocolError(encode({ type: 'stats.request' })), /^malformed id$/);
  assert.match(protocolError(encode({ type: 'stats.request', id: 1.5 })), /^malformed id$/);
  assert.match(protocolError(encode({ type: 'stats.request', id: '1' })), /^malformed id$/);
  assert.match(protocolError(encode({ type: 'log.level', level: 'loud' })), /^malformed level$/);
  assert.match(
    protocolError(encode({ type: 'routes.update', table: { version: 1, role: 'client', upstreams: [{ id: 'x' }] } })),
    /^malformed table\.upstreams\.0\.url$/,
  );
  assert.match(
    protocolError(encode({ type: 'status.reply', id: 1, status: null, error: { code: 1, message: 'm' } })),
    /^malformed error\.code$/,
  );
  assert.match(protocolError(encode(new Date(0))), /^malformed /); // msgpack timestamp extension
});

test('an unknown message type is a ProtocolError', () => {
  assert.match(protocolError(encode({ type: 'peer.joined', id: 1 })), /^malformed type$/);
  assert.match(protocolError(encode({ type: '__proto__' })), /^malformed type$/);
});

test('random bytes only ever give a message or a ProtocolError', () => {
  let protocolErrors = 0;
  for (let i = 0; i < 2_000; i++) {
    const bytes = randomBytes(1 + (i % 64));
    try {
      decodeMessage(bytes);
    } catch (err) {
      assert.ok(err instanceof ProtocolError, `bytes ${bytes.toString('hex')} threw ${String(err)}`);
      protocolErrors++;
    }
  }
  assert.ok(protocolErrors > 1_900, `only ${protocolErrors} of 2000 random inputs were refused`);
});

test('deeply nested msgpack is a ProtocolError, not a stack overflow', () => {
  // 100k nested one-element arrays: 0x91 = fixarray(1).
  const bytes = new Uint8Array(100_001).fill(0x91);
  bytes[100_000] = 0xc0;
  protocolError(bytes);
});
