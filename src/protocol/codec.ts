/**
 * msgpack encoding of actor messages. Decoding is a trust boundary: whatever arrives is checked
 * against the message schema, and garbage becomes a ProtocolError instead of a crash.
 */
import { decode, encode } from '@msgpack/msgpack';
import { messageSchema, type Message } from './messages.ts';

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
}

export function encodeMessage(msg: Message): Uint8Array {
  return encode(msg, { ignoreUndefined: true });
}

export function decodeMessage(bytes: unknown): Message {
  if (!(bytes instanceof Uint8Array)) {
    throw new ProtocolError(`expected a msgpack buffer, got ${typeof bytes}`);
  }
  let value: unknown;
  try {
    value = decode(bytes);
  } catch (err) {
    throw new ProtocolError(`undecodable msgpack (${(err as Error).message})`);
  }
  const result = messageSchema.safeParse(value);
  if (!result.success) {
    const first = result.error.issues[0];
    throw new ProtocolError(`malformed message: ${first ? `${first.path.join('.') || 'message'}: ${first.message}` : 'invalid'}`);
  }
  return result.data;
}
