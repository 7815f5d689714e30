/**
 * The discovery peer table on its own (src/actors/discovery/peer-table.ts): decoded datagrams in,
 * supervisor messages out, no socket and no clock of its own (the time is an argument).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pino } from 'pino';
import { PeerTable, type DropCounts } from '../../src/actors/discovery/peer-table.ts';
import { DISCOVERY_DEFAULTS } from '../../src/actors/discovery/options.ts';
import { DatagramVerifier } from '../../src/net/datagram-auth.ts';
import { decodeDatagram, encodeDatagram, type DecodedDatagram } from '../../src/net/datagram.ts';
import type { LanDatagram } from '../../src/protocol/lan.ts';
import type { DiscoveryToSupervisor } from '../../src/protocol/messages.ts';
import { makeIdentities } from '../helpers/lan-identities.ts';

const [server, other] = await makeIdentities(2);
const FROM = { address: '10.0.0.2', port: 11436 };

function dropped(): DropCounts {
  return {
    magic: 0,
    version: 0,
    malformed: 0,
    oversize: 0,
    rateLimited: 0,
    duplicate: 0,
    forged: 0,
    verifyLimited: 0,
    stale: 0,
    peerLimit: 0,
  };
}

function table() {
  const out: DiscoveryToSupervisor[] = [];
  const counts = dropped();
  let serversChanged = 0;
  const peers = new PeerTable({
    log: pino({ level: 'silent' }),
    verifier: new DatagramVerifier(),
    opts: DISCOVERY_DEFAULTS,
    dropped: counts,
    send: (m) => out.push(m),
    serversChanged: () => {
      serversChanged++;
    },
  });
  return { peers, out, counts, serversChanged: () => serversChanged };
}

function datagram(over: Partial<LanDatagram> = {}, by = server!): DecodedDatagram {
  const d: LanDatagram = {
    kind: 'announce',
    id: server!.id,
    boot: 'b1',
    role: 'server',
    port: 11435,
    seq: 10,
    load: { inFlight: 0, workers: 2 },
    models: 'm',
    term: 1,
    leader: '',
    draining: false,
    ...over,
  };
  const decoded = decodeDatagram(encodeDatagram(d, by.signer));
  assert.ok(decoded.ok);
  return decoded;
}

test('a verified announce adds the peer (peer.seen, servers changed); a copy is dropped as duplicate; silence past dead-after forgets it', () => {
  const t = table();
  const now = 1_000;
  assert.equal(t.peers.take(datagram(), FROM, now, null, 0), null);
  assert.deepEqual(
    t.out.map((m) => m.type),
    ['peer.seen'],
  );
  assert.equal(t.peers.peers()[0]!.addr, '10.0.0.2');
  assert.equal(t.peers.peers()[0]!.fp, server!.fp);
  assert.equal(t.serversChanged(), 1);
  assert.equal(t.peers.hasServer(), true);

  t.peers.take(datagram(), FROM, now + 1, null, 0);
  assert.equal(t.counts.duplicate, 1);
  assert.equal(t.out.length, 1);

  t.peers.sweep(now + DISCOVERY_DEFAULTS.deadAfterMs);
  assert.equal(t.peers.size, 1, 'gone only after the dead-after time');
  t.peers.sweep(now + DISCOVERY_DEFAULTS.deadAfterMs + 1);
  assert.equal(t.peers.size, 0);
  assert.deepEqual(t.out.at(-1), { type: 'peer.gone', id: server!.id, reason: 'timeout' });
  assert.equal(t.serversChanged(), 2);
});

test("a datagram signed by another key than its id's is dropped as forged; a query of an admitted peer is returned for an answer", () => {
  const t = table();
  assert.equal(t.peers.take(datagram({}, other), FROM, 1_000, null, 0), null);
  assert.equal(t.counts.forged, 1);
  assert.equal(t.peers.size, 0);
  assert.equal(t.peers.take(datagram({ kind: 'query', role: 'client' }), FROM, 1_000, null, 0), 'query');
  assert.equal(t.peers.size, 1);
});

test('our own id from another boot with a number above our first is a clone; our own datagram looped back is ignored', () => {
  const t = table();
  const self = { id: server!.id, boot: 'mine' };
  assert.equal(t.peers.take(datagram({ boot: 'mine', seq: 50 }), FROM, 1_000, self, 5), null);
  assert.deepEqual(t.out, []);
  t.peers.take(datagram({ boot: 'theirs', seq: 50 }), FROM, 1_000, self, 5);
  assert.deepEqual(t.out, [{ type: 'peer.clone', id: server!.id, addr: '10.0.0.2', boot: 'theirs' }]);
  t.peers.take(datagram({ boot: 'old', seq: 4 }), FROM, 1_000, self, 5);
  assert.equal(t.out.length, 1, 'a replay of an earlier boot of ours is not a clone');
});
