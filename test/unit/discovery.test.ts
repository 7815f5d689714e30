import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import {
  DiscoveryActor,
  MAX_PEERS,
  NEW_PEER_LIMIT,
  type DatagramSocketLike,
  type DiscoveryOptions,
} from '../../src/actors/discovery/index.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { encode } from '@msgpack/msgpack';
import { decodeDatagram, encodeDatagram } from '../../src/net/datagram.ts';
import { OllanaError } from '../../src/errors.ts';
import { LAN_MAGIC, LAN_PROTOCOL_VERSION, type LanDatagram } from '../../src/protocol/lan.ts';
import type { DiscoveryToSupervisor, SelfInfo } from '../../src/protocol/messages.ts';
import { makeIdentities, type TestIdentity } from '../helpers/lan-identities.ts';
import { parseDeviceId } from '../../src/identity/device-id.ts';

/** The nodes these tests talk about, each with a real identity: its id is its certificate's. */
const NAMES = ['self0000', 'peer0001', 'p2', 'otherclient', 'client1', 'q1', 'srv2', 'attacker'] as const;
const IDENTITIES = new Map<string, TestIdentity>(
  (await makeIdentities(NAMES.length)).map((ident, i) => [NAMES[i]!, ident]),
);
function who(name: (typeof NAMES)[number]): TestIdentity {
  return IDENTITIES.get(name)!;
}
function id(name: (typeof NAMES)[number]): string {
  return who(name).id;
}
/** The identity holding `deviceId`'s key; an id nobody holds is signed by the attacker. */
function holder(deviceId: string): TestIdentity {
  return [...IDENTITIES.values()].find((i) => i.id === deviceId) ?? who('attacker');
}
/** Where the fake clock starts in these tests. */
const START = 1_000_000;

/** A peer's datagram, signed by whoever holds its id. */
function enc(d: LanDatagram, by: TestIdentity = holder(d.id)): Buffer {
  return encodeDatagram(d, by.signer);
}

interface Sent {
  readonly datagram: LanDatagram;
  readonly address: string;
  readonly port: number;
  /** the multicast interface in force when the datagram left */
  readonly via: string | null;
}

class FakeSocket implements DatagramSocketLike {
  readonly sent: Sent[] = [];
  readonly memberships: (string | undefined)[][] = [];
  readonly flags: Record<string, unknown> = {};
  bindError: Error | null = null;
  boundTo: string | null = null;
  closed = false;
  /** addresses whose sends fail, with the errno code */
  readonly failing = new Map<string, string>();
  #via: string | null = null;
  #onMessage: ((msg: Buffer, rinfo: { address: string; port: number }) => void) | null = null;
  #onError: ((err: Error) => void) | null = null;

  bind(port: number, address: string, callback: () => void): void {
    queueMicrotask(() => {
      if (this.bindError) this.#onError?.(this.bindError);
      else {
        this.boundTo = `${address}:${port}`;
        callback();
      }
    });
  }

  on(event: 'message' | 'error', listener: never): void {
    if (event === 'message') this.#onMessage = listener;
    else this.#onError = listener;
  }

  address(): { address: string; port: number } {
    return { address: '0.0.0.0', port: Number(this.boundTo?.split(':')[1]) };
  }

  addMembership(group: string, iface?: string): void {
    this.memberships.push(['add', group, iface]);
  }

  dropMembership(group: string, iface?: string): void {
    this.memberships.push(['drop', group, iface]);
  }

  setBroadcast(flag: boolean): void {
    this.flags.broadcast = flag;
  }

  setMulticastTTL(ttl: number): void {
    this.flags.ttl = ttl;
  }

  setMulticastLoopback(flag: boolean): void {
    this.flags.loopback = flag;
  }

  setMulticastInterface(iface: string): void {
    if (this.failing.get(iface) === 'throw')
      throw Object.assign(new Error('setMulticastInterface EADDRNOTAVAIL'), { code: 'EADDRNOTAVAIL' });
    this.#via = iface;
  }

  send(msg: Uint8Array, port: number, address: string, callback: (err: Error | null) => void): void {
    const r = decodeDatagram(msg);
    assert.ok(r.ok, 'the actor sent an undecodable datagram');
    const code = this.failing.get(address);
    queueMicrotask(() => {
      if (code !== undefined) {
        callback(Object.assign(new Error(`send ${code} ${address}:${port}`), { code }));
        return;
      }
      this.sent.push({ datagram: r.datagram, address, port, via: address.startsWith('239.') ? this.#via : null });
      callback(null);
    });
  }

  close(callback?: () => void): void {
    this.closed = true;
    queueMicrotask(() => callback?.());
  }

  deliver(buf: Uint8Array, address: string, port = 11436): void {
    this.#onMessage?.(Buffer.from(buf), { address, port });
  }

  take(): Sent[] {
    return this.sent.splice(0);
  }
}

const GROUP = '239.255.11.36';
const IFACE = { address: '192.168.1.10', netmask: '255.255.255.0' };
const LAN_COPIES = [`${GROUP} via 192.168.1.10`, '192.168.1.255', '255.255.255.255'];

const SERVER_SELF: SelfInfo = {
  id: id('self0000'),
  boot: 'bootA',
  role: 'server',
  port: 11435,
  fp: '',
  load: { inFlight: 0, workers: 4 },
  models: 'm1',
  term: 1,
  leader: 'other-leader',
  draining: false,
};
const CLIENT_SELF: SelfInfo = { ...SERVER_SELF, role: 'client', port: 0, leader: '' };

const PEER: LanDatagram = {
  kind: 'announce',
  id: id('peer0001'),
  boot: 'bootP',
  role: 'server',
  port: 11435,
  seq: 1,
  load: { inFlight: 1, workers: 2 },
  models: 'pm',
  term: 1,
  leader: '',
  draining: false,
};

async function setup(options: Partial<DiscoveryOptions> = {}) {
  const clock = new FakeClock(START);
  const socket = new FakeSocket();
  const out: DiscoveryToSupervisor[] = [];
  const rand = { value: 0.5 };
  const actor = new DiscoveryActor({
    socket,
    clock,
    random: () => rand.value,
    log: pino({ level: 'silent' }),
    send: (m) => out.push(m),
    options: { interfaces: [IFACE], ...options },
    signer: who('self0000').signer,
  });
  await actor.start();
  const ready = out.splice(0);
  // Peers' numbers start at their clocks too: above this node's first (the fake clock's start).
  let seq = clock.now() + 100;
  return {
    clock,
    socket,
    out,
    rand,
    actor,
    ready,
    /** delivers a datagram from a peer (a fresh seq unless given) */
    hear(d: Partial<LanDatagram>, from = '192.168.1.20', port = 11436): void {
      const full = { ...PEER, seq: seq++, ...d };
      socket.deliver(enc(full), from, port);
    },
    async advance(ms: number): Promise<void> {
      clock.advance(ms);
      await actor.flushed();
    },
    async configure(self: SelfInfo, announce: boolean): Promise<void> {
      actor.handle({ type: 'discovery.configure', self, announce });
      await actor.flushed();
    },
    /** messages sent to the supervisor since the last call, of one type */
    events<T extends DiscoveryToSupervisor['type']>(type: T): Extract<DiscoveryToSupervisor, { type: T }>[] {
      const found = out.filter((m): m is Extract<DiscoveryToSupervisor, { type: T }> => m.type === type);
      for (const m of found) out.splice(out.indexOf(m), 1);
      return found;
    },
  };
}

const where = (s: Sent): string => (s.via ? `${s.address} via ${s.via}` : s.address);

test('start binds 0.0.0.0:port, joins the group per interface, sets the socket up and says ready', async () => {
  const two = [IFACE, { address: '10.0.5.3', netmask: '255.255.0.0' }];
  const { socket, ready } = await setup({ port: 11436, interfaces: two });
  assert.equal(socket.boundTo, '0.0.0.0:11436');
  assert.deepEqual(socket.memberships, [
    ['add', GROUP, '192.168.1.10'],
    ['add', GROUP, '10.0.5.3'],
  ]);
  assert.deepEqual(socket.flags, { broadcast: true, ttl: 1, loopback: true });
  assert.deepEqual(ready, [
    {
      type: 'discovery.ready',
      port: 11436,
      group: GROUP,
      multicast: true,
      broadcast: true,
      interfaces: ['192.168.1.10', '10.0.5.3'],
    },
  ]);
});

test('without any LAN interface the group is joined without an interface address', async () => {
  const clock = new FakeClock(START);
  const socket = new FakeSocket();
  const out: DiscoveryToSupervisor[] = [];
  const actor = new DiscoveryActor({
    socket,
    clock,
    random: () => 0,
    log: pino({ level: 'silent' }),
    send: (m) => out.push(m),
    options: { port: 11436 },
    scanInterfaces: () => [],
    signer: who('self0000').signer,
  });
  await actor.start();
  assert.deepEqual(socket.memberships, [['add', GROUP, undefined]]);
  assert.deepEqual(out[0], {
    type: 'discovery.ready',
    port: 11436,
    group: GROUP,
    multicast: true,
    broadcast: true,
    interfaces: [],
  });
  actor.handle({ type: 'discovery.configure', self: SERVER_SELF, announce: true });
  await actor.flushed();
  assert.deepEqual(socket.take().map(where), [GROUP, '255.255.255.255']);
  await actor.stop();
});

test('a bind failure rejects start() with an error naming the port and --discovery-port', async () => {
  const socket = new FakeSocket();
  socket.bindError = Object.assign(new Error('bind EADDRINUSE 0.0.0.0:11436'), { code: 'EADDRINUSE' });
  const actor = new DiscoveryActor({
    socket,
    clock: new FakeClock(START),
    random: () => 0,
    log: pino({ level: 'silent' }),
    send: () => assert.fail('nothing may be sent'),
    options: { port: 11436, interfaces: [] },
    signer: who('self0000').signer,
  });
  await assert.rejects(actor.start(), (err: unknown) => {
    assert.ok(err instanceof OllanaError);
    assert.equal(err.code, 'OLN_PORT_IN_USE');
    assert.match(err.message, /0\.0\.0\.0:11436/);
    assert.match(err.message, /--discovery-port/);
    return true;
  });
  socket.bindError = Object.assign(new Error('bind EACCES'), { code: 'EACCES' });
  const denied = new DiscoveryActor({
    socket,
    clock: new FakeClock(START),
    random: () => 0,
    log: pino({ level: 'silent' }),
    send: () => undefined,
    options: { port: 436, interfaces: [] },
    signer: who('self0000').signer,
  });
  await assert.rejects(denied.start(), { code: 'OLN_PORT_DENIED', message: /436.*--discovery-port/ });
});

test('a server announces at once, then on every heartbeat, one seq per datagram shared by its copies', async () => {
  const h = await setup();
  assert.equal(h.socket.take().length, 0, 'silent before configure');
  await h.configure(SERVER_SELF, true);
  const first = h.socket.take();
  assert.deepEqual(first.map(where), LAN_COPIES);
  assert.ok(
    first.every((s) => s.datagram.kind === 'announce' && s.datagram.seq === first[0]!.datagram.seq && s.port === 11436),
  );
  assert.deepEqual(
    { ...first[0]!.datagram, seq: 0 },
    {
      kind: 'announce',
      id: id('self0000'),
      boot: 'bootA',
      role: 'server',
      port: 11435,
      seq: 0,
      load: { inFlight: 0, workers: 4 },
      models: 'm1',
      term: 1,
      leader: 'other-leader',
      draining: false,
    },
  );
  assert.ok(first[0]!.datagram.seq > 1_000_000 - 1, 'numbers start at the clock');
  await h.advance(999);
  assert.equal(h.socket.take().length, 0);
  await h.advance(1);
  assert.equal(h.socket.take().length, 3);
  await h.advance(4000);
  const later = h.socket.take();
  assert.equal(later.length, 12);
  const seqs = [first[0]!, ...later].filter((_, i) => i % 3 === 0).map((s) => s.datagram.seq);
  assert.deepEqual(
    seqs,
    [...seqs].sort((a, b) => a - b),
  );
  assert.equal(new Set(seqs).size, 5 + 1 - 1, 'one seq per heartbeat (first counted once)');
});

test('multicast or broadcast can each be turned off', async () => {
  const mc = await setup({ broadcast: false, interfaces: [IFACE, { address: '10.0.5.3', netmask: '255.255.0.0' }] });
  await mc.configure(SERVER_SELF, true);
  assert.deepEqual(mc.socket.take().map(where), [`${GROUP} via 192.168.1.10`, `${GROUP} via 10.0.5.3`]);
  const bc = await setup({ multicast: false, interfaces: [IFACE, { address: '10.0.5.3', netmask: '255.255.0.0' }] });
  await bc.configure(SERVER_SELF, true);
  assert.deepEqual(bc.socket.take().map(where), ['192.168.1.255', '10.0.255.255', '255.255.255.255']);
  const noLimited = await setup({ multicast: false, limitedBroadcast: false });
  await noLimited.configure(SERVER_SELF, true);
  assert.deepEqual(noLimited.socket.take().map(where), ['192.168.1.255']);
});

test('send errors are counted, never thrown, and the other copies still go', async () => {
  const h = await setup();
  h.socket.failing.set('255.255.255.255', 'ENETUNREACH');
  h.socket.failing.set('192.168.1.255', 'EPERM');
  await h.configure(SERVER_SELF, true);
  assert.deepEqual(h.socket.take().map(where), [`${GROUP} via 192.168.1.10`]);
  h.socket.failing.set('192.168.1.10', 'throw');
  await h.advance(1000);
  assert.deepEqual(h.socket.take(), []);
  h.actor.handle({ type: 'discovery.stats.request', id: 3 });
  const [report] = h.events('discovery.stats.report');
  assert.equal(report?.stats.sent, 1);
  assert.equal(report?.stats.sendErrors, 5);
});

test('a client announces too, queries at once and every interval until it knows a server', async () => {
  const h = await setup();
  await h.configure(CLIENT_SELF, true);
  const first = h.socket.take();
  assert.deepEqual(
    first.map((s) => s.datagram.kind),
    ['announce', 'announce', 'announce', 'query', 'query', 'query'],
  );
  assert.equal(first[0]!.datagram.port, 0);
  assert.equal(first[0]!.datagram.role, 'client');
  await h.advance(1000);
  assert.deepEqual(
    h.socket
      .take()
      .map((s) => s.datagram.kind)
      .sort(),
    ['announce', 'announce', 'announce', 'query', 'query', 'query'],
  );
  h.hear({ role: 'client', id: id('otherclient') }); // a client does not count
  await h.advance(1000);
  assert.equal(h.socket.take().filter((s) => s.datagram.kind === 'query').length, 3);
  h.hear({});
  await h.advance(3000);
  assert.deepEqual(
    new Set(h.socket.take().map((s) => s.datagram.kind)),
    new Set(['announce']),
    'no query once a server is known',
  );
  // The server goes: querying resumes at once.
  h.hear({ kind: 'bye' });
  await h.advance(0);
  assert.deepEqual(
    h.socket.take().map((s) => s.datagram.kind),
    ['query', 'query', 'query'],
  );
});

test('a server answers a query by unicast after a jittered delay', async () => {
  const h = await setup({ answerJitterMs: 200 });
  await h.configure(SERVER_SELF, true);
  h.socket.take();
  h.rand.value = 0.5;
  const query = enc({ ...PEER, id: id('client1'), kind: 'query', role: 'client', port: 0, seq: 1_000_007 });
  h.socket.deliver(query, '192.168.1.20', 40001);
  h.socket.deliver(query, '192.168.1.20', 40001); // the broadcast copy of the same query
  await h.advance(99);
  assert.deepEqual(h.socket.take(), []);
  await h.advance(1);
  const [answer, ...rest] = h.socket.take();
  assert.deepEqual(rest, [], 'one answer, by unicast only');
  assert.equal(answer?.address, '192.168.1.20');
  assert.equal(answer?.port, 40001, 'to the port the query came from');
  assert.equal(answer?.datagram.kind, 'announce');

  // Jitter 0.999 -> 199 ms.
  h.rand.value = 0.999;
  h.socket.deliver(
    enc({ ...PEER, id: id('client1'), kind: 'query', role: 'client', port: 0, seq: 1_000_008 }),
    '192.168.1.21',
    11436,
  );
  await h.advance(198);
  assert.deepEqual(
    h.socket.take().filter((x) => x.address === '192.168.1.21'),
    [],
  );
  await h.advance(1);
  const [plain] = h.socket.take().filter((x) => x.address === '192.168.1.21');
  assert.equal(plain?.datagram.kind, 'announce');
});

test('only an announcing server answers queries', async () => {
  const client = await setup();
  await client.configure(CLIENT_SELF, true);
  await client.advance(0);
  const server = await setup();
  await server.configure(SERVER_SELF, false);
  for (const h of [client, server]) {
    h.socket.take();
    h.hear({ id: id('q1'), kind: 'query', role: 'client', port: 0 });
    await h.advance(300);
    assert.deepEqual(
      h.socket.take().filter((s) => s.address === '192.168.1.20'),
      [],
    );
  }
});

test('announce turning false sends one bye, then silence; receiving goes on', async () => {
  const h = await setup();
  await h.configure(SERVER_SELF, true);
  h.socket.take();
  await h.configure(SERVER_SELF, false);
  assert.deepEqual(
    h.socket.take().map((s) => `${s.datagram.kind} ${where(s)}`),
    LAN_COPIES.map((c) => `bye ${c}`),
  );
  await h.advance(10_000);
  assert.deepEqual(h.socket.take(), []);
  h.hear({});
  assert.equal(h.events('peer.seen').length, 1);
  await h.configure(SERVER_SELF, false);
  assert.deepEqual(h.socket.take(), [], 'no second bye');
  await h.configure(SERVER_SELF, true);
  assert.equal(h.socket.take()[0]?.datagram.kind, 'announce', 'announcing again starts at once');
});

test('stop says bye when announcing, closes the socket, then discovery.stopped', async () => {
  const h = await setup();
  await h.configure(SERVER_SELF, true);
  h.socket.take();
  h.actor.handle({ type: 'discovery.stop' });
  await h.actor.stop();
  assert.deepEqual(
    h.socket.take().map((s) => s.datagram.kind),
    ['bye', 'bye', 'bye'],
  );
  assert.ok(h.socket.closed);
  assert.deepEqual(h.out.at(-1), { type: 'discovery.stopped' });
  assert.equal(h.out.filter((m) => m.type === 'discovery.stopped').length, 1);
  await h.advance(5000);
  assert.deepEqual(h.socket.take(), [], 'no timer survives stop');

  const silent = await setup();
  await silent.configure(SERVER_SELF, false);
  await silent.actor.stop();
  assert.deepEqual(silent.socket.take(), []);
  assert.deepEqual(silent.out.at(-1), { type: 'discovery.stopped' });
});

test('a peer not heard for deadAfterMs is gone (timeout); a bye removes it at once', async () => {
  const h = await setup({ deadAfterMs: 3500 });
  h.hear({});
  assert.equal(h.events('peer.seen').length, 1);
  await h.advance(3500);
  assert.deepEqual(h.events('peer.gone'), []);
  await h.advance(400);
  assert.deepEqual(h.events('peer.gone'), [{ type: 'peer.gone', id: id('peer0001'), reason: 'timeout' }]);

  h.hear({ id: id('p2') });
  await h.advance(3000);
  h.hear({ id: id('p2') }); // heard again: the clock restarts
  await h.advance(3000);
  assert.deepEqual(h.events('peer.gone'), []);
  h.hear({ id: id('p2'), kind: 'bye', boot: 'old-boot', seq: 1_000_001 }); // an earlier process's bye (lower numbers) does not count
  assert.deepEqual(h.events('peer.gone'), []);
  h.hear({ id: id('p2'), kind: 'bye' });
  assert.deepEqual(h.events('peer.gone'), [{ type: 'peer.gone', id: id('p2'), reason: 'bye' }]);
  h.hear({ id: id('p2'), kind: 'bye' });
  assert.deepEqual(h.events('peer.gone'), [], 'gone once');
});

test('the multicast and broadcast copies of one datagram count once', async () => {
  const h = await setup();
  const d = enc({ ...PEER, seq: 5 });
  h.socket.deliver(d, '192.168.1.20');
  h.socket.deliver(d, '192.168.1.20');
  h.socket.deliver(enc({ ...PEER, seq: 4 }), '192.168.1.20'); // older than one seen
  assert.equal(h.events('peer.seen').length, 1);
  h.actor.handle({ type: 'discovery.stats.request', id: 1 });
  const [report] = h.events('discovery.stats.report');
  assert.equal(report?.stats.dropped.duplicate, 2);
  assert.equal(report?.stats.received, 3);
  assert.equal(report?.stats.peers, 1);
  // A restarted peer (another boot) continues above the numbers of the earlier one: taken at once.
  h.socket.deliver(enc({ ...PEER, boot: 'bootQ', seq: 6 }), '192.168.1.20');
  assert.deepEqual(
    h.events('peer.seen').map((m) => m.peer.boot),
    ['bootQ'],
  );
  // The earlier boot's datagrams (a replay) are stale, not news.
  h.socket.deliver(enc({ ...PEER, boot: 'bootP', seq: 3 }), '192.168.1.20');
  assert.deepEqual(h.events('peer.seen'), []);
  h.actor.handle({ type: 'discovery.stats.request', id: 2 });
  assert.equal(h.events('discovery.stats.report')[0]?.stats.dropped.stale, 1);
});

test('two live processes with one id are a clone, whichever started first; replays of an earlier boot are not', async () => {
  const h = await setup({ deadAfterMs: 3500 });
  h.hear({ boot: 'bootA', seq: 1_000_100 }, '192.168.1.20');
  h.hear({ boot: 'bootB', seq: 1_005_000 }, '192.168.1.21'); // started later: numbers above A's, taken
  assert.deepEqual(
    h.events('peer.seen').map((m) => `${m.peer.boot}@${m.peer.addr}`),
    ['bootA@192.168.1.20', 'bootB@192.168.1.21'],
  );
  // A replay of A's datagrams already heard: stale, nothing reported.
  h.hear({ boot: 'bootA', seq: 1_000_100 }, '192.168.1.66');
  assert.deepEqual(h.events('peer.clone'), []);
  // A is still alive: a number above its own last, within the dead-after time.
  await h.advance(1000);
  h.hear({ boot: 'bootA', seq: 1_000_101 }, '192.168.1.20');
  assert.deepEqual(h.events('peer.clone'), [
    { type: 'peer.clone', id: id('peer0001'), addr: '192.168.1.20', boot: 'bootA' },
  ]);
  assert.deepEqual(h.events('peer.seen'), [], 'the boot in use stays in use: no flapping');
  // Heard in the other order (a node that joins late hears B first): A's second datagram tells.
  const late = await setup({ deadAfterMs: 3500 });
  late.hear({ boot: 'bootB', seq: 1_005_000 }, '192.168.1.21');
  late.hear({ boot: 'bootA', seq: 1_000_100 }, '192.168.1.20');
  assert.deepEqual(late.events('peer.clone'), [], 'one datagram of an older boot may be a replay');
  await late.advance(1000);
  late.hear({ boot: 'bootA', seq: 1_000_101 }, '192.168.1.20');
  assert.equal(late.events('peer.clone').length, 1);
  // Another key cannot make one.
  const forged = await setup({ deadAfterMs: 3500 });
  forged.hear({ boot: 'bootB', seq: 1_005_000 }, '192.168.1.21');
  for (const seq of [1_000_100, 1_000_101]) {
    forged.socket.deliver(enc({ ...PEER, boot: 'bootA', seq }, who('attacker')), '192.168.1.66');
    await forged.advance(500);
  }
  assert.deepEqual(forged.events('peer.clone'), []);
});

test('its own datagrams are ignored; its id with another boot is a clone, reported at most every 10 s', async () => {
  const h = await setup();
  await h.configure(SERVER_SELF, true);
  h.hear({ id: id('self0000'), boot: 'bootA' });
  assert.deepEqual(h.out, []);
  h.hear({ id: id('self0000'), boot: 'bootZ' }, '192.168.1.66');
  h.hear({ id: id('self0000'), boot: 'bootZ' }, '192.168.1.66');
  assert.deepEqual(h.events('peer.clone'), [
    { type: 'peer.clone', id: id('self0000'), addr: '192.168.1.66', boot: 'bootZ' },
  ]);
  h.hear({ id: id('self0000'), boot: 'bootY' }, '192.168.1.67');
  assert.deepEqual(h.events('peer.clone'), [
    { type: 'peer.clone', id: id('self0000'), addr: '192.168.1.67', boot: 'bootY' },
  ]);
  await h.advance(9_999);
  h.hear({ id: id('self0000'), boot: 'bootZ' }, '192.168.1.66');
  assert.deepEqual(h.events('peer.clone'), []);
  await h.advance(1);
  h.hear({ id: id('self0000'), boot: 'bootZ' }, '192.168.1.66');
  assert.equal(h.events('peer.clone').length, 1);
  // A replay of an earlier boot of this node (numbers below its first) is no clone.
  h.hear({ id: id('self0000'), boot: 'bootOld', seq: 999_000 }, '192.168.1.68');
  // Nor is a datagram with this id from another key.
  h.socket.deliver(
    enc({ ...PEER, id: id('self0000'), boot: 'bootX', seq: 2_000_000 }, who('attacker')),
    '192.168.1.69',
  );
  assert.deepEqual(h.events('peer.clone'), []);
  assert.equal(h.actor.peers().length, 0, 'neither itself nor its clone is a peer');
});

test('each source address has its own token bucket', async () => {
  const h = await setup({ rateLimit: { perSecond: 10, burst: 5 } });
  for (let i = 0; i < 20; i++) h.socket.deliver(Buffer.from('garbage'), '192.168.1.99');
  h.hear({}, '192.168.1.20'); // another source is not affected
  assert.equal(h.events('peer.seen').length, 1);
  h.actor.handle({ type: 'discovery.stats.request', id: 1 });
  let stats = h.events('discovery.stats.report')[0]!.stats;
  assert.equal(stats.dropped.magic, 5);
  assert.equal(stats.dropped.rateLimited, 15);
  await h.advance(300); // 10/s: 3 tokens back
  for (let i = 0; i < 20; i++) h.socket.deliver(Buffer.from('garbage'), '192.168.1.99');
  h.actor.handle({ type: 'discovery.stats.request', id: 2 });
  stats = h.events('discovery.stats.report')[0]!.stats;
  assert.equal(stats.dropped.magic, 8);
  assert.equal(stats.dropped.rateLimited, 32);
  await h.advance(10_000); // never more than the burst
  for (let i = 0; i < 20; i++) h.socket.deliver(Buffer.from('garbage'), '192.168.1.99');
  h.actor.handle({ type: 'discovery.stats.request', id: 3 });
  stats = h.events('discovery.stats.report')[0]!.stats;
  assert.equal(stats.dropped.magic, 13);
  assert.equal(stats.dropped.rateLimited, 47);
  assert.equal(stats.received, 61);
});

test('every kind of garbage is dropped and counted by reason', async () => {
  const h = await setup();
  const good = enc(PEER);
  h.socket.deliver(Buffer.from('hello'), '192.168.1.5');
  h.socket.deliver(Buffer.concat([good.subarray(0, 4), Buffer.of(9), good.subarray(5)]), '192.168.1.5');
  h.socket.deliver(good.subarray(0, good.length - 3), '192.168.1.5');
  h.socket.deliver(Buffer.alloc(1500), '192.168.1.5');
  h.actor.handle({ type: 'discovery.stats.request', id: 1 });
  const [report] = h.events('discovery.stats.report');
  assert.deepEqual(report?.stats, {
    received: 4,
    sent: 0,
    sendErrors: 0,
    peers: 0,
    dropped: {
      magic: 1,
      version: 1,
      malformed: 1,
      oversize: 1,
      rateLimited: 0,
      duplicate: 0,
      forged: 0,
      verifyLimited: 0,
      stale: 0,
      peerLimit: 0,
    },
  });
  assert.deepEqual(h.out, []);
});

test('peer.seen on news only, and at least every 5 s for a live peer', async () => {
  const h = await setup({ refreshMs: 5000 });
  h.hear({});
  const [first] = h.events('peer.seen');
  assert.deepEqual(first?.peer, {
    id: id('peer0001'),
    boot: 'bootP',
    role: 'server',
    addr: '192.168.1.20',
    port: 11435,
    fp: who('peer0001').fp,
    load: { inFlight: 1, workers: 2 },
    models: 'pm',
    term: 1,
    leader: '',
    draining: false,
    lastSeen: 1_000_000,
  });
  for (let i = 1; i <= 4; i++) {
    await h.advance(1000);
    h.hear({ load: { inFlight: i, workers: 2 } });
  }
  assert.deepEqual(h.events('peer.seen'), [], 'load alone is no news');
  await h.advance(1000);
  h.hear({ load: { inFlight: 9, workers: 2 } });
  const refresh = h.events('peer.seen');
  assert.equal(refresh.length, 1, 'refreshed after 5 s');
  assert.deepEqual(refresh[0]?.peer.load, { inFlight: 9, workers: 2 });
  assert.equal(refresh[0]?.peer.lastSeen, 1_005_000);
  for (const news of [{ models: 'pm2' }, { term: 2 }, { leader: id('peer0001') }]) {
    await h.advance(500);
    h.hear(news);
    const seen = h.events('peer.seen');
    assert.equal(seen.length, 1, `news ${JSON.stringify(news)}`);
  }
  // Where and what it is goes out at once; other news at most every half heartbeat, not lost.
  let now: Partial<LanDatagram> = { models: 'pm2', term: 2, leader: id('peer0001') };
  for (const news of [{ port: 8080 }, { role: 'client' as const }, { draining: true }]) {
    await h.advance(10);
    now = { ...now, ...news };
    h.hear(now);
    assert.equal(h.events('peer.seen').length, 1, `news ${JSON.stringify(news)}`);
  }
  await h.advance(10);
  h.hear({ ...now, models: 'pm3' });
  assert.deepEqual(h.events('peer.seen'), [], 'models news 10 ms after the last report waits');
  await h.advance(490);
  h.hear({ ...now, models: 'pm3', load: { inFlight: 1, workers: 2 } });
  assert.deepEqual(
    h.events('peer.seen').map((m) => m.peer.models),
    ['pm3'],
  );
});

test("the address is the datagram's source, sticky while a multi-homed peer still delivers first copies on it", async () => {
  const h = await setup({ deadAfterMs: 3500 });
  h.hear({ seq: 1 }, '192.168.1.20');
  assert.equal(h.events('peer.seen')[0]?.peer.addr, '192.168.1.20');
  await h.advance(1000);
  h.socket.deliver(enc({ ...PEER, seq: 2 }), '192.168.1.20');
  h.socket.deliver(enc({ ...PEER, seq: 2 }), '10.0.0.20'); // the copy through its other interface
  // The next heartbeat reaches us first through the other interface: the old one was fresh 1 s ago.
  await h.advance(1000);
  h.socket.deliver(enc({ ...PEER, seq: 3 }), '10.0.0.20');
  assert.deepEqual(h.events('peer.seen'), [], 'no flapping');
  assert.equal(h.actor.peers()[0]?.addr, '192.168.1.20');
  // The old address stops delivering first copies: after deadAfterMs/2 the new one is taken.
  for (let seq = 4; seq < 8; seq++) {
    await h.advance(1000);
    h.socket.deliver(enc({ ...PEER, seq }), '10.0.0.20');
  }
  assert.deepEqual(
    h.events('peer.seen').map((m) => m.peer.addr),
    ['10.0.0.20'],
  );
});

test('issue #22: a forged bye from another host neither removes the server nor locks out its datagrams', async () => {
  const h = await setup();
  h.hear({ seq: 1_000_500 }, '192.168.1.20');
  assert.equal(h.events('peer.seen').length, 1);
  // What the red team sent: the server's id and boot, seq 2^53-1, signed with the attacker's own key
  // (or unsigned garbage in the signature): dropped as forged.
  h.socket.deliver(enc({ ...PEER, kind: 'bye', seq: Number.MAX_SAFE_INTEGER }, who('attacker')), '192.168.1.66');
  const stolen = {
    ...who('attacker'),
    signer: { certDer: who('peer0001').signer.certDer, sign: who('attacker').signer.sign },
  };
  h.socket.deliver(enc({ ...PEER, kind: 'bye', seq: Number.MAX_SAFE_INTEGER }, stolen), '192.168.1.66');
  assert.deepEqual(h.events('peer.gone'), []);
  // The real server's next datagrams are taken as before, and it stays alive past deadAfterMs.
  for (let i = 1; i <= 5; i++) {
    await h.advance(1000);
    h.socket.deliver(enc({ ...PEER, seq: 1_000_500 + i }), '192.168.1.20');
  }
  assert.deepEqual(h.events('peer.gone'), []);
  assert.equal(h.actor.peers()[0]?.lastSeen, h.clock.now());
  h.actor.handle({ type: 'discovery.stats.request', id: 1 });
  const stats = h.events('discovery.stats.report')[0]!.stats;
  assert.equal(stats.dropped.forged, 2);
  assert.equal(stats.dropped.duplicate, 0, 'none of the real datagrams was taken for a duplicate');
  // The real bye still works.
  h.socket.deliver(enc({ ...PEER, kind: 'bye', seq: 1_000_600 }), '192.168.1.20');
  assert.deepEqual(h.events('peer.gone'), [{ type: 'peer.gone', id: id('peer0001'), reason: 'bye' }]);
});

test('issue #22: a forged announce cannot move a server; a replay from elsewhere cannot either', async () => {
  const h = await setup({ deadAfterMs: 3500 });
  h.hear({ seq: 1_000_500 }, '192.168.1.20');
  h.events('peer.seen');
  h.socket.deliver(enc({ ...PEER, seq: 1_000_501, port: 4444 }, who('attacker')), '192.168.1.66');
  assert.deepEqual(h.events('peer.seen'), []);
  // The attacker copies each real datagram and sends it from its own address, right after the real one.
  for (let i = 2; i < 10; i++) {
    await h.advance(1000);
    const real = enc({ ...PEER, seq: 1_000_500 + i });
    h.socket.deliver(real, '192.168.1.20');
    h.socket.deliver(real, '192.168.1.66');
  }
  assert.deepEqual(
    h.events('peer.seen').map((m) => `${m.peer.addr}:${m.peer.port}`),
    ['192.168.1.20:11435'],
    'the 5 s refresh only',
  );
  assert.deepEqual(
    h.actor.peers().map((p) => `${p.addr}:${p.port}`),
    ['192.168.1.20:11435'],
  );
});

test('issue #22: members in a datagram (the old leader list) are never taken, whatever addresses they name', async () => {
  const h = await setup();
  await h.configure(CLIENT_SELF, true);
  const body = {
    kind: 'announce',
    id: id('peer0001'),
    boot: 'bootP',
    role: 'server',
    port: 11435,
    seq: 1_000_900,
    load: { inFlight: 0, workers: 1 },
    models: '',
    term: 1,
    leader: id('peer0001'),
    draining: false,
    members: [{ id: id('srv2'), addr: '127.0.0.1', port: 22 }],
    cert: Buffer.from(who('peer0001').signer.certDer),
  };
  const packed = Buffer.from(encode(body));
  const head = Buffer.from([...LAN_MAGIC, LAN_PROTOCOL_VERSION, packed.length >> 8, packed.length & 255]);
  const signed = Buffer.concat([head, packed]);
  h.socket.deliver(Buffer.concat([signed, who('peer0001').signer.sign(signed)]), '192.168.1.20');
  assert.deepEqual(
    h.actor.peers().map((p) => `${p.id}@${p.addr}`),
    [`${id('peer0001')}@192.168.1.20`],
  );
});

test('issue #22: a flood of made-up nodes fills the peer table at a bounded rate and never past MAX_PEERS', async () => {
  const fakes = await makeIdentities(MAX_PEERS + 20);
  const h = await setup({ rateLimit: { perSecond: 1e6, burst: 1e6 } });
  await h.configure(SERVER_SELF, true);
  h.socket.take();
  let n = 0;
  const flood = (): void => {
    // Each from an address of its own (spoofed sources: the per-source limit does not bound this).
    fakes.forEach((f, i) => {
      h.socket.deliver(
        encodeDatagram({ ...PEER, id: f.id, seq: 2_000_000 + n++ }, f.signer),
        `10.1.${i >> 8}.${i & 255}`,
      );
    });
  };
  flood();
  assert.equal(h.actor.peers().length, NEW_PEER_LIMIT.burst, 'the admission burst, no more, in one instant');
  for (let s = 0; s < 20; s++) {
    await h.advance(1000);
    flood();
  }
  assert.equal(h.actor.peers().length, MAX_PEERS);
  // Datagrams that cannot verify, each claiming a made-up id (not even a device id), change nothing.
  for (let i = 0; i < 2_000; i++) {
    h.socket.deliver(
      encodeDatagram({ ...PEER, id: `x${i}:bad`, seq: 3_000_000 + i }, fakes[i % fakes.length]!.signer),
      `10.2.${(i >> 8) & 255}.${i & 255}`,
    );
  }
  assert.equal(h.actor.peers().length, MAX_PEERS);
  h.actor.handle({ type: 'discovery.stats.request', id: 1 });
  const stats = h.events('discovery.stats.report')[0]!.stats;
  assert.equal(stats.peers, MAX_PEERS);
  assert.ok(stats.dropped.peerLimit > 0);
  assert.equal(stats.dropped.forged + stats.dropped.verifyLimited >= 2_000, true, JSON.stringify(stats.dropped));
  const seen = h.events('peer.seen');
  // What reaches the supervisor (and from there pending.json) is a well-formed device id, always.
  assert.ok(
    seen.every((m) => parseDeviceId(m.peer.id) === m.peer.id),
    'only device ids are reported',
  );
  const reports = seen.length;
  assert.ok(
    reports <= MAX_PEERS * (1 + 20 / 5),
    `${reports} peer.seen: one per admitted peer, then one per 5 s refresh`,
  );
  // The flood stops: every made-up peer times out and the table is empty again.
  await h.advance(10_000);
  assert.equal(h.actor.peers().length, 0);
  // A real server is then taken at once.
  h.hear({ seq: 9_000_000 });
  assert.equal(h.actor.peers().length, 1);
});

test('a draining server is reported as such', async () => {
  const h = await setup();
  h.hear({});
  assert.equal(h.events('peer.seen')[0]?.peer.draining, false);
  h.hear({ draining: true });
  assert.deepEqual(
    h.events('peer.seen').map((m) => m.peer.draining),
    [true],
  );
});

test('a configure with a self that cannot go on the wire is ignored', async () => {
  const h = await setup();
  await h.configure({ ...SERVER_SELF, id: 'bad id with spaces' }, true);
  assert.deepEqual(h.socket.take(), []);
  await h.configure(SERVER_SELF, true);
  assert.equal(h.socket.take().length, 3);
});

test('a change of self while announcing is announced at once, at most once a heartbeat interval', async () => {
  const h = await setup();
  await h.configure(SERVER_SELF, true);
  h.socket.take();
  await h.configure({ ...SERVER_SELF, load: { inFlight: 5, workers: 4 } }, true);
  assert.deepEqual(h.socket.take(), [], 'load waits for the heartbeat');
  await h.configure({ ...SERVER_SELF, models: 'm2' }, true);
  assert.deepEqual(
    h.socket.take().map((s) => s.datagram.models),
    ['m2', 'm2', 'm2'],
  );
  await h.advance(999);
  assert.deepEqual(h.socket.take(), [], 'the heartbeat restarted from the change');
  await h.advance(1);
  assert.equal(h.socket.take().length, 3);
  // Issue #22: news every few ms (a flood of made-up nodes moving the election) is not an announce each.
  for (let i = 0; i < 100; i++) {
    await h.configure({ ...SERVER_SELF, models: 'm2', term: 10 + i }, true);
    await h.advance(10);
  }
  const sent = h.socket.take();
  assert.ok(sent.length <= 3 * 3, `${sent.length / 3} announces in 1 s of constant news`);
  await h.advance(1000);
  assert.equal(h.socket.take().at(-1)?.datagram.term, 109, 'the next heartbeat carries the newest state');
  // Starting to drain is said at once, whatever was sent just before.
  await h.configure({ ...SERVER_SELF, models: 'm2', term: 200 }, true);
  h.socket.take();
  await h.configure({ ...SERVER_SELF, models: 'm2', term: 200, draining: true }, true);
  assert.deepEqual(
    h.socket.take().map((s) => s.datagram.draining),
    [true, true, true],
  );
});

test('interfaces are rescanned: new ones joined and used, vanished ones no longer sent to but still joined, no repeated default join', async () => {
  const clock = new FakeClock(START);
  const socket = new FakeSocket();
  let scan: { address: string; netmask: string }[] = [];
  const actor = new DiscoveryActor({
    socket,
    clock,
    random: () => 0,
    log: pino({ level: 'silent' }),
    send: () => undefined,
    options: { port: 11436, rescanMs: 30_000, limitedBroadcast: false },
    scanInterfaces: () => scan,
    signer: who('self0000').signer,
  });
  await actor.start();
  actor.handle({ type: 'discovery.configure', self: SERVER_SELF, announce: true });
  clock.advance(60_000);
  await actor.flushed();
  assert.deepEqual(socket.memberships, [['add', GROUP, undefined]]);
  socket.take();
  scan = [IFACE];
  clock.advance(30_000);
  await actor.flushed();
  assert.deepEqual(socket.memberships.slice(1), [['add', GROUP, '192.168.1.10']]);
  clock.advance(1_000);
  await actor.flushed();
  assert.deepEqual(socket.take().slice(-2).map(where), [`${GROUP} via 192.168.1.10`, '192.168.1.255']);
  // The link goes down: the interface vanishes from the scan. It is no longer sent to, but its group
  // membership is kept, so multicast is heard again the moment the link is back.
  scan = [];
  clock.advance(30_000);
  await actor.flushed();
  socket.take();
  clock.advance(1_000);
  await actor.flushed();
  const after = socket.take().map(where);
  // (The socket's multicast interface option still names it, as a real socket's would: the kernel decides.)
  assert.equal(
    after.filter((w) => w === '192.168.1.255').length,
    0,
    `a vanished interface's broadcast is not sent to: ${after.join(', ')}`,
  );
  assert.deepEqual(socket.memberships.slice(2), [], 'no dropMembership');
  scan = [IFACE];
  clock.advance(30_000);
  assert.deepEqual(socket.memberships.slice(2), [['add', GROUP, '192.168.1.10']], 'joined again when it returns');
  await actor.stop();
});
