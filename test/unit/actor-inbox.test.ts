/**
 * The discovery and election threads decode the supervisor's messages with hand-written guards
 * (src/protocol/actor-inbox.ts) instead of zod; these tests hold them to the zod schemas' verdicts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encode } from '@msgpack/msgpack';
import { decodeForDiscovery, decodeForElection } from '../../src/protocol/actor-inbox.ts';
import { decoderFor, encodeMessage, ProtocolError } from '../../src/protocol/codec.ts';
import {
  SUPERVISOR_TO_DISCOVERY,
  SUPERVISOR_TO_ELECTION,
  type SelfInfo,
  type SupervisorToDiscovery,
  type SupervisorToElection,
} from '../../src/protocol/messages.ts';
import type { PeerInfo } from '../../src/protocol/lan.ts';
import { assertMutationsAlike, assertRefusedAlike } from '../helpers/schema-parity.ts';

/** The supervisor side's verdicts: the zod schema, limited to each thread's message types. */
const discoveryBySchema = decoderFor<SupervisorToDiscovery>(SUPERVISOR_TO_DISCOVERY);
const electionBySchema = decoderFor<SupervisorToElection>(SUPERVISOR_TO_ELECTION);

const SELF: SelfInfo = {
  id: 'AAAAAAA-BBBBBBB',
  boot: 'b00t',
  role: 'server',
  port: 11435,
  fp: 'ab:cd',
  load: { inFlight: 3, workers: 2 },
  models: '0123456789abcdef',
  term: 4,
  leader: 'AAAAAAA-BBBBBBB',
  draining: false,
};
const PEER: PeerInfo = {
  id: 'CCCCCCC',
  boot: 'b1',
  role: 'client',
  addr: '10.0.0.3',
  port: 0,
  fp: '',
  load: { inFlight: 0, workers: 8 },
  models: '',
  term: 0,
  leader: '',
  draining: false,
  lastSeen: 1_767_000_000_000.5,
};

const DISCOVERY_VALID: SupervisorToDiscovery[] = [
  { type: 'discovery.configure', self: SELF, announce: true },
  { type: 'discovery.configure', self: { ...SELF, role: 'client', port: 0, leader: '' }, announce: false },
  { type: 'discovery.configure', self: { ...SELF, draining: true }, announce: true },
  { type: 'discovery.stop' },
  { type: 'discovery.stats.request', id: 1 },
];

const ELECTION_VALID: SupervisorToElection[] = [
  { type: 'election.self', id: 'AAAAAAA', boot: 'b00t', role: 'server', healthy: true },
  { type: 'election.self', id: '', boot: '', role: 'client', healthy: false },
  { type: 'peer.seen', peer: PEER },
  {
    type: 'peer.seen',
    peer: { ...PEER, role: 'server', port: 11435, term: 9, leader: 'CCCCCCC', load: { inFlight: 1.5, workers: 1 } },
  },
  { type: 'peer.gone', id: 'CCCCCCC', reason: 'bye' },
  { type: 'peer.gone', id: 'CCCCCCC', reason: 'timeout' },
  { type: 'peer.clone', id: 'AAAAAAA', addr: '10.0.0.9', boot: 'other' },
];

test('every valid supervisor-to-discovery and -election message decodes as the schema decodes it', () => {
  for (const msg of DISCOVERY_VALID) {
    const bytes = encodeMessage(msg);
    assert.deepEqual(decodeForDiscovery(bytes), msg);
    assert.deepEqual(decodeForDiscovery(bytes), discoveryBySchema(bytes));
  }
  for (const msg of ELECTION_VALID) {
    const bytes = encodeMessage(msg);
    assert.deepEqual(decodeForElection(bytes), msg);
    assert.deepEqual(decodeForElection(bytes), electionBySchema(bytes));
  }
});

test('unknown keys are dropped, as the schema drops them', () => {
  const configure = encode({
    type: 'discovery.configure',
    extra: 1,
    announce: true,
    self: { ...SELF, secret: 'x', load: { ...SELF.load, more: 1 }, members: [{ evil: true }] },
  });
  assert.deepEqual(decodeForDiscovery(configure), discoveryBySchema(configure));
  assert.deepEqual(decodeForDiscovery(configure), { type: 'discovery.configure', self: SELF, announce: true });
  const peer = encode({ type: 'peer.seen', peer: { ...PEER, members: [] }, extra: 'x' });
  assert.deepEqual(decodeForElection(peer), electionBySchema(peer));
  assert.deepEqual(decodeForElection(peer), { type: 'peer.seen', peer: PEER });
});

test('malformed messages are refused naming the same field as the schema', () => {
  assertRefusedAlike(decodeForDiscovery, discoveryBySchema, [
    42,
    null,
    [1, 2],
    'text',
    {},
    new Date(0),
    { type: 'discovery.configure' },
    { type: 'discovery.configure', self: SELF },
    { type: 'discovery.configure', self: SELF, announce: 'yes' },
    { type: 'discovery.configure', self: new Date(0), announce: true },
    { type: 'discovery.configure', self: { ...SELF, role: 'leader' }, announce: true },
    { type: 'discovery.configure', self: { ...SELF, port: 11435.5 }, announce: true },
    { type: 'discovery.configure', self: { ...SELF, load: { inFlight: 1 } }, announce: true },
    { type: 'discovery.configure', self: { ...SELF, load: null, term: 'x' }, announce: true },
    { type: 'discovery.configure', self: { ...SELF, draining: 'yes' }, announce: true },
    { type: 'discovery.configure', self: { ...SELF, draining: undefined }, announce: true },
    { type: 'discovery.configure', self: { ...SELF, id: undefined, boot: 1 }, announce: 0 },
    { type: 'discovery.stats.request' },
    { type: 'discovery.stats.request', id: 2 ** 60 },
  ]);
  assertRefusedAlike(decodeForElection, electionBySchema, [
    42,
    null,
    {},
    { type: null },
    { type: 'election.self', id: 'a', boot: 'b', role: 'server' },
    { type: 'election.self', id: 'a', boot: 'b', role: 'both', healthy: true },
    { type: 'election.self', id: 1, boot: 2, role: 3, healthy: 4 },
    { type: 'peer.seen' },
    { type: 'peer.seen', peer: [] },
    { type: 'peer.seen', peer: { ...PEER, lastSeen: 'now' } },
    { type: 'peer.seen', peer: { ...PEER, addr: undefined } },
    { type: 'peer.seen', peer: { ...PEER, draining: 1 } },
    { type: 'peer.seen', peer: { ...PEER, load: { inFlight: Number.NaN, workers: 1 } } },
    { type: 'peer.gone', id: 'x', reason: 'crash' },
    { type: 'peer.gone', reason: 'bye' },
    { type: 'peer.clone', id: 'a', addr: '10.0.0.9' },
    { type: 'peer.clone', id: 'a', addr: 9, boot: 'b' },
    { type: 'peer.clone', addr: '10.0.0.9', boot: 'b' },
  ]);
});

test('a message of another direction or an unknown type is refused as unexpected, garbage as undecodable', () => {
  assert.throws(() => decodeForDiscovery(encodeMessage({ type: 'peer.gone', id: 'x', reason: 'bye' })), {
    name: 'ProtocolError',
    code: 'OLN_BAD_MESSAGE',
    reason: 'unexpected-type',
    detail: 'peer.gone',
  });
  assert.throws(() => decodeForElection(encodeMessage({ type: 'discovery.stop' })), {
    name: 'ProtocolError',
    code: 'OLN_BAD_MESSAGE',
    reason: 'unexpected-type',
    detail: 'discovery.stop',
  });
  assert.throws(
    () => decodeForElection(encode({ type: 'x'.repeat(1000) })),
    (err: Error) => err instanceof ProtocolError && err.message.length < 100,
  );
  assert.throws(() => decodeForDiscovery(encode({ type: 7 })), {
    name: 'ProtocolError',
    code: 'OLN_BAD_MESSAGE',
    reason: 'malformed',
    detail: 'type',
  });
  assert.throws(() => decodeForElection(new Uint8Array([0xc1])), {
    name: 'ProtocolError',
    code: 'OLN_BAD_MESSAGE',
    reason: 'undecodable',
  });
  assert.throws(() => decodeForDiscovery('hello'), {
    name: 'ProtocolError',
    code: 'OLN_BAD_MESSAGE',
    reason: 'not-bytes',
  });
});

test('mutated valid messages get the same verdict from both decoders', () => {
  assertMutationsAlike(decodeForDiscovery, discoveryBySchema, DISCOVERY_VALID, 2_000);
  assertMutationsAlike(decodeForElection, electionBySchema, ELECTION_VALID, 2_000);
});
