/**
 * A message head (text) and a small body, copied into one buffer so they leave in one plain write.
 *
 * Written as two pieces (a corked string and a buffer), Node sends them with writev: an array of
 * chunks, the string encoded in C++, a write request with both referenced until the kernel took
 * them. For a small request or the first read of a response (a typical non-streamed answer), one
 * copy into a pooled buffer and a single write cost less (bench/README.md, "one write per message").
 * Larger bodies keep the two-piece write: copying them would cost more than it saves.
 */
import type { Socket } from 'node:net';

/** Bodies up to this size are copied behind their head. */
export const ONE_WRITE_MAX_BODY = 16 * 1024;

/**
 * Writes `head` (one byte per character: heads are written as latin1) and then `body` on `socket`:
 * one copied buffer for a body up to ONE_WRITE_MAX_BODY, two corked writes for a larger one.
 * Returns what the socket's last write returned (false: wait for 'drain').
 */
export function writeHeadAndBody(socket: Socket, head: string, body: Buffer): boolean {
  if (body.length <= ONE_WRITE_MAX_BODY) {
    const n = head.length;
    const out = Buffer.allocUnsafe(n + body.length);
    out.write(head, 0, n, 'latin1');
    body.copy(out, n);
    return socket.write(out);
  }
  socket.cork();
  socket.write(head, 'latin1');
  const ok = socket.write(body);
  socket.uncork();
  return ok;
}
