/**
 * The cryptography of pairing by code, as in Bluetooth Secure Simple Pairing's numeric comparison and
 * ZRTP's short authentication string: each side commits to its certificate and a fresh nonce before it
 * sees the other's, so a machine in the middle has to fix its own certificate and nonce before it
 * learns the nonce that decides the code; it then matches the other side's code by luck only (1 in a
 * million for six digits). The code is computed from both certificates and both nonces in an order
 * both sides agree on (by session id), so both show the same six digits.
 */
import { createHash } from 'node:crypto';

const COMMIT_LABEL = 'ollana pair commit v1\0';
const TRANSCRIPT_LABEL = 'ollana pair transcript v1\0';

export interface PairSide {
  readonly sid: Uint8Array;
  readonly cert: Uint8Array;
  readonly nonce: Uint8Array;
}

function lengthOf(b: Uint8Array): Buffer {
  const n = Buffer.allocUnsafe(2);
  n.writeUInt16BE(b.length);
  return n;
}

/** H(label || sid || len(cert) || cert || nonce): sent first, opened by the reveal. */
export function commitment(side: PairSide): Buffer {
  return createHash('sha256')
    .update(COMMIT_LABEL)
    .update(side.sid)
    .update(lengthOf(side.cert))
    .update(side.cert)
    .update(side.nonce)
    .digest();
}

/** The exchange both sides saw, hashed; the same whichever side computes it. */
export function transcript(a: PairSide, b: PairSide): Buffer {
  const [first, second] = Buffer.compare(Buffer.from(a.sid), Buffer.from(b.sid)) <= 0 ? [a, b] : [b, a];
  const h = createHash('sha256').update(TRANSCRIPT_LABEL);
  for (const s of [first, second]) h.update(s.sid).update(lengthOf(s.cert)).update(s.cert);
  for (const s of [first, second]) h.update(s.nonce);
  return h.digest();
}

/** Six decimal digits from a transcript hash (64 bits mod 10^6: the bias is below 10^-13). */
export function shortCode(transcriptHash: Uint8Array): string {
  const n = Buffer.from(transcriptHash).readBigUInt64BE(0) % 1_000_000n;
  return n.toString().padStart(6, '0');
}
