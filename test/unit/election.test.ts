import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { ElectionActor } from '../../src/actors/election.ts';
import type { PeerInfo } from '../../src/protocol/lan.ts';
import type { ElectionToSupervisor } from '../../src/protocol/messages.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

function harness() {
  const clock = new FakeClock(1_000_000);
  const views: ElectionToSupervisor['view'][] = [];
  const actor = new ElectionActor({
    send: (m) => views.push(m.view),
    clock,
    log: pino({ level: 'silent' }),
    conflictTtlMs: 30_000,
  });
  return { actor, views, advance: (ms: number) => clock.advance(ms), last: () => views.at(-1)! };
}

function peer(id: string, over: Partial<PeerInfo> = {}): PeerInfo {
  return {
    id,
    boot: `boot-${id}`,
    role: 'server',
    addr: `10.0.0.${id.charCodeAt(0) % 200}`,
    port: 11435,
    fp: '',
    load: { inFlight: 0, workers: 2 },
    models: 'd',
    term: 0,
    leader: '',
    draining: false,
    lastSeen: 0,
    ...over,
  };
}

test('the lowest healthy server id leads, and a leader change starts a new term', () => {
  const h = harness();
  h.actor.handle({ type: 'election.self', id: 'm', boot: 'b', role: 'server', healthy: true });
  assert.equal(h.last().leader, 'm');
  const t1 = h.last().term;
  h.actor.handle({ type: 'peer.seen', peer: peer('c') });
  assert.equal(h.last().leader, 'c');
  assert.ok(h.last().term > t1);
  assert.deepEqual(h.last().servers, ['c', 'm']);
  h.actor.handle({ type: 'peer.gone', id: 'c', reason: 'timeout' });
  assert.equal(h.last().leader, 'm', 'the next in order takes over when the leader goes');
});

test('a server whose Ollama is down is not a member; client nodes never are', () => {
  const h = harness();
  h.actor.handle({ type: 'election.self', id: 'a', boot: 'b', role: 'server', healthy: false });
  h.actor.handle({ type: 'peer.seen', peer: peer('z', { role: 'client', port: 0 }) });
  assert.equal(h.last().leader, '');
  assert.deepEqual(h.last().servers, []);
  h.actor.handle({ type: 'election.self', id: 'a', boot: 'b', role: 'server', healthy: true });
  assert.equal(h.last().leader, 'a');
});

test('terms converge on the highest seen', () => {
  const h = harness();
  h.actor.handle({ type: 'election.self', id: 'x', boot: 'b', role: 'client', healthy: false });
  h.actor.handle({ type: 'peer.seen', peer: peer('a', { term: 41, leader: 'a' }) });
  assert.equal(h.last().leader, 'a');
  assert.ok(h.last().term >= 41);
});

test('one id heard from two processes alternately is a duplicate-id conflict; a restart is not', () => {
  const h = harness();
  h.actor.handle({ type: 'election.self', id: 'x', boot: 'b', role: 'client', healthy: false });
  h.actor.handle({ type: 'peer.seen', peer: peer('a', { boot: 'one', addr: '10.0.0.1' }) });
  h.advance(1000);
  h.actor.handle({ type: 'peer.seen', peer: peer('a', { boot: 'two', addr: '10.0.0.1' }) });
  assert.equal(h.last().conflicts.length, 0, 'a new boot alone is a restart');
  h.advance(1000);
  h.actor.handle({ type: 'peer.seen', peer: peer('a', { boot: 'one', addr: '10.0.0.9' }) });
  const c = h.last().conflicts;
  assert.equal(c.length, 1);
  assert.equal(c[0]!.kind, 'duplicate-id');
  assert.equal(c[0]!.id, 'a');
  assert.match(c[0]!.detail, /same id a/);
  h.advance(31_000);
  h.actor.tick();
  assert.equal(h.last().conflicts.length, 0, 'a conflict not seen again expires');
});

test('a clone of this node is reported', () => {
  const h = harness();
  h.actor.handle({ type: 'election.self', id: 'me', boot: 'b', role: 'server', healthy: true });
  h.actor.handle({ type: 'peer.clone', id: 'me', addr: '10.0.0.7', boot: 'other' });
  assert.equal(h.last().conflicts[0]?.kind, 'duplicate-id');
  assert.deepEqual(h.last().conflicts[0]?.addrs, ['self', '10.0.0.7']);
});

test('a clone of a peer that discovery reports is a duplicate-id conflict naming both addresses', () => {
  const h = harness();
  h.actor.handle({ type: 'peer.seen', peer: peer('B', { addr: '10.0.0.2' }) });
  h.actor.handle({ type: 'peer.clone', id: 'B', addr: '10.0.0.3', boot: 'other' });
  const c = h.last().conflicts[0];
  assert.deepEqual([c?.kind, c?.id, c?.addrs], ['duplicate-id', 'B', ['10.0.0.2', '10.0.0.3']]);
  assert.match(c?.detail ?? '', /same id B/);
});

test('two leaders after a partition heals: reported, and the lower id stays leader', () => {
  const h = harness();
  h.actor.handle({ type: 'election.self', id: 'b', boot: 'x', role: 'server', healthy: true });
  h.actor.handle({ type: 'peer.seen', peer: peer('a', { leader: 'a', term: 3 }) });
  assert.equal(h.last().leader, 'a');
  // The partition: a is gone; b leads alone.
  h.actor.handle({ type: 'peer.gone', id: 'a', reason: 'timeout' });
  assert.equal(h.last().leader, 'b');
  // It heals: the same a (same boot) is back, still claiming leadership.
  h.actor.handle({ type: 'peer.seen', peer: peer('a', { leader: 'a', term: 3 }) });
  assert.equal(h.last().leader, 'a');
  assert.equal(h.last().conflicts[0]?.kind, 'two-leaders');
  assert.match(h.last().conflicts[0]!.detail, /a stays leader/);
});

test('a node that just started claims leadership until it hears the others: not a conflict', () => {
  const h = harness();
  h.actor.handle({ type: 'election.self', id: 'b', boot: 'x', role: 'server', healthy: true });
  h.actor.handle({ type: 'peer.seen', peer: peer('a', { leader: 'a', term: 1 }) });
  assert.equal(h.last().leader, 'a');
  assert.deepEqual(h.last().conflicts, []);
  h.actor.handle({ type: 'peer.gone', id: 'a', reason: 'timeout' });
  h.actor.handle({ type: 'peer.seen', peer: peer('a', { boot: 'restarted', leader: 'a', term: 1 }) });
  assert.deepEqual(h.last().conflicts, [], 'a restart (new boot) is not a healed partition');
});

test('issue #22: the boots of a stream of short-lived ids are forgotten; conflicts are capped', () => {
  const h = harness();
  for (let i = 0; i < 5_000; i++) {
    h.actor.handle({ type: 'peer.seen', peer: peer(`fake${i}`, { role: 'client' }) });
    h.actor.handle({ type: 'peer.gone', id: `fake${i}`, reason: 'timeout' });
  }
  assert.equal(h.actor.rememberedBoots, 5_000);
  h.advance(30_001);
  h.actor.tick();
  assert.equal(h.actor.rememberedBoots, 0, 'nothing left of ids gone for longer than the conflict window');
  // Clones (boots heard alternately) of 100 ids: at most 64 conflicts are kept.
  for (let i = 0; i < 100; i++) {
    for (const boot of ['a', 'b', 'a'])
      h.actor.handle({ type: 'peer.seen', peer: peer(`c${i}`, { boot, role: 'client' }) });
  }
  assert.equal(h.last().conflicts.length, 64);
});

test('routableAddress: loopback, unspecified, multicast, broadcast and own addresses are never connected to', async () => {
  const { routableAddress } = await import('../../src/actors/cluster.ts');
  const own = new Set(['10.0.0.5', '10.0.0.255']);
  for (const a of ['10.0.0.7', '192.168.1.20', 'fd00::2', 'fe80::1', '::ffff:10.0.0.7'])
    assert.equal(routableAddress(a, own), true, a);
  for (const a of [
    '127.0.0.1',
    '127.1.2.3',
    '0.0.0.0',
    '::',
    '::1',
    '224.0.0.1',
    '239.255.11.36',
    '255.255.255.255',
    '240.0.0.1',
    'ff02::1',
    '10.0.0.5',
    '10.0.0.255',
    '::ffff:127.0.0.1',
    'localhost',
    'example.com',
    '',
  ]) {
    assert.equal(routableAddress(a, own), false, a);
  }
});
