/**
 * Hand-written shape checks for the decoders that run in worker threads (proxy-inbox.ts,
 * actor-inbox.ts), where loading zod would cost every thread's isolate ~12 MB. Each check takes
 * what zod's matching schema takes and nothing else, and throws a ProtocolError naming the path, as
 * codec.ts does with zod's first issue; callers check fields in the schema's order, so a message
 * wrong in two places is refused naming the same field. Values come from msgpack: plain objects,
 * arrays, strings, numbers, booleans, null, Uint8Arrays and Dates (the timestamp extension).
 */
import { ProtocolError } from './wire.ts';

export type Path = readonly (string | number)[];

export function bad(path: Path, what: string): never {
  const field = path.length === 0 ? 'message' : path.join('.');
  throw new ProtocolError('malformed', `malformed message: ${field}: ${what}`, field);
}

/**
 * What zod's z.object takes: any object but null and arrays. A Date or a Uint8Array passes here and
 * fails on its first missing field, as it does in zod.
 */
export function object(v: unknown, path: Path): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return bad(path, 'expected an object');
  return v as Record<string, unknown>;
}

/** What zod's z.record takes: a plain object only, not an array, a Date or another class. */
export function plainRecord(v: unknown, path: Path): Record<string, unknown> {
  const o = object(v, path);
  const proto = Object.getPrototypeOf(o) as unknown;
  if (proto !== Object.prototype && proto !== null) return bad(path, 'expected a plain object');
  return o;
}

export function str(v: unknown, path: Path): string {
  return typeof v === 'string' ? v : bad(path, 'expected a string');
}

/** zod's z.number(): finite numbers only. */
export function num(v: unknown, path: Path): number {
  return typeof v === 'number' && Number.isFinite(v) ? v : bad(path, 'expected a finite number');
}

/** zod's z.number().int(): safe integers only. */
export function int(v: unknown, path: Path): number {
  return typeof v === 'number' && Number.isSafeInteger(v) ? v : bad(path, 'expected an integer');
}

export function bool(v: unknown, path: Path): boolean {
  return typeof v === 'boolean' ? v : bad(path, 'expected a boolean');
}

/** zod's z.enum(values). */
export function oneOf<T extends string>(v: unknown, path: Path, values: readonly T[]): T {
  const found = values.find((x) => x === v);
  return found ?? bad(path, `expected one of ${values.map((x) => JSON.stringify(x)).join(', ')}`);
}

export function array<T>(v: unknown, path: Path, item: (x: unknown, p: Path) => T): T[] {
  if (!Array.isArray(v)) return bad(path, 'expected an array');
  return v.map((x, i) => item(x, [...path, i]));
}
