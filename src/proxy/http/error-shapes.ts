/**
 * The shape of ollana's own errors in each API family Ollama serves, so that each family's client
 * library reports the message instead of a parse failure or nothing at all:
 * - native (/api/...): `{"error":"..."}` (ollama: api/types.go StatusError);
 * - OpenAI (/v1/...): `{"error":{"message","type","param","code"}}` (ollama: openai/openai.go NewError);
 * - Anthropic (/v1/messages): `{"type":"error","error":{"type","message"},"request_id"}`, the type
 *   following the status (ollama: anthropic/anthropic.go NewError).
 * A stream that broke after its first byte ends with a tail in its own framing: an NDJSON line, an
 * SSE `data:` line (chat and completions), or a typed `event: error` (/v1/messages and
 * /v1/responses, whose clients skip data lines without an event name or read the type from it).
 */
import { randomBytes } from 'node:crypto';

export type ApiFamily = 'native' | 'openai' | 'responses' | 'anthropic';

export function apiFamily(url: string): ApiFamily {
  const path = url.split('?', 1)[0]!;
  if (path === '/v1/messages' || path.startsWith('/v1/messages/')) return 'anthropic';
  if (path === '/v1/responses' || path.startsWith('/v1/responses/')) return 'responses';
  if (path.startsWith('/v1/')) return 'openai';
  return 'native';
}

function openaiType(status: number): string {
  return status === 400 ? 'invalid_request_error' : status === 404 ? 'not_found_error' : 'api_error';
}

function anthropicType(status: number): string {
  switch (status) {
    case 400:
      return 'invalid_request_error';
    case 401:
      return 'authentication_error';
    case 403:
      return 'permission_error';
    case 404:
      return 'not_found_error';
    case 429:
      return 'rate_limit_error';
    case 503:
    case 529:
      return 'overloaded_error';
    default:
      return 'api_error';
  }
}

function anthropicError(status: number, message: string): string {
  return JSON.stringify({
    type: 'error',
    error: { type: anthropicType(status), message },
    request_id: `req_${randomBytes(12).toString('hex')}`,
  });
}

/** The JSON body of an error ollana answers with itself, in the family of `url`. */
export function errorBody(url: string, status: number, message: string): string {
  switch (apiFamily(url)) {
    case 'anthropic':
      return anthropicError(status, message);
    case 'openai':
    case 'responses':
      return JSON.stringify({ error: { message, type: openaiType(status), param: null, code: null } });
    default:
      return JSON.stringify({ error: message });
  }
}

/** The last bytes of a stream of `url` that broke after its first byte, or null for a body with no error framing. */
export function streamErrorTail(url: string, contentType: string | undefined, message: string): string | null {
  if (contentType === undefined) return null;
  if (contentType.includes('ndjson')) return `${JSON.stringify({ error: message })}\n`;
  if (!contentType.includes('text/event-stream')) return null;
  switch (apiFamily(url)) {
    case 'anthropic':
      return `event: error\ndata: ${anthropicError(500, message)}\n\n`;
    case 'responses':
      // The Responses API's error event (its clients read the event type from `type`).
      return `event: error\ndata: ${JSON.stringify({ type: 'error', code: 'api_error', message, param: null })}\n\n`;
    default:
      return `data: ${JSON.stringify({ error: { message, type: 'api_error', param: null, code: null } })}\n\n`;
  }
}
