/**
 * Wire format of the LAN discovery protocol (src/protocol/lan.ts): 4 magic bytes, 1 version byte, one
 * msgpack map. Decoding is a trust boundary facing anyone on the LAN: every field is checked for type,
 * bounds and charset, garbage becomes a reason to count, and nothing the sender controls can throw.
 */
import { isIP } from 'node:net';
import { decode, encode } from '@msgpack/msgpack';
import {
  LAN_MAGIC, LAN_PROTOCOL_VERSION, MAX_DATAGRAM,
  type LanDatagram, type LanKind, type LoadSummary, type MemberEntry, type NodeRole,
} from '../protocol/lan.ts';

/** Longest id, boot or leader (a SHA-256 hex digest is 64). */
export const MAX_ID_LENGTH = 64;
/** Longest fingerprint or models digest (a colon-separated SHA-256 fingerprint is 95). */
export const MAX_DIGEST_LENGTH = 128;
/** Most members a leader lists; with the 1200-byte limit fewer may fit, and the encoder trims. */
export const MAX_MEMBERS = 32;

export type DatagramDropReason = 'magic' | 'version' | 'malformed' | 'oversize';
export type DecodeResult =
  | { readonly ok: true; readonly datagram: LanDatagram }
  | { readonly ok: false; readonly reason: DatagramDropReason };

const HEADER_LENGTH = LAN_MAGIC.length + 1;
const KINDS: readonly LanKind[] = ['query', 'announce', 'bye'];
const ROLES: readonly NodeRole[] = ['server', 'client'];
const TOKEN = /^[0-9a-zA-Z:._-]*$/;

/** Thrown (as a value) by the field checks; caught in decodeDatagram, surfaced in encodeDatagram. */
class FieldError extends Error {
  override readonly name = 'FieldError';
}

/**
 * Encodes a datagram. When `members` makes it too big, members are dropped from the end until it
 * fits (the receiver learns the rest from the members' own announces); anything else too big, or any
 * field a peer would refuse, throws: that is a bug on our side, not input.
 */
export function encodeDatagram(d: LanDatagram): Buffer {
  let members = d.members?.slice(0, MAX_MEMBERS);
  for (;;) {
    let body: LanDatagram;
    try {
      body = checkDatagram(toRecord({ ...d, members }));
    } catch (err) {
      throw new TypeError(`cannot encode LAN datagram: ${(err as Error).message}`);
    }
    const buf = frame(encode(bodyOf(body)));
    if (buf.length <= MAX_DATAGRAM) return buf;
    if (members === undefined || members.length === 0) {
      throw new RangeError(`LAN datagram of ${buf.length} bytes exceeds ${MAX_DATAGRAM} bytes`);
    }
    members = members.slice(0, -1);
  }
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
    if (buf.length < HEADER_LENGTH) return { ok: false, reason: 'malformed' };
    if (buf[LAN_MAGIC.length] !== LAN_PROTOCOL_VERSION) return { ok: false, reason: 'version' };
    // The 1200-byte bound already limits every length; the explicit maxima make intent plain.
    const value: unknown = decode(buf.subarray(HEADER_LENGTH), {
      maxStrLength: MAX_DATAGRAM, maxBinLength: MAX_DATAGRAM, maxArrayLength: MAX_DATAGRAM,
      maxMapLength: MAX_DATAGRAM, maxExtLength: MAX_DATAGRAM,
    });
    if (!isRecord(value)) return { ok: false, reason: 'malformed' };
    return { ok: true, datagram: checkDatagram(value) };
  } catch {
    // msgpack errors (truncated, extra bytes, bad types, __proto__ keys) and FieldError alike.
    return { ok: false, reason: 'malformed' };
  }
}

function frame(body: Uint8Array): Buffer {
  const buf = Buffer.allocUnsafe(HEADER_LENGTH + body.length);
  buf.set(LAN_MAGIC, 0);
  buf[LAN_MAGIC.length] = LAN_PROTOCOL_VERSION;
  buf.set(body, HEADER_LENGTH);
  return buf;
}

/** The map that goes on the wire: known keys only, no `members` key when there are none to send. */
function bodyOf(d: LanDatagram): Record<string, unknown> {
  const body: Record<string, unknown> = {
    kind: d.kind, id: d.id, boot: d.boot, role: d.role, port: d.port, fp: d.fp, seq: d.seq,
    load: { inFlight: d.load.inFlight, workers: d.load.workers }, models: d.models, term: d.term, leader: d.leader,
  };
  if (d.members !== undefined) body.members = d.members.map((m) => ({ id: m.id, addr: m.addr, port: m.port }));
  return body;
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
  const kind = oneOf(v.kind, KINDS, 'kind');
  const datagram: LanDatagram = {
    kind,
    id: token(v.id, 'id', 1, MAX_ID_LENGTH),
    boot: token(v.boot, 'boot', 1, MAX_ID_LENGTH),
    role: oneOf(v.role, ROLES, 'role'),
    port: port(v.port, 'port'),
    fp: token(v.fp, 'fp', 0, MAX_DIGEST_LENGTH),
    seq: count(v.seq, 'seq'),
    load: load(v.load),
    models: token(v.models, 'models', 0, MAX_DIGEST_LENGTH),
    term: count(v.term, 'term'),
    leader: token(v.leader, 'leader', 0, MAX_ID_LENGTH),
  };
  if (v.members === undefined) return datagram;
  return { ...datagram, members: members(v.members) };
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

function members(value: unknown): readonly MemberEntry[] {
  if (!Array.isArray(value) || value.length > MAX_MEMBERS) {
    throw new FieldError(`members must be an array of at most ${MAX_MEMBERS}`);
  }
  return value.map((m: unknown, i): MemberEntry => {
    if (!isRecord(m)) throw new FieldError(`members.${i} must be a map`);
    const addr = token(m.addr, `members.${i}.addr`, 1, 45);
    if (isIP(addr) === 0) throw new FieldError(`members.${i}.addr must be an IP address`);
    return { id: token(m.id, `members.${i}.id`, 1, MAX_ID_LENGTH), addr, port: port(m.port, `members.${i}.port`) };
  });
}
