/**
 * Wire format of `ollana pair` (UDP, port 11437 by default, inside the LAN only): 4 magic bytes
 * (`OLNP`), 1 version byte (1), then one msgpack map. Three kinds: `commit` (a session id and the
 * commitment to this side's certificate and nonce), `reveal` (the certificate and nonce, addressed to
 * the peer's session), `confirm` (the person's answer, bound to the exchange's transcript). Decoding
 * faces anyone on the LAN: sizes, types and lengths are checked, nothing the sender controls throws,
 * and anything else is a reason to drop the datagram.
 */
import { decode, encode } from '@msgpack/msgpack';

export const PAIR_MAGIC = Uint8Array.from([0x4f, 0x4c, 0x4e, 0x50]); // "OLNP"
export const PAIR_VERSION = 1;
/** Largest pairing datagram sent or accepted: fits one Ethernet frame. */
export const MAX_PAIR_DATAGRAM = 1200;
/** Longest certificate carried; ollana's P-256 certificates are ~400 bytes. */
export const MAX_PAIR_CERT = 900;
export const SID_LENGTH = 16;
export const NONCE_LENGTH = 32;
export const HASH_LENGTH = 32;

export type PairMessage =
  | { readonly kind: 'commit'; readonly sid: Uint8Array; readonly commit: Uint8Array }
  | {
      readonly kind: 'reveal';
      readonly sid: Uint8Array;
      readonly to: Uint8Array;
      readonly cert: Uint8Array;
      readonly nonce: Uint8Array;
    }
  | {
      readonly kind: 'confirm';
      readonly sid: Uint8Array;
      readonly to: Uint8Array;
      readonly ok: boolean;
      /** SHA-256 of the exchange's transcript, as the sender computed it. */
      readonly transcript: Uint8Array;
    };

export type PairDropReason = 'magic' | 'version' | 'malformed' | 'oversize';
export type PairDecodeResult =
  | { readonly ok: true; readonly message: PairMessage }
  | { readonly ok: false; readonly reason: PairDropReason };

const HEADER = PAIR_MAGIC.length + 1;

function bin(v: unknown, min: number, max = min): Uint8Array {
  if (!(v instanceof Uint8Array) || v.length < min || v.length > max) throw new TypeError('bad binary field');
  return v;
}

function check(v: unknown): PairMessage {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new TypeError('not a map');
  const m = v as Record<string, unknown>;
  const keys = Object.keys(m).sort().join(',');
  const sid = bin(m.s, SID_LENGTH);
  switch (m.k) {
    case 'commit':
      if (keys !== 'c,k,s') throw new TypeError('unexpected fields');
      return { kind: 'commit', sid, commit: bin(m.c, HASH_LENGTH) };
    case 'reveal':
      if (keys !== 'cert,k,n,s,to') throw new TypeError('unexpected fields');
      return {
        kind: 'reveal',
        sid,
        to: bin(m.to, SID_LENGTH),
        cert: bin(m.cert, 1, MAX_PAIR_CERT),
        nonce: bin(m.n, NONCE_LENGTH),
      };
    case 'confirm':
      if (keys !== 'h,k,ok,s,to' || typeof m.ok !== 'boolean') throw new TypeError('unexpected fields');
      return { kind: 'confirm', sid, to: bin(m.to, SID_LENGTH), ok: m.ok, transcript: bin(m.h, HASH_LENGTH) };
    default:
      throw new TypeError('unknown kind');
  }
}

function toWire(m: PairMessage): Record<string, unknown> {
  switch (m.kind) {
    case 'commit':
      return { k: m.kind, s: m.sid, c: m.commit };
    case 'reveal':
      return { k: m.kind, s: m.sid, to: m.to, cert: m.cert, n: m.nonce };
    case 'confirm':
      return { k: m.kind, s: m.sid, to: m.to, ok: m.ok, h: m.transcript };
  }
}

/** Encodes a message; one that a peer would refuse throws (a bug on this side, not input). */
export function encodePairMessage(m: PairMessage): Buffer {
  const wire = toWire(m);
  check(wire);
  const body = encode(wire);
  if (HEADER + body.length > MAX_PAIR_DATAGRAM) throw new RangeError('pairing datagram too large');
  const buf = Buffer.allocUnsafe(HEADER + body.length);
  buf.set(PAIR_MAGIC, 0);
  buf[PAIR_MAGIC.length] = PAIR_VERSION;
  buf.set(body, HEADER);
  return buf;
}

/** Decodes bytes from the network. Never throws, whatever the input. */
export function decodePairMessage(buf: Uint8Array): PairDecodeResult {
  try {
    if (buf.length > MAX_PAIR_DATAGRAM) return { ok: false, reason: 'oversize' };
    if (buf.length < PAIR_MAGIC.length || PAIR_MAGIC.some((b, i) => buf[i] !== b))
      return { ok: false, reason: 'magic' };
    if (buf.length < HEADER) return { ok: false, reason: 'malformed' };
    if (buf[PAIR_MAGIC.length] !== PAIR_VERSION) return { ok: false, reason: 'version' };
    const value: unknown = decode(buf.subarray(HEADER), {
      maxStrLength: MAX_PAIR_DATAGRAM,
      maxBinLength: MAX_PAIR_DATAGRAM,
      maxArrayLength: 16,
      maxMapLength: 16,
      maxExtLength: 0,
    });
    return { ok: true, message: check(value) };
  } catch {
    return { ok: false, reason: 'malformed' };
  }
}
