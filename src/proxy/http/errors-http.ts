/**
 * Sends the error bodies ollana itself answers with, in the shape of the request's API family
 * (error-shapes.ts), so every SDK surfaces the message instead of a parse failure.
 */
import type { ServerResponse } from 'node:http';
import { errorBody } from './error-shapes.ts';

export { errorBody, streamErrorTail } from './error-shapes.ts';

export function sendError(
  res: ServerResponse,
  path: string,
  status: number,
  message: string,
  extra: string[] = [],
): void {
  const body = errorBody(path, status, message);
  res.writeHead(status, [
    'content-type',
    'application/json; charset=utf-8',
    'content-length',
    String(Buffer.byteLength(body)),
    ...extra,
  ]);
  res.end(body);
}

export function sendJson(res: ServerResponse, status: number, value: unknown, extra: string[] = []): void {
  const body = JSON.stringify(value);
  res.writeHead(status, [
    'content-type',
    'application/json; charset=utf-8',
    'content-length',
    String(Buffer.byteLength(body)),
    ...extra,
  ]);
  res.end(body);
}
