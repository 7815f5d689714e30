/**
 * Holds a hand-written decoder (src/protocol/proxy-inbox.ts, actor-inbox.ts) to the zod schema's
 * verdicts: both must accept the same messages with the same result, and refuse the same ones naming
 * the same field.
 */
import assert from 'node:assert/strict';
import { encode } from '@msgpack/msgpack';
import { ProtocolError } from '../../src/protocol/codec.ts';

export type Verdict<T> = { ok: T } | { path: string };
export type Decode<T> = (raw: unknown) => T;

/** What a decoder made of the bytes: the message, or the path its ProtocolError names. */
export function verdict<T>(decode: Decode<T>, bytes: unknown): Verdict<T> {
  try {
    return { ok: decode(bytes) };
  } catch (err) {
    assert.ok(err instanceof ProtocolError, `not a ProtocolError: ${String(err)}`);
    return { path: err.reason === 'malformed' ? (err.detail ?? err.reason) : `${err.reason} ${err.detail ?? ''}` };
  }
}

/** Each value, msgpack-encoded, is refused by `mine`, naming the field the schema names. */
export function assertRefusedAlike<T>(mine: Decode<T>, schema: Decode<T>, values: readonly unknown[]): void {
  for (const value of values) {
    const bytes = encode(value);
    const v = verdict(mine, bytes);
    assert.ok('path' in v, `accepted ${JSON.stringify(value)}`);
    assert.deepEqual(v, verdict(schema, bytes), `verdicts differ on ${JSON.stringify(value)}`);
  }
}

/** Values of other kinds to put in a field; Dates and bytes are what msgpack's extensions decode to. */
const REPLACEMENTS: unknown[] = [
  null,
  0,
  -1,
  1.5,
  2 ** 60,
  '',
  'x',
  true,
  false,
  [],
  [1],
  {},
  { a: 1 },
  new Date(0),
  Uint8Array.of(1),
  'server',
  'client',
  'debug',
  'bye',
];

/**
 * Replaces one field somewhere in a valid message with a value of another kind, or removes it, `count` times
 * (a small deterministic generator, so a failure repeats), and compares both decoders' verdicts.
 */
export function assertMutationsAlike<T>(mine: Decode<T>, schema: Decode<T>, valid: readonly T[], count: number): void {
  let seed = 0x2545f491;
  const rand = (n: number): number => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const paths = (v: unknown, prefix: (string | number)[] = []): (string | number)[][] => {
    if (typeof v !== 'object' || v === null) return [prefix];
    const keys: (string | number)[] = Array.isArray(v) ? v.map((_, i) => i) : Object.keys(v);
    return [prefix, ...keys.flatMap((k) => paths((v as Record<string | number, unknown>)[k], [...prefix, k]))];
  };
  for (let i = 0; i < count; i++) {
    const msg = structuredClone(valid[rand(valid.length)]!) as unknown as Record<string, unknown>;
    const all = paths(msg).filter((p) => p.length > 0 && p[0] !== 'type');
    if (all.length === 0) continue;
    const path = all[rand(all.length)]!;
    let parent: Record<string | number, unknown> = msg;
    for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
    const pick = rand(REPLACEMENTS.length + 1);
    if (pick === REPLACEMENTS.length)
      delete parent[path.at(-1)!]; // a missing field (or a hole in an array)
    else parent[path.at(-1)!] = REPLACEMENTS[pick];
    const bytes = encode(msg);
    assert.deepEqual(verdict(mine, bytes), verdict(schema, bytes), `verdicts differ on ${JSON.stringify(msg)}`);
  }
}
