/**
 * Wire format of the LAN discovery protocol (src/protocol/lan.ts): 4 magic bytes, 1 version byte, a
 * 2-byte body length (big endian), one msgpack map, then the sender's signature over everything
 * before it. Decoding is a trust boundary facing anyone on the LAN: every field is checked for type,
 * bounds and charset, garbage becomes a reason to count, and nothing the sender controls can throw.
 * Decoding does not verify the signature (datagram-auth.ts does, with a cache and a budget): it only
 * hands over the parts the check needs.
 */
import { decode, encode } from '@msgpack/msgpack';
import {
  LAN_MAGIC,
  LAN_PROTOCOL_VERSION,
  MAX_DATAGRAM,
  type LanDatagram,
  type LanKind,
  type LoadSummary,
  type NodeRole,
} from '../protocol/lan.ts';
import type { InputErrorCode } from '../errors.ts';

/** Longest id, boot or leader (a device id is 63). */
export const MAX_ID_LENGTH = 64;
/** Longest models digest. */
export const MAX_DIGEST_LENGTH = 128;
/** ECDSA P-256 signature as r || s (IEEE P1363), what node:crypto gives with dsaEncoding 'ieee-p1363'. */
export const SIGNATURE_LENGTH = 64;
/** Longest certificate carried; ollana's P-256 certificates are ~400 bytes. */
export const MAX_CERT_LENGTH = 900;

export type DatagramDropReason = 'magic' | 'version' | 'malformed' | 'oversize';
export interface DecodedDatagram {
  readonly datagram: LanDatagram;
  /** the sender's certificate (DER), as carried */
  readonly cert: Uint8Array;
  /** the bytes the signature covers */
  readonly signed: Uint8Array;
  readonly signature: Uint8Array;
}
export type DecodeResult =
  | ({ readonly ok: true } & DecodedDatagram)
  | { readonly ok: false; readonly reason: DatagramDropReason };

/** What signs this node's datagrams: its certificate and a signature function over its key. */
export interface DatagramSigner {
  readonly certDer: Uint8Array;
  sign(data: Uint8Array): Uint8Array;
}

const HEADER_LENGTH = LAN_MAGIC.length + 1 + 2;
const KINDS: readonly LanKind[] = ['query', 'announce', 'bye'];
const ROLES: readonly NodeRole[] = ['server', 'client'];
const TOKEN = /^[0-9a-zA-Z:._-]*$/;

/** Thrown (as a value) by the field checks; caught in decodeDatagram, surfaced in encodeDatagram. */
class FieldError extends Error {
  override readonly name = 'FieldError';
  readonly code = 'OLN_BAD_DATAGRAM_FIELD' satisfies InputErrorCode;
}

/**
 * Encodes and signs a datagram. Anything too big, or any field a peer would refuse, throws: that is
 * a bug on our side, not input.
 */
export function encodeDatagram(d: LanDatagram, signer: DatagramSigner): Buffer {
  let body: Uint8Array;
  try {
    body = encode({ ...bodyOf(checkDatagram(toRecord(d))), cert: signer.certDer });
  } catch (err) {
    throw new TypeError(`cannot encode LAN datagram: ${(err as Error).message}`, { cause: err });
  }
  const length = HEADER_LENGTH + body.length + SIGNATURE_LENGTH;
  if (length > MAX_DATAGRAM) throw new RangeError(`LAN datagram of ${length} bytes exceeds ${MAX_DATAGRAM} bytes`);
  const buf = Buffer.allocUnsafe(length);
  buf.set(LAN_MAGIC, 0);
  buf[LAN_MAGIC.length] = LAN_PROTOCOL_VERSION;
  buf.writeUInt16BE(body.length, LAN_MAGIC.length + 1);
  buf.set(body, HEADER_LENGTH);
  const signature = signer.sign(buf.subarray(0, HEADER_LENGTH + body.length));
  if (signature.length !== SIGNATURE_LENGTH)
    throw new TypeError(`a LAN datagram signature must be ${SIGNATURE_LENGTH} bytes`);
  buf.set(signature, HEADER_LENGTH + body.length);
  return buf;
}

/** Decodes bytes from the network. Never throws, whatever the input. */
export function decodeDatagram(buf: Uint8Array): DecodeResult {
  try {
    if (!(buf instanceof Uint8Array)) return { ok: false, reason: 'malformed' };
    if (buf.length > MAX_DATAGRAM) return { ok: false, reason: 'oversize' };
    if (buf.length < LAN_MAGIC.length) return { ok: false, reason: 'magic' };
    for (let i = 0; i < LAN_MAGIC.length; i++) {
      if (buf[i] !== LAN_MAGIC[i]) return { ok: false, reason: 'magic' };
    }
    if (buf.length < LAN_MAGIC.length + 1) return { ok: false, reason: 'malformed' };
    if (buf[LAN_MAGIC.length] !== LAN_PROTOCOL_VERSION) return { ok: false, reason: 'version' };
    if (buf.length < HEADER_LENGTH) return { ok: false, reason: 'malformed' };
    const bodyLength = (buf[LAN_MAGIC.length + 1]! << 8) | buf[LAN_MAGIC.length + 2]!;
    if (buf.length !== HEADER_LENGTH + bodyLength + SIGNATURE_LENGTH) return { ok: false, reason: 'malformed' };
    // The 1200-byte bound already limits every length; the explicit maxima make intent plain.
    const value: unknown = decode(buf.subarray(HEADER_LENGTH, HEADER_LENGTH + bodyLength), {
      maxStrLength: MAX_DATAGRAM,
      maxBinLength: MAX_DATAGRAM,
      maxArrayLength: MAX_DATAGRAM,
      maxMapLength: MAX_DATAGRAM,
      maxExtLength: MAX_DATAGRAM,
    });
    if (!isRecord(value)) return { ok: false, reason: 'malformed' };
    const cert = value.cert;
    if (!(cert instanceof Uint8Array) || cert.length === 0 || cert.length > MAX_CERT_LENGTH)
      return { ok: false, reason: 'malformed' };
    return {
      ok: true,
      datagram: checkDatagram(value),
      cert,
      signed: buf.subarray(0, HEADER_LENGTH + bodyLength),
      signature: buf.subarray(HEADER_LENGTH + bodyLength),
    };
  } catch {
    // msgpack errors (truncated, extra bytes, bad types, __proto__ keys) and FieldError alike.
    return { ok: false, reason: 'malformed' };
  }
}

/** The map that goes on the wire (without the certificate): known keys only. */
function bodyOf(d: LanDatagram): Record<string, unknown> {
  return {
    kind: d.kind,
    id: d.id,
    boot: d.boot,
    role: d.role,
    port: d.port,
    seq: d.seq,
    load: { inFlight: d.load.inFlight, workers: d.load.workers },
    models: d.models,
    term: d.term,
    leader: d.leader,
    draining: d.draining,
  };
}

function toRecord(value: object): Record<string, unknown> {
  return value as Record<string, unknown>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** Builds a fresh datagram from checked fields only; unknown keys stay behind. */
function checkDatagram(v: Record<string, unknown>): LanDatagram {
  if (typeof v.draining !== 'boolean') throw new FieldError('draining must be a boolean');
  return {
    kind: oneOf(v.kind, KINDS, 'kind'),
    id: token(v.id, 'id', 1, MAX_ID_LENGTH),
    boot: token(v.boot, 'boot', 1, MAX_ID_LENGTH),
    role: oneOf(v.role, ROLES, 'role'),
    port: port(v.port, 'port'),
    seq: count(v.seq, 'seq'),
    load: load(v.load),
    models: token(v.models, 'models', 0, MAX_DIGEST_LENGTH),
    term: count(v.term, 'term'),
    leader: token(v.leader, 'leader', 0, MAX_ID_LENGTH),
    draining: v.draining,
  };
}

function oneOf<T extends string>(value: unknown, allowed: readonly T[], field: string): T {
  const found = allowed.find((a) => a === value);
  if (found === undefined) throw new FieldError(`${field} must be one of ${allowed.join(', ')}`);
  return found;
}

function token(value: unknown, field: string, min: number, max: number): string {
  if (typeof value !== 'string' || value.length < min || value.length > max || !TOKEN.test(value)) {
    throw new FieldError(`${field} must be ${min}..${max} characters of [0-9a-zA-Z:._-]`);
  }
  return value;
}

function port(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > 65_535) {
    throw new FieldError(`${field} must be an integer port 0..65535`);
  }
  return value;
}

function count(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) {
    throw new FieldError(`${field} must be a non-negative safe integer`);
  }
  return value;
}

function load(value: unknown): LoadSummary {
  if (!isRecord(value)) throw new FieldError('load must be a map');
  return { inFlight: count(value.inFlight, 'load.inFlight'), workers: count(value.workers, 'load.workers') };
}
