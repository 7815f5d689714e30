/**
 * The error bodies ollana itself sends. Native paths get Ollama's `{"error": "..."}`; /v1 paths get
 * the OpenAI shape Ollama uses there, so every SDK surfaces the message instead of a parse failure.
 */
import type { ServerResponse } from 'node:http';

export function errorBody(path: string, status: number, message: string): string {
  if (path.startsWith('/v1/')) {
    const type = status === 400 ? 'invalid_request_error' : status === 404 ? 'not_found_error' : 'api_error';
    return JSON.stringify({ error: { message, type, param: null, code: null } });
  }
  return JSON.stringify({ error: message });
}

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

/** The last line of a stream that broke after its first byte: the form each client reads as an error. */
export function streamErrorTail(contentType: string | undefined, message: string): string | null {
  if (contentType === undefined) return null;
  if (contentType.includes('ndjson')) return `${JSON.stringify({ error: message })}\n`;
  if (contentType.includes('text/event-stream')) {
    return `data: ${JSON.stringify({ error: { message, type: 'api_error', param: null, code: null } })}\n\n`;
  }
  return null;
}
