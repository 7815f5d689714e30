/**
 * What Go's net/http does with a request body the handler left unread (Ollama answering 400 or 404
 * before it reads an upload, say): after the handler it discards up to 256 KiB of the rest
 * (maxPostHandlerReadBytes); when more is left, the answer carries `Connection: close` and the
 * connection closes, so the client cannot send its next request on it. A chunked body's length is
 * not known up front: it is treated as too long (Go would read 256 KiB of it first to find out).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

const MAX_POST_HANDLER_READ = 256 << 10;

function tooMuchUnread(req: IncomingMessage, consumed: number): boolean {
  if (req.complete) return false;
  const declared = req.headers['content-length'];
  if (declared === undefined) return req.headers['transfer-encoding'] !== undefined;
  return Number(declared) - consumed >= MAX_POST_HANDLER_READ;
}

/** Makes `res` close its connection when its headers go out with too much of `req`'s body unread. */
export function closeAfterUnreadBody(req: IncomingMessage, res: ServerResponse, consumed: () => number): void {
  const writeHead = res.writeHead;
  res.writeHead = function (this: ServerResponse, ...args: Parameters<ServerResponse['writeHead']>) {
    if (tooMuchUnread(req, consumed())) {
      this.shouldKeepAlive = false;
      this.setHeader('Connection', 'close');
    }
    return writeHead.apply(this, args as never);
  } as ServerResponse['writeHead'];
}
