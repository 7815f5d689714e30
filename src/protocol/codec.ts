/**
 * Schema-checked decoding of actor messages (zod). Decoding is a trust boundary: whatever arrives is
 * checked against the message schema, and garbage becomes a ProtocolError instead of a crash.
 * It runs on the main thread only: the worker threads use proxy-inbox.ts and actor-inbox.ts, to keep
 * zod out of their isolates.
 */
import { messageSchema, type Message } from './messages.ts';
import { type Decoder, ProtocolError, encodeMessage, unexpectedType, unpack } from './wire.ts';

export { ProtocolError, encodeMessage };
export type { Decoder };

export function decodeMessage(bytes: unknown): Message {
  const value = unpack(bytes);
  const result = messageSchema.safeParse(value);
  if (!result.success) {
    const first = result.error.issues[0];
    const path = first ? first.path.join('.') || 'message' : null;
    throw new ProtocolError('malformed', `malformed message: ${first ? `${path}: ${first.message}` : 'invalid'}`, path);
  }
  return result.data;
}

/** A decoder that takes only the given message types; any other valid message is reported as unexpected. */
export function decoderFor<T extends Message>(accepts: readonly T['type'][]): Decoder<T> {
  const allowed = new Set<string>(accepts);
  return (raw) => {
    const msg = decodeMessage(raw);
    if (!allowed.has(msg.type)) throw unexpectedType(msg.type);
    return msg as T;
  };
}
