/**
 * POST /v1/responses, the OpenAI Responses API (ollama: middleware/openai.go ResponsesMiddleware and
 * ResponsesWriter; openai/responses.go). `stream` defaults to false. A stream is typed SSE (`event:`
 * then `data:`, each data object carrying its `type` and a `sequence_number`): response.created,
 * response.in_progress, response.output_item.added, response.content_part.added,
 * response.output_text.delta..., response.output_text.done, response.content_part.done,
 * response.output_item.done, response.completed. Errors before the stream are OpenAI's shape.
 * zstd bodies (Codex sends them) are decompressed first.
 */
import { randomBytes } from 'node:crypto';
import { enterOpenai } from './admission.ts';
import { cloudModel } from './account.ts';
import {
  openaiError,
  readOpenaiJson,
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

function inputText(input: unknown): string {
  if (typeof input === 'string') return input;
  if (!Array.isArray(input)) return '';
  return input
    .map((item) => {
      if (!item || typeof item !== 'object') return '';
      const content = (item as JsonBody).content;
      if (typeof content === 'string') return content;
      return Array.isArray(content)
        ? content.map((c) => (c && typeof c === 'object' ? str((c as JsonBody).text) : '')).join(' ')
        : '';
    })
    .join(' ');
}

export async function responses(call: Call): Promise<void> {
  const body = await readOpenaiJson(call, 'openai.ResponsesRequest');
  if (!body) return;
  const model = str(body.model);
  const plan = planFor(call.state.settings, body, body.max_output_tokens);
  if (plan.status !== undefined) return openaiError(call.res, plan.status, injectedMessage(plan.status, model));
  if (!model) return openaiError(call.res, 400, 'model is required');
  const cloud = cloudModel(call, model, (status, message) => openaiError(call.res, status, message));
  if (cloud === null) return;
  const entry = cloud ?? call.state.models.get(model);
  if (!entry) return openaiError(call.res, 404, `model '${model}' not found`);
  if (!entry.capabilities.includes('completion')) return openaiError(call.res, 400, `"${model}" does not support chat`);
  if (!(await enterOpenai(call, entry, parseKeepAlive(body.keep_alive), plan))) return;

  const responseId = `resp_${randomBytes(12).toString('hex')}`;
  const itemId = `msg_${randomBytes(12).toString('hex')}`;
  const input = countTokens(`${str(body.instructions)} ${inputText(body.input)}`);
  const count = tokensBeforeFailure(plan);
  const start = performance.now();
  const created = Math.floor(Date.now() / 1000);
  const response = (status: string, output: unknown[], usage: JsonBody | null): JsonBody => ({
    id: responseId,
    object: 'response',
    created_at: created,
    completed_at: status === 'completed' ? Math.floor(Date.now() / 1000) : null,
    status,
    incomplete_details: null,
    model,
    previous_response_id: null,
    instructions: body.instructions ?? null,
    output,
    error: null,
    tools: [],
    tool_choice: 'auto',
    parallel_tool_calls: true,
    text: { format: { type: 'text' } },
    usage,
    max_output_tokens: body.max_output_tokens ?? null,
    store: false,
    service_tier: 'default',
    metadata: {},
  });
  const message = (text: string, status: string): JsonBody => ({
    type: 'message',
    id: itemId,
    status,
    role: 'assistant',
    content: status === 'in_progress' ? [] : [{ type: 'output_text', text, annotations: [], logprobs: [] }],
  });
  const usage = (): JsonBody => ({
    input_tokens: input,
    output_tokens: count,
    total_tokens: input + count,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens_details: { reasoning_tokens: 0 },
  });
  let text = '';

  if (body.stream === true) {
    let seq = 0;
    const event = (type: string, data: JsonBody): void => {
      if (!call.res.headersSent) call.res.setHeader('Cache-Control', 'no-cache');
      const line = JSON.stringify({ type, ...data, sequence_number: seq++ });
      writeRecord(call.res, 'text/event-stream', `event: ${type}\ndata: ${line}\n\n`);
    };
    const part = { item_id: itemId, output_index: 0, content_index: 0 };
    await runTokens(
      call,
      plan,
      count,
      (token, i) => {
        if (i === 0) {
          event('response.created', { response: response('in_progress', [], null) });
          event('response.in_progress', { response: response('in_progress', [], null) });
          event('response.output_item.added', { output_index: 0, item: message('', 'in_progress') });
          event('response.content_part.added', {
            ...part,
            part: { type: 'output_text', text: '', annotations: [], logprobs: [] },
          });
        }
        text += token;
        event('response.output_text.delta', { ...part, delta: token, logprobs: [] });
      },
      start,
    );
    if (failsMidway(plan)) {
      if (!call.res.headersSent) return openaiError(call.res, 500, FAILURE_MESSAGE);
      const failed = { ...response('failed', [], null), error: { code: 'server_error', message: FAILURE_MESSAGE } };
      event('response.failed', { response: failed });
      call.res.end();
      return;
    }
    if (count === 0) event('response.created', { response: response('in_progress', [], null) });
    else {
      event('response.output_text.done', { ...part, text, logprobs: [] });
      event('response.content_part.done', {
        ...part,
        part: { type: 'output_text', text, annotations: [], logprobs: [] },
      });
      event('response.output_item.done', { output_index: 0, item: message(text, 'completed') });
    }
    event('response.completed', {
      response: response('completed', count === 0 ? [] : [message(text, 'completed')], usage()),
    });
    call.res.end();
    return;
  }

  await sleepUntil(start + totalMs(plan, count), call.signal);
  if (failsMidway(plan)) return openaiError(call.res, 500, FAILURE_MESSAGE);
  for (let i = 0; i < count; i++) text += tokenText(call.state.settings, i);
  sendJson(call.res, 200, response('completed', [message(text, 'completed')], usage()), 'application/json');
  call.tokensSent = count;
}
