/**
 * The msgpack layer of actor messages, without any schema: what both ends of a port need, and all a
 * worker thread loads. Checking a message's shape is the decoder's job: codec.ts checks with the zod
 * schemas (the supervisor, on the main thread), proxy-inbox.ts and actor-inbox.ts with small
 * hand-written guards (the proxy, discovery and election threads, where zod would cost every
 * thread's isolate ~12 MB).
 */
import { decode, encode } from '@msgpack/msgpack';
import type { Message } from './messages.ts';
import type { InputErrorCode } from '../errors.ts';

/** Why a message was refused: stable, for logs and tests (the message says it in words). */
export type ProtocolReason = 'not-bytes' | 'undecodable' | 'malformed' | 'unexpected-type';

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  readonly code = 'OLN_BAD_MESSAGE' satisfies InputErrorCode;
  readonly reason: ProtocolReason;
  /**
   * 'not-bytes': what arrived instead (its typeof); 'malformed': the field found wrong, dotted
   * ('message': the whole); 'unexpected-type': the type; 'undecodable': null.
   */
  readonly detail: string | null;

  constructor(reason: ProtocolReason, message: string, detail: string | null = null) {
    super(message);
    this.reason = reason;
    this.detail = detail;
  }
}

/** Turns what arrived on a port into a message this side takes, or throws a ProtocolError. */
export type Decoder<T extends Message> = (raw: unknown) => T;

export function encodeMessage(msg: Message): Uint8Array {
  return encode(msg, { ignoreUndefined: true });
}

/** msgpack bytes to a value of unknown shape; anything else, or bad bytes, is a ProtocolError. */
export function unpack(bytes: unknown): unknown {
  if (!(bytes instanceof Uint8Array)) {
    throw new ProtocolError('not-bytes', `expected a msgpack buffer, got ${typeof bytes}`, typeof bytes);
  }
  try {
    return decode(bytes);
  } catch (err) {
    throw new ProtocolError('undecodable', `undecodable msgpack (${(err as Error).message})`);
  }
}

/** The error for a well-formed message whose type this port does not take. */
export function unexpectedType(type: string): ProtocolError {
  const shown = type.length > 64 ? `${type.slice(0, 64)}…` : type;
  return new ProtocolError('unexpected-type', `unexpected message ${shown} on this port`, shown);
}
