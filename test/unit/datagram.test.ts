import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { encode } from '@msgpack/msgpack';
import { DatagramVerifier } from '../../src/net/datagram-auth.ts';
import { decodeDatagram, encodeDatagram, SIGNATURE_LENGTH, type DecodedDatagram } from '../../src/net/datagram.ts';
import { LAN_MAGIC, LAN_PROTOCOL_VERSION, MAX_DATAGRAM, type LanDatagram } from '../../src/protocol/lan.ts';
import { makeIdentities } from '../helpers/lan-identities.ts';

const [ME, OTHER] = (await makeIdentities(2)) as [
  Awaited<ReturnType<typeof makeIdentities>>[number],
  Awaited<ReturnType<typeof makeIdentities>>[number],
];

const BASE: LanDatagram = {
  kind: 'announce',
  id: ME.id,
  boot: 'k3x9-boot',
  role: 'server',
  port: 11435,
  seq: 42,
  load: { inFlight: 3, workers: 8 },
  models: 'sha256.1a2b',
  term: 7,
  leader: ME.id,
  draining: false,
};

/** Header + length + msgpack of any value + a zero signature: for crafting bodies the encoder would refuse. */
function framed(body: unknown, version = LAN_PROTOCOL_VERSION): Buffer {
  const b = Buffer.from(encode(body));
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([Buffer.from(LAN_MAGIC), Buffer.of(version), len, b, Buffer.alloc(SIGNATURE_LENGTH)]);
}

function reason(buf: Uint8Array): string {
  const r = decodeDatagram(buf);
  assert.equal(r.ok, false, 'expected a refusal');
  return r.ok ? '' : r.reason;
}

function decoded(buf: Uint8Array): DecodedDatagram {
  const r = decodeDatagram(buf);
  assert.ok(r.ok, 'expected a datagram');
  return r;
}

test('every kind and role round-trips, signed, with the certificate; a datagram stays under 1200 bytes', () => {
  const samples: LanDatagram[] = [
    BASE,
    { ...BASE, kind: 'query', role: 'client', port: 0, models: '', term: 0, leader: '', seq: 0 },
    { ...BASE, kind: 'bye', seq: Number.MAX_SAFE_INTEGER, port: 65_535, draining: true },
  ];
  for (const d of samples) {
    const buf = encodeDatagram(d, ME.signer);
    assert.ok(buf.length <= MAX_DATAGRAM);
    assert.deepEqual([...buf.subarray(0, 5)], [...LAN_MAGIC, LAN_PROTOCOL_VERSION]);
    const r = decoded(buf);
    assert.deepEqual(r.datagram, d);
    assert.deepEqual(Buffer.from(r.cert), Buffer.from(ME.signer.certDer));
    assert.equal(r.signature.length, SIGNATURE_LENGTH);
    assert.ok(new DatagramVerifier().verify(r, 0).ok);
  }
  // The biggest a node sends: every string at its longest in practice (ids, a 16-hex models digest).
  const big = encodeDatagram(
    {
      ...BASE,
      boot: 'f'.repeat(16),
      models: 'a'.repeat(16),
      term: 2 ** 40,
      seq: 2 ** 50,
      load: { inFlight: 2 ** 30, workers: 64 },
    },
    ME.signer,
  );
  assert.ok(big.length < 900, `${big.length} bytes`);
});

test('unknown extra keys are ignored, not passed on', () => {
  const r = decodeDatagram(
    framed({ ...BASE, cert: Buffer.from(ME.signer.certDer), future: { nested: [1, 2, 3] }, note: 'x'.repeat(200) }),
  );
  assert.ok(r.ok);
  assert.deepEqual(r.datagram, BASE);
});

test('each rejection reason', () => {
  const good = encodeDatagram(BASE, ME.signer);
  assert.equal(reason(Buffer.from('OLN')), 'magic');
  assert.equal(reason(Buffer.concat([Buffer.from('XXXX'), good.subarray(4)])), 'magic');
  assert.equal(
    reason(Buffer.concat([good.subarray(0, 4), Buffer.of(1), good.subarray(5)])),
    'version',
    'version 1 is refused',
  );
  assert.equal(reason(good.subarray(0, 5)), 'malformed');
  assert.equal(reason(good.subarray(0, good.length - 1)), 'malformed', 'a short signature');
  assert.equal(reason(Buffer.concat([good, Buffer.of(0)])), 'malformed', 'a byte after the signature');
  assert.equal(reason(Buffer.alloc(MAX_DATAGRAM + 1)), 'oversize');
  assert.equal(reason(framed({ ...BASE })), 'malformed', 'no certificate');
  assert.equal(reason(framed({ cert: Buffer.alloc(901) })), 'malformed', 'certificate too long');
  assert.equal(reason(framed({ ...BASE, cert: 'text' })), 'malformed');
});

test('every field is checked for type, bounds and charset', () => {
  const cert = Buffer.from(ME.signer.certDer);
  const bad: Record<string, unknown>[] = [
    { kind: 'hello' },
    { kind: 1 },
    { id: '' },
    { id: 'x'.repeat(65) },
    { id: 'a b' },
    { id: 'é' },
    { boot: '' },
    { role: 'proxy' },
    { port: -1 },
    { port: 65_536 },
    { port: 1.5 },
    { port: '11435' },
    { seq: -1 },
    { seq: 2 ** 53 },
    { seq: 0.5 },
    { load: null },
    { load: { inFlight: -1, workers: 1 } },
    { load: [1, 2] },
    { models: 'x'.repeat(129) },
    { term: -3 },
    { leader: 'x'.repeat(65) },
    { draining: 'yes' },
    { draining: undefined },
  ];
  for (const patch of bad) {
    assert.equal(reason(framed({ ...BASE, cert, ...patch })), 'malformed', JSON.stringify(patch));
    assert.throws(
      () => encodeDatagram({ ...BASE, ...patch } as LanDatagram, ME.signer),
      TypeError,
      JSON.stringify(patch),
    );
  }
});

test("issue #22: only the holder of the id's key makes a datagram that verifies", () => {
  const v = new DatagramVerifier();
  const good = encodeDatagram(BASE, ME.signer);
  assert.deepEqual(v.verify(decoded(good), 0), { ok: true, fp: ME.fp });
  // Another node's own certificate and key, claiming ME's id: the certificate is not ME's.
  assert.deepEqual(v.verify(decoded(encodeDatagram(BASE, OTHER.signer)), 0), { ok: false, reason: 'forged' });
  // ME's certificate (copied from its announce) with OTHER's signature.
  const stolenCert = { certDer: ME.signer.certDer, sign: OTHER.signer.sign };
  assert.deepEqual(v.verify(decoded(encodeDatagram(BASE, stolenCert)), 0), { ok: false, reason: 'forged' });
  // ME's real datagram with one field changed after signing: each byte of the body counts.
  for (const [from, to] of [
    ['k3x9', 'k3x8'],
    ['1a2b', '1a2c'],
  ] as const) {
    const tampered = Buffer.from(good.toString('latin1').replace(from, to), 'latin1');
    assert.deepEqual(v.verify(decoded(tampered), 0), { ok: false, reason: 'forged' }, `${from} -> ${to}`);
  }
  const flipped = Buffer.from(good);
  flipped[flipped.length - 1]! ^= 1;
  assert.deepEqual(v.verify(decoded(flipped), 0), { ok: false, reason: 'forged' }, 'a flipped signature bit');
  // The id of a cert that is not a certificate at all.
  const junk = decoded(good);
  assert.deepEqual(v.verify({ ...junk, cert: randomBytes(300) }, 0), { ok: false, reason: 'forged' });
  assert.equal(v.cached, 1, 'only the verified certificate is cached');
});

test('verification is bounded: new certificates and signatures each have a global budget', () => {
  const v = new DatagramVerifier({ newCerts: { perSecond: 1, burst: 2 }, verifies: { perSecond: 1, burst: 3 } });
  const junk = (i: number): DecodedDatagram => ({
    ...decoded(encodeDatagram({ ...BASE, seq: i }, ME.signer)),
    cert: randomBytes(300),
  });
  assert.equal(v.verify(junk(1), 0).ok, false);
  assert.equal(v.verify(junk(2), 0).ok, false);
  assert.deepEqual(
    v.verify(junk(3), 0),
    { ok: false, reason: 'verifyLimited' },
    'a third unknown certificate in the same instant',
  );
  assert.deepEqual(v.verify(decoded(encodeDatagram(BASE, ME.signer)), 1000), { ok: true, fp: ME.fp });
  // Known certificate now: only the signature budget counts.
  assert.equal(v.verify(decoded(encodeDatagram(BASE, ME.signer)), 1000).ok, true);
  assert.equal(v.verify(decoded(encodeDatagram(BASE, ME.signer)), 1000).ok, true);
  assert.deepEqual(v.verify(decoded(encodeDatagram(BASE, ME.signer)), 1000), { ok: false, reason: 'verifyLimited' });
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
  for (const s of [d.id, d.boot, d.models, d.leader]) assert.match(s, /^[0-9a-zA-Z:._-]{0,128}$/);
  assert.ok(d.id.length >= 1 && d.id.length <= 64 && d.boot.length >= 1);
  assert.ok(Number.isInteger(d.port) && d.port >= 0 && d.port <= 65_535);
  for (const n of [d.seq, d.term, d.load.inFlight, d.load.workers]) assert.ok(Number.isSafeInteger(n) && n >= 0);
  assert.equal(typeof d.draining, 'boolean');
  assert.deepEqual(Object.keys(d).sort(), Object.keys(BASE).sort());
}

test('fuzz: 20 000 hostile inputs never throw and give a refusal or a well-typed datagram; none verifies', () => {
  const rand = prng(0x0c0ffee);
  const int = (n: number): number => Math.floor(rand() * n);
  const good = [encodeDatagram(BASE, ME.signer), encodeDatagram({ ...BASE, kind: 'bye', draining: true }, ME.signer)];
  const cert = Buffer.from(ME.signer.certDer);
  const shapes: unknown[] = [
    {},
    [],
    'x'.repeat(1000),
    { ...BASE, cert, load: { inFlight: 'x' } },
    { kind: 'announce', cert },
    { ...BASE, cert, id: { toString: 'x' } },
    { ...BASE, cert, seq: -0 },
    { ...BASE, cert, port: 2 ** 64 },
    { ...BASE, cert },
  ];
  const nested = (depth: number): Buffer => Buffer.concat([Buffer.alloc(depth, 0x91), Buffer.of(0xc0)]);
  const header = Buffer.from([...LAN_MAGIC, LAN_PROTOCOL_VERSION]);
  const v = new DatagramVerifier({
    newCerts: { perSecond: 1e9, burst: 1e9 },
    verifies: { perSecond: 1e9, burst: 1e9 },
  });
  let accepted = 0;
  for (let i = 0; i < 20_000; i++) {
    let input: Buffer;
    switch (i % 8) {
      case 0:
        input = randomBytes(int(1300));
        break;
      case 1: {
        const g = good[int(2)]!;
        input = g.subarray(0, int(g.length));
        break;
      }
      case 2: {
        // bit flips in a valid datagram
        input = Buffer.from(good[int(2)]!);
        for (let f = 1 + int(4); f > 0; f--) input[int(input.length)]! ^= 1 << int(8);
        break;
      }
      case 3:
        input = Buffer.concat([randomBytes(4), good[0]!.subarray(4)]);
        break;
      case 4:
        input = framed({ ...BASE, cert }, int(256));
        break;
      case 5:
        input = framed(shapes[int(shapes.length)]);
        break;
      case 6:
        input = Buffer.concat([header, nested(int(2000))]);
        break;
      default:
        input = Buffer.concat([header, randomBytes(int(1200))]);
        break;
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
      if (!good.some((g) => g.equals(input))) assert.equal(v.verify(r, 0).ok, false, `input ${i} verified`);
    } else {
      assert.ok(['magic', 'version', 'malformed', 'oversize'].includes(r.reason));
    }
  }
  assert.ok(accepted > 0 && accepted < 5_000, `accepted ${accepted}`);
});

test('decode is total even on inputs that are not buffers', () => {
  for (const v of [null, undefined, 'OLNA', 42, {}, [0x4f, 0x4c, 0x4e, 0x41, 2]]) {
    assert.deepEqual(decodeDatagram(v as unknown as Uint8Array), { ok: false, reason: 'malformed' });
  }
});
