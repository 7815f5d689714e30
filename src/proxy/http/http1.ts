/**
 * The HTTP/1.1 text ollana writes itself (the relay, the fast front, and node:http responses it frames
 * by hand): line ends, chunk framing, the Date header.
 */

export const CRLF = '\r\n';

/** The chunk that ends a chunked body (with no trailers). */
export const LAST_CHUNK = '0\r\n\r\n';

/** `tail` as one last chunk, then the end of the chunked body. */
export function lastChunkWith(tail: string): string {
  return `${Buffer.byteLength(tail).toString(16)}${CRLF}${tail}${CRLF}${LAST_CHUNK}`;
}

let dateValue = '';
let dateSecond = -1;
/** The Date header, made once a second (node:http caches it the same way). */
export function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateValue = new Date(now).toUTCString();
  }
  return dateValue;
}
