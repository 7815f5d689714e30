import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { encode } from '@msgpack/msgpack';
import { decodeDatagram, encodeDatagram, MAX_MEMBERS } from '../../src/net/datagram.ts';
import { LAN_MAGIC, LAN_PROTOCOL_VERSION, MAX_DATAGRAM, type LanDatagram, type MemberEntry } from '../../src/protocol/lan.ts';

const BASE: LanDatagram = {
  kind: 'announce', id: 'f'.repeat(64), boot: 'k3x9-boot', role: 'server', port: 11435, fp: 'AB:CD:EF', seq: 42,
  load: { inFlight: 3, workers: 8 }, models: 'sha256.1a2b', term: 7, leader: 'f'.repeat(64),
};

function member(i: number): MemberEntry {
  return { id: i.toString(16).padStart(64, '0'), addr: `10.0.${i >> 8}.${i & 255}`, port: 11435 };
}

/** Header + msgpack of any value: for crafting bodies the encoder would refuse. */
function framed(body: unknown, version = LAN_PROTOCOL_VERSION): Buffer {
  return Buffer.concat([Buffer.from(LAN_MAGIC), Buffer.of(version), Buffer.from(encode(body))]);
}

function reason(buf: Uint8Array): string {
  const r = decodeDatagram(buf);
  assert.equal(r.ok, false, 'expected a refusal');
  return r.ok ? '' : r.reason;
}

test('every kind and role round-trips, with and without members', () => {
  const samples: LanDatagram[] = [
    BASE,
    { ...BASE, kind: 'query', role: 'client', port: 0, fp: '', models: '', term: 0, leader: '', seq: 0 },
    { ...BASE, kind: 'bye', seq: Number.MAX_SAFE_INTEGER, port: 65_535 },
    { ...BASE, members: [member(1), { id: 'x', addr: 'fd00::1', port: 443 }] },
    { ...BASE, members: [] },
  ];
  for (const d of samples) {
    const buf = encodeDatagram(d);
    assert.ok(buf.length <= MAX_DATAGRAM);
    assert.deepEqual([...buf.subarray(0, 5)], [...LAN_MAGIC, LAN_PROTOCOL_VERSION]);
    assert.deepEqual(decodeDatagram(buf), { ok: true, datagram: d });
  }
});

test('unknown extra keys are ignored, not passed on', () => {
  const r = decodeDatagram(framed({ ...BASE, future: { nested: [1, 2, 3] }, note: 'x'.repeat(500) }));
  assert.deepEqual(r, { ok: true, datagram: BASE });
});

test('each rejection reason', () => {
  const good = encodeDatagram(BASE);
  assert.equal(reason(Buffer.alloc(0)), 'magic');
  assert.equal(reason(Buffer.from('OLN')), 'magic');
  assert.equal(reason(Buffer.from('HTTP/1.1 200 OK\r\n')), 'magic');
  assert.equal(reason(Buffer.concat([Buffer.from('OLNB'), good.subarray(4)])), 'magic');
  assert.equal(reason(good.subarray(0, 4)), 'malformed'); // magic but no version byte
  assert.equal(reason(framed(BASE, 2)), 'version');
  assert.equal(reason(framed(BASE, 0)), 'version');
  assert.equal(reason(Buffer.concat([good, Buffer.alloc(MAX_DATAGRAM + 1 - good.length)])), 'oversize');
  assert.equal(reason(Buffer.alloc(1500, 0x41)), 'oversize');
  assert.equal(reason(good.subarray(0, good.length - 1)), 'malformed'); // truncated msgpack
  assert.equal(reason(Buffer.concat([good, Buffer.of(0xc0)])), 'malformed'); // trailing bytes
  assert.equal(reason(good.subarray(0, 5)), 'malformed'); // header only
});

test('every field is checked for type, bounds and charset', () => {
  const bad: Record<string, unknown>[] = [
    { kind: 'hello' }, { kind: 1 }, { role: 'admin' },
    { id: '' }, { id: 'x'.repeat(65) }, { id: 'a b' }, { id: 'é' }, { id: '../../etc' + '\u0000' }, { id: 5 },
    { boot: '' }, { boot: null }, { fp: 'x'.repeat(129) }, { fp: 'a/b' }, { models: ['a'] }, { leader: 'x'.repeat(65) },
    { leader: '<script>' },
    { port: -1 }, { port: 65_536 }, { port: 1.5 }, { port: '80' }, { port: Number.NaN },
    { seq: -1 }, { seq: 2 ** 53 }, { seq: 0.5 }, { seq: '1' }, { term: -3 }, { term: Infinity },
    { load: null }, { load: [] }, { load: { inFlight: -1, workers: 1 } }, { load: { inFlight: 1 } }, { load: 'heavy' },
    { members: null }, { members: {} }, { members: 'x' },
    { members: Array.from({ length: MAX_MEMBERS + 1 }, (_, i) => ({ id: `m${i}`, addr: '10.0.0.1', port: 1 })) },
    { members: [{ id: 'm', addr: 'example.com', port: 1 }] }, { members: [{ id: 'm', addr: '10.0.0.256', port: 1 }] },
    { members: [{ id: 'm', addr: '10.0.0.1', port: 70_000 }] }, { members: [{ id: '', addr: '10.0.0.1', port: 1 }] },
    { members: [null] }, { members: [['m', '10.0.0.1', 1]] },
  ];
  for (const patch of bad) {
    assert.equal(reason(framed({ ...BASE, ...patch })), 'malformed', `accepted ${JSON.stringify(patch)}`);
  }
  for (const key of ['kind', 'id', 'boot', 'role', 'port', 'fp', 'seq', 'load', 'models', 'term', 'leader'] as const) {
    const { [key]: _gone, ...rest } = BASE;
    assert.equal(reason(framed(rest)), 'malformed', `accepted a datagram without ${key}`);
  }
  for (const body of [null, 42, 'announce', [BASE], new Date(0), new Uint8Array(8), true]) {
    assert.equal(reason(framed(body)), 'malformed', `accepted ${String(body)}`);
  }
  // A map key msgpack can carry but a JS object must not get.
  const proto = framed({ ...BASE }).toString('latin1').replace('\xa4kind', '\xa9__proto__');
  assert.notEqual(decodeDatagram(Buffer.from(proto, 'latin1')).ok, true);
});

test('members that do not fit are trimmed from the end; other oversize throws', () => {
  const many = Array.from({ length: MAX_MEMBERS }, (_, i) => member(i));
  const buf = encodeDatagram({ ...BASE, members: many });
  assert.ok(buf.length <= MAX_DATAGRAM, `${buf.length} bytes`);
  const r = decodeDatagram(buf);
  assert.ok(r.ok);
  const kept = r.datagram.members ?? [];
  assert.ok(kept.length > 0 && kept.length < MAX_MEMBERS, `kept ${kept.length}`);
  assert.deepEqual(kept, many.slice(0, kept.length), 'the first members are kept, in order');
  // One more member would not have fitted.
  const { members: _m, ...plain } = r.datagram;
  assert.ok(encode({ ...plain, members: many.slice(0, kept.length + 1) }).length + 5 > MAX_DATAGRAM);

  assert.throws(() => encodeDatagram({ ...BASE, id: 'x'.repeat(65) }), /cannot encode LAN datagram: id/);
  assert.throws(() => encodeDatagram({ ...BASE, port: 70_000 }), /port/);
});

test('more than MAX_MEMBERS members are cut to MAX_MEMBERS even when small', () => {
  const many = Array.from({ length: 40 }, (_, i) => ({ id: `m${i}`, addr: '10.0.0.1', port: 1 }));
  const r = decodeDatagram(encodeDatagram({ ...BASE, members: many }));
  assert.ok(r.ok);
  assert.equal(r.datagram.members?.length, MAX_MEMBERS);
});

/** A deterministic PRNG, so a fuzz failure can be replayed from its seed. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

function wellTyped(d: LanDatagram): void {
  assert.ok(['query', 'announce', 'bye'].includes(d.kind));
  assert.ok(['server', 'client'].includes(d.role));
  for (const s of [d.id, d.boot, d.fp, d.models, d.leader]) assert.match(s, /^[0-9a-zA-Z:._-]{0,128}$/);
  assert.ok(d.id.length >= 1 && d.id.length <= 64 && d.boot.length >= 1);
  assert.ok(Number.isInteger(d.port) && d.port >= 0 && d.port <= 65_535);
  for (const n of [d.seq, d.term, d.load.inFlight, d.load.workers]) assert.ok(Number.isSafeInteger(n) && n >= 0);
  assert.deepEqual(Object.keys(d).sort(), [...Object.keys(BASE), ...(d.members ? ['members'] : [])].sort());
  assert.ok(d.members === undefined || d.members.length <= MAX_MEMBERS);
}

test('fuzz: 20 000 hostile inputs never throw and give a refusal or a well-typed datagram', () => {
  const rand = prng(0x0c0ffee);
  const int = (n: number): number => Math.floor(rand() * n);
  const good = [encodeDatagram(BASE), encodeDatagram({ ...BASE, members: [member(1), member(2)] })];
  const shapes: unknown[] = [
    {}, [], 'x'.repeat(1000), { ...BASE, load: { inFlight: 'x' } }, { ...BASE, members: [{}] },
    { kind: 'announce' }, { ...BASE, id: { toString: 'x' } }, { ...BASE, seq: -0 }, { ...BASE, port: 2 ** 64 },
  ];
  const nested = (depth: number): Buffer => Buffer.concat([Buffer.alloc(depth, 0x91), Buffer.of(0xc0)]);
  const header = Buffer.from([...LAN_MAGIC, LAN_PROTOCOL_VERSION]);
  let accepted = 0;
  for (let i = 0; i < 20_000; i++) {
    let input: Buffer;
    switch (i % 8) {
      case 0: input = randomBytes(int(1300)); break;
      case 1: { const g = good[int(2)]!; input = g.subarray(0, int(g.length)); break; }
      case 2: { // bit flips in a valid datagram
        input = Buffer.from(good[int(2)]!);
        for (let f = 1 + int(4); f > 0; f--) input[int(input.length)]! ^= 1 << int(8);
        break;
      }
      case 3: input = Buffer.concat([randomBytes(4), good[0]!.subarray(4)]); break;
      case 4: input = framed(BASE, int(256)); break;
      case 5: input = framed(shapes[int(shapes.length)]); break;
      case 6: input = Buffer.concat([header, nested(int(2000))]); break;
      default: input = Buffer.concat([header, randomBytes(int(1200))]); break;
    }
    let r: ReturnType<typeof decodeDatagram>;
    try {
      r = decodeDatagram(input);
    } catch (err) {
      assert.fail(`input ${i} (${input.toString('hex')}) threw ${String(err)}`);
    }
    if (r.ok) {
      accepted++;
      wellTyped(r.datagram);
    } else {
      assert.ok(['magic', 'version', 'malformed', 'oversize'].includes(r.reason));
    }
  }
  // Bit flips in a string's characters, in seq, etc. still give valid datagrams: some must pass.
  assert.ok(accepted > 0 && accepted < 3_000, `accepted ${accepted}`);
});

test('decode is total even on inputs that are not buffers', () => {
  for (const v of [null, undefined, 'OLNA', 42, {}, [0x4f, 0x4c, 0x4e, 0x41, 1]]) {
    assert.deepEqual(decodeDatagram(v as unknown as Uint8Array), { ok: false, reason: 'malformed' });
  }
});
