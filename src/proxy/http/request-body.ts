/**
 * Request bodies on the node:http path (handler.ts): a small one read whole, and one whose start was
 * read already (to find its model) streamed again from its first byte.
 */
import type { IncomingMessage } from 'node:http';
import { Readable } from 'node:stream';

/**
 * Reads a request body of a declared small size whole. The HTTP parser enforces Content-Length, so
 * no size check is needed here; a client that goes away mid-body never gets its request forwarded.
 * One chunk (the usual case) is passed on without a copy.
 */
export function readWhole(req: IncomingMessage, then: (body: Buffer) => void): void {
  let first: Buffer | null = null;
  let rest: Buffer[] | null = null;
  req.on('data', (chunk: Buffer) => {
    if (first === null) first = chunk;
    else {
      rest ??= [first];
      rest.push(chunk);
    }
  });
  req.once('end', () => then(rest !== null ? Buffer.concat(rest) : (first ?? Buffer.alloc(0))));
}

/**
 * The body of `req` from its start again: the chunks already read, then the rest as it comes, with
 * backpressure (the request is read only as fast as the upstream takes it). An error or abort of the
 * request ends the stream with that error, which aborts the upstream request.
 */
export function prepended(head: Buffer[], req: IncomingMessage): Readable {
  let queued: Buffer[] | null = head;
  const out = new Readable({
    read() {
      if (queued !== null) {
        const first = queued;
        queued = null;
        for (const chunk of first) out.push(chunk);
      }
      req.resume();
    },
    destroy(err, done) {
      req.off('data', onData);
      req.off('end', onEnd);
      done(err);
    },
  });
  const onData = (chunk: Buffer): void => {
    if (!out.push(chunk)) req.pause();
  };
  const onEnd = (): void => {
    out.push(null);
  };
  req.on('data', onData);
  req.once('end', onEnd);
  req.once('close', () => {
    if (!req.complete) out.destroy(new Error('the client went away during its request body'));
  });
  return out;
}
