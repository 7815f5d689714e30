/**
 * A message head (text) and a small body, copied into one buffer so they leave in one plain write.
 *
 * Written as two pieces (a corked string and a buffer), Node sends them with writev: an array of
 * chunks, the string encoded in C++, a write request with both referenced until the kernel took
 * them. For a small request or the first read of a response (a typical non-streamed answer), one
 * copy into a pooled buffer and a single write cost less (bench/README.md, "one write per message").
 * Larger bodies keep the two-piece write: copying them would cost more than it saves.
 */

/** Bodies up to this size are copied behind their head. */
export const ONE_WRITE_MAX_BODY = 16 * 1024;

/** `head` (one byte per character: the caller writes heads as latin1) followed by `body`. */
export function headAndBody(head: string, body: Buffer): Buffer {
  const n = head.length;
  const out = Buffer.allocUnsafe(n + body.length);
  out.write(head, 0, n, 'latin1');
  body.copy(out, n);
  return out;
}
