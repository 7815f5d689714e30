/**
 * Pairing by code (src/pair/): the exchange's state machine over an injected LAN and a fake clock,
 * and its wire format. Two sessions pair and show one code; a no on either side, a third machine, a
 * reveal that does not open its commitment, a replay of another session and this machine's own
 * certificate sent back each end without a peer; garbage is dropped and counted.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import { encode } from '@msgpack/msgpack';
import { OllanaError } from '../../src/errors.ts';
import { commitment } from '../../src/pair/code.ts';
import {
  MAX_PAIR_DATAGRAM,
  PAIR_MAGIC,
  decodePairMessage,
  encodePairMessage,
  type PairMessage,
} from '../../src/pair/messages.ts';
import { PairSession, type PairPeer } from '../../src/pair/session.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { makeIdentities } from '../helpers/lan-identities.ts';

const ids = await makeIdentities(3);
const der = (i: number): Uint8Array => new X509Certificate(ids[i]!.certPem).raw;
const TIMEOUT = 30_000;

/** A LAN of addresses: a datagram to null reaches every member (the sender too, as a broadcast does). */
class FakeLan {
  readonly queue: { bytes: Buffer; from: string; to: string | null }[] = [];
  readonly members = new Map<string, (b: Buffer, from: string) => void>();
  /** Returns false to lose a datagram. */
  filter: (d: { bytes: Buffer; from: string; to: string | null }) => boolean = () => true;

  transport(addr: string) {
    return { send: (bytes: Buffer, to: string | null) => this.queue.push({ bytes, from: addr, to }) };
  }

  pump(max = 1000): void {
    for (let i = 0; i < max && this.queue.length > 0; i++) {
      const d = this.queue.shift()!;
      if (!this.filter(d)) continue;
      for (const [addr, deliver] of this.members) if (d.to === null || d.to === addr) deliver(d.bytes, d.from);
    }
  }
}

interface Side {
  session: PairSession;
  codes: string[];
  peers: PairPeer[];
  result: Promise<PairPeer | OllanaError>;
}

function side(lan: FakeLan, clock: FakeClock, addr: string, i: number, answer?: (code: string) => boolean): Side {
  const codes: string[] = [];
  const peers: PairPeer[] = [];
  const session: PairSession = new PairSession({
    certDer: der(i),
    clock,
    timeoutMs: TIMEOUT,
    transport: lan.transport(addr),
    onCode: (code, peer) => {
      codes.push(code);
      peers.push(peer);
      if (answer) session.answer(answer(code));
    },
  });
  lan.members.set(addr, (b, from) => session.receive(b, from));
  const result = session.run().catch((e: OllanaError) => e);
  return { session, codes, peers, result };
}

/** Moves time and the LAN until `done` holds, at most `steps` resend intervals. */
function run(lan: FakeLan, clock: FakeClock, done: () => boolean, steps = 200): void {
  for (let i = 0; i < steps && !done(); i++) {
    lan.pump();
    clock.advance(500);
    lan.pump();
  }
}

const code = (e: unknown): string | undefined => (e instanceof OllanaError ? e.code : undefined);

test('two machines find each other, show one six-digit code, and each gets the other certificate once both confirm', async () => {
  const lan = new FakeLan();
  const clock = new FakeClock();
  const a = side(lan, clock, '10.0.0.1', 0, () => true);
  const b = side(lan, clock, '10.0.0.2', 1);
  run(lan, clock, () => b.codes.length > 0);
  assert.equal(a.codes.length, 1);
  assert.match(a.codes[0]!, /^[0-9]{6}$/);
  assert.deepEqual(b.codes, a.codes, 'both sides show the same code');
  assert.equal(a.session.state, 'comparing', 'A waits for B to confirm');
  b.session.answer(true);
  run(lan, clock, () => a.session.state === 'done' && b.session.state === 'done');
  const [pa, pb] = (await Promise.all([a.result, b.result])) as PairPeer[];
  assert.equal(pa!.id, ids[1]!.id);
  assert.equal(pa!.addr, '10.0.0.2');
  assert.equal(pb!.id, ids[0]!.id);
  assert.equal(pb!.name, 'test0');
});

test('lost datagrams are made up by resends', async () => {
  const lan = new FakeLan();
  const clock = new FakeClock();
  let n = 0;
  lan.filter = () => n++ % 3 !== 0; // every third datagram lost
  const a = side(lan, clock, '10.0.0.1', 0, () => true);
  const b = side(lan, clock, '10.0.0.2', 1, () => true);
  run(lan, clock, () => a.session.state === 'done' && b.session.state === 'done');
  assert.equal(((await a.result) as PairPeer).id, ids[1]!.id);
  assert.equal(((await b.result) as PairPeer).id, ids[0]!.id);
});

test('a no on one side refuses on both: OLN_PAIR_REFUSED', async () => {
  const lan = new FakeLan();
  const clock = new FakeClock();
  const a = side(lan, clock, '10.0.0.1', 0, () => true);
  const b = side(lan, clock, '10.0.0.2', 1, () => false);
  run(lan, clock, () => a.session.state === 'failed' && b.session.state === 'failed');
  assert.equal(code(await a.result), 'OLN_PAIR_REFUSED');
  assert.equal(code(await b.result), 'OLN_PAIR_REFUSED');
});

test('alone on the LAN, or a peer that never confirms: OLN_PAIR_TIMEOUT', async () => {
  const lan = new FakeLan();
  const clock = new FakeClock();
  const a = side(lan, clock, '10.0.0.1', 0, () => true);
  run(lan, clock, () => a.session.state === 'failed', 100);
  assert.equal(code(await a.result), 'OLN_PAIR_TIMEOUT');

  const lan2 = new FakeLan();
  const c = side(lan2, clock, '10.0.0.1', 0, () => true);
  const d = side(lan2, clock, '10.0.0.2', 1); // shows the code, nobody answers
  run(lan2, clock, () => c.session.state === 'failed', 100);
  assert.equal(code(await c.result), 'OLN_PAIR_TIMEOUT');
  d.session.stop();
  assert.equal(code(await d.result), 'OLN_PAIR_TIMEOUT');
});

test('a third machine pairing at once: OLN_PAIR_CROWDED, nobody gets a peer', async () => {
  const lan = new FakeLan();
  const clock = new FakeClock();
  const all = [0, 1, 2].map((i) => side(lan, clock, `10.0.0.${i + 1}`, i, () => true));
  run(lan, clock, () => all.every((s) => s.session.state === 'failed'));
  for (const s of all) assert.equal(code(await s.result), 'OLN_PAIR_CROWDED');
});

/** A machine in the middle, driven by hand: sees what A sends, and sends A what it likes. */
function middle(lan: FakeLan, addr: string) {
  const seen: PairMessage[] = [];
  lan.members.set(addr, (b) => {
    const d = decodePairMessage(b);
    if (d.ok) seen.push(d.message);
  });
  return {
    seen,
    send: (m: PairMessage, to: string) => lan.queue.push({ bytes: encodePairMessage(m), from: addr, to }),
  };
}

test("a reveal that does not open its commitment (a key chosen after seeing A's nonce): OLN_PAIR_MISMATCH", async () => {
  const lan = new FakeLan();
  const clock = new FakeClock();
  const a = side(lan, clock, '10.0.0.1', 0, () => true);
  const m = middle(lan, '10.0.0.9');
  const sid = new Uint8Array(16).fill(9);
  const committed = { sid, cert: der(2), nonce: new Uint8Array(32).fill(1) };
  m.send({ kind: 'commit', sid, commit: commitment(committed) }, '10.0.0.1');
  run(lan, clock, () => m.seen.some((x) => x.kind === 'reveal'));
  const aReveal = m.seen.find((x) => x.kind === 'reveal')!;
  assert.equal(aReveal.kind, 'reveal');
  // Now that A's nonce is known, M would like another nonce (or certificate) than it committed to.
  m.send({ ...committed, kind: 'reveal', nonce: new Uint8Array(32).fill(2), to: aReveal.sid }, '10.0.0.1');
  run(lan, clock, () => a.session.state === 'failed');
  assert.equal(code(await a.result), 'OLN_PAIR_MISMATCH');
  assert.equal(a.codes.length, 0, 'no code was shown');
});

test("A's own certificate sent back to it under a new session: OLN_PAIR_MISMATCH", async () => {
  const lan = new FakeLan();
  const clock = new FakeClock();
  const a = side(lan, clock, '10.0.0.1', 0, () => true);
  const m = middle(lan, '10.0.0.9');
  const mine = { sid: new Uint8Array(16).fill(7), cert: der(0), nonce: new Uint8Array(32).fill(3) };
  m.send({ kind: 'commit', sid: mine.sid, commit: commitment(mine) }, '10.0.0.1');
  run(lan, clock, () => m.seen.some((x) => x.kind === 'reveal'));
  const to = m.seen.find((x) => x.kind === 'reveal')!.sid;
  m.send({ kind: 'reveal', ...mine, to }, '10.0.0.1');
  run(lan, clock, () => a.session.state === 'failed');
  assert.equal(code(await a.result), 'OLN_PAIR_MISMATCH');
});

test("replays of another session's reveal and confirm, and reveals from another address, are dropped", async () => {
  const lan = new FakeLan();
  const clock = new FakeClock();
  // An earlier, finished exchange between A and B, recorded by M.
  const recorded: { bytes: Buffer; from: string; to: string | null }[] = [];
  lan.filter = (d) => {
    recorded.push(d);
    return true;
  };
  const a1 = side(lan, clock, '10.0.0.1', 0, () => true);
  const b1 = side(lan, clock, '10.0.0.2', 1, () => true);
  run(lan, clock, () => a1.session.state === 'done' && b1.session.state === 'done');
  lan.filter = () => true;

  // A pairs again, with C this time; M replays B's old datagrams (from B's address and its own).
  const lan2 = new FakeLan();
  const a = side(lan2, clock, '10.0.0.1', 0, () => true);
  const c = side(lan2, clock, '10.0.0.3', 2, () => true);
  // (A replayed commit would make A see a second machine pairing: OLN_PAIR_CROWDED, tested above.)
  const kind = (b: Buffer): string | undefined => {
    const d = decodePairMessage(b);
    return d.ok ? d.message.kind : undefined;
  };
  const replays = recorded.filter((x) => x.from === '10.0.0.2' && kind(x.bytes) !== 'commit');
  assert.ok(replays.some((x) => kind(x.bytes) === 'reveal') && replays.some((x) => kind(x.bytes) === 'confirm'));
  for (const r of replays) {
    lan2.queue.push({ ...r, to: '10.0.0.1' });
    lan2.queue.push({ ...r, from: '10.0.0.9', to: '10.0.0.1' });
  }
  run(lan2, clock, () => a.session.state === 'done' && c.session.state === 'done');
  assert.equal(((await a.result) as PairPeer).id, ids[2]!.id, 'A paired with C, not the replayed B');
  assert.ok(a.session.stats.stray >= replays.length * 2, 'every replay was dropped as stray');
});

test('malformed, foreign and oversized datagrams are dropped and counted; the exchange goes on', async () => {
  const lan = new FakeLan();
  const clock = new FakeClock();
  const a = side(lan, clock, '10.0.0.1', 0, () => true);
  const b = side(lan, clock, '10.0.0.2', 1, () => true);
  const header = Buffer.from([...PAIR_MAGIC, 1]);
  const garbage = [
    Buffer.from('hello'),
    Buffer.from([...PAIR_MAGIC, 2, 0x80]), // another version
    Buffer.concat([header, Buffer.from(encode({ k: 'commit', s: new Uint8Array(16), c: new Uint8Array(31) }))]),
    Buffer.concat([header, Buffer.from(encode({ k: 'commit', s: new Uint8Array(16), c: new Uint8Array(32), x: 1 }))]),
    Buffer.concat([header, Buffer.from(encode({ k: 'hello', s: new Uint8Array(16) }))]),
    Buffer.concat([header, Buffer.alloc(MAX_PAIR_DATAGRAM)]),
    Buffer.concat([header, Buffer.from([0xc1])]),
  ];
  for (const g of garbage) lan.queue.push({ bytes: g, from: '10.0.0.7', to: null });
  run(lan, clock, () => a.session.state === 'done' && b.session.state === 'done');
  assert.equal(((await a.result) as PairPeer).id, ids[1]!.id);
  assert.equal(a.session.stats.malformed, garbage.length);
});

test('the wire format: each kind round-trips; decoding random bytes never throws', () => {
  const sid = new Uint8Array(16).fill(1);
  const to = new Uint8Array(16).fill(2);
  const msgs: PairMessage[] = [
    { kind: 'commit', sid, commit: new Uint8Array(32).fill(3) },
    { kind: 'reveal', sid, to, cert: der(0), nonce: new Uint8Array(32).fill(4) },
    { kind: 'confirm', sid, to, ok: true, transcript: new Uint8Array(32).fill(5) },
  ];
  for (const m of msgs) {
    const d = decodePairMessage(encodePairMessage(m));
    assert.ok(d.ok);
    const hex = (x: PairMessage) =>
      Object.fromEntries(
        Object.entries(x).map(([k, v]) => [k, v instanceof Uint8Array ? Buffer.from(v).toString('hex') : v]),
      );
    assert.deepEqual(hex(d.message), hex(m));
  }
  assert.throws(() => encodePairMessage({ kind: 'commit', sid: new Uint8Array(3), commit: new Uint8Array(32) }));
  for (let i = 0; i < 2000; i++) {
    const len = Math.floor(Math.random() * 80);
    const bytes = Buffer.concat([
      Buffer.from([...PAIR_MAGIC, 1]),
      Buffer.from(Array.from({ length: len }, () => Math.floor(Math.random() * 256))),
    ]);
    const d = decodePairMessage(bytes);
    assert.equal(typeof d.ok, 'boolean');
  }
});
