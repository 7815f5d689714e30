/**
 * POST /v1/messages, the Anthropic Messages API (ollama: middleware/anthropic.go on top of the chat
 * handler; anthropic/anthropic.go). Errors are `{"type":"error","error":{"type","message"},
 * "request_id"}` with the type following the status; a stream is typed SSE (`event:` then `data:`),
 * with Cache-Control: no-cache: message_start, content_block_start, content_block_delta...,
 * content_block_stop, message_delta, message_stop. An in-stream failure is an `event: error`.
 */
import { randomBytes } from 'node:crypto';
import { schedule } from './admission.ts';
import { cloudModel } from './account.ts';
import {
  readDecodedBody,
  parseJson,
  sendJson,
  sleepUntil,
  str,
  writeRecord,
  type Call,
  type JsonBody,
} from './http.ts';
import { countTokens, parseKeepAlive } from './models.ts';
import {
  FAILURE_MESSAGE,
  failsMidway,
  injectedMessage,
  planFor,
  runTokens,
  tokenText,
  tokensBeforeFailure,
  totalMs,
} from './tokens.ts';

function errorType(status: number): string {
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

export function anthropicErrorBody(status: number, message: string): JsonBody {
  return {
    type: 'error',
    error: { type: errorType(status), message },
    request_id: `req_${randomBytes(12).toString('hex')}`,
  };
}

export function anthropicError(call: Call, status: number, message: string): void {
  sendJson(call.res, status, anthropicErrorBody(status, message), 'application/json');
}

function event(call: Call, type: string, data: JsonBody): void {
  if (!call.res.headersSent) {
    call.res.setHeader('Cache-Control', 'no-cache');
    call.res.setHeader('Connection', 'keep-alive');
  }
  writeRecord(call.res, 'text/event-stream', `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`);
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((b) => (b && typeof b === 'object' ? str((b as JsonBody).text) : '')).join(' ');
}

export async function messages(call: Call): Promise<void> {
  const raw = await readDecodedBody(call);
  if (raw === null) return anthropicError(call, 400, 'failed to decompress request body');
  const parsed = parseJson(raw, 'anthropic.MessagesRequest');
  if (!parsed.ok) return anthropicError(call, 400, parsed.message);
  const body = parsed.body;
  const model = str(body.model);
  if (!model) return anthropicError(call, 400, 'model is required');
  if (typeof body.max_tokens !== 'number' || body.max_tokens <= 0)
    return anthropicError(call, 400, 'max_tokens is required and must be positive');
  const msgs = Array.isArray(body.messages) ? body.messages : [];
  if (msgs.length === 0) return anthropicError(call, 400, 'messages is required');
  const plan = planFor(call.state.settings, body, body.max_tokens);
  if (plan.status !== undefined) return anthropicError(call, plan.status, injectedMessage(plan.status, model));
  const cloud = cloudModel(call, model, (status, message) => anthropicError(call, status, message));
  if (cloud === null) return;
  const entry = cloud ?? call.state.models.get(model);
  if (!entry) return anthropicError(call, 404, `model '${model}' not found`);
  if (!entry.capabilities.includes('completion')) return anthropicError(call, 400, `"${model}" does not support chat`);
  const run = await schedule(call, entry, parseKeepAlive(body.keep_alive), plan, (_res, status, message) =>
    anthropicError(call, status, message),
  );
  if (!run) return;
  await run.slot();

  const id = `msg_${randomBytes(12).toString('hex')}`;
  const input = countTokens(
    [textOf(body.system), ...msgs.map((m) => (m && typeof m === 'object' ? textOf((m as JsonBody).content) : ''))].join(
      ' ',
    ),
  );
  const count = tokensBeforeFailure(plan);
  const stopReason = plan.doneReason === 'length' ? 'max_tokens' : 'end_turn';
  const start = performance.now();

  if (body.stream === true) {
    await runTokens(
      call,
      plan,
      count,
      (text, i) => {
        if (i === 0) {
          event(call, 'message_start', {
            message: {
              id,
              type: 'message',
              role: 'assistant',
              model,
              content: [],
              stop_reason: null,
              stop_sequence: null,
              usage: { input_tokens: input, output_tokens: 0 },
            },
          });
          event(call, 'content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
        }
        event(call, 'content_block_delta', { index: 0, delta: { type: 'text_delta', text } });
      },
      start,
    );
    if (failsMidway(plan)) {
      if (!call.res.headersSent) return anthropicError(call, 500, FAILURE_MESSAGE);
      event(call, 'error', anthropicErrorBody(500, FAILURE_MESSAGE));
      call.res.end();
      return;
    }
    if (count > 0) event(call, 'content_block_stop', { index: 0 });
    event(call, 'message_delta', {
      delta: { stop_reason: stopReason, stop_sequence: null },
      usage: { input_tokens: input, output_tokens: count },
    });
    event(call, 'message_stop', {});
    call.res.end();
    return;
  }

  await sleepUntil(start + totalMs(plan, count), call.signal);
  if (failsMidway(plan)) return anthropicError(call, 500, FAILURE_MESSAGE);
  let text = '';
  for (let i = 0; i < count; i++) text += tokenText(call.state.settings, i);
  sendJson(
    call.res,
    200,
    {
      id,
      type: 'message',
      role: 'assistant',
      model,
      content: text === '' ? [] : [{ type: 'text', text }],
      stop_reason: stopReason,
      stop_sequence: null,
      usage: { input_tokens: input, output_tokens: count },
    },
    'application/json',
  );
  call.tokensSent = count;
}
