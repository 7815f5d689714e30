/**
 * POST /v1/audio/transcriptions (ollama: middleware/openai.go TranscriptionMiddleware and
 * TranscriptionWriter on top of the chat handler): a multipart form with the fields `model` and
 * `file` (at most 25 MiB); the answer is `{"text": ...}`, or plain text with response_format=text.
 */
import { openaiError, readBody, sendJson, sendText, sleepUntil, type Call } from './http.ts';
import { enterOpenai } from './admission.ts';
import { planFor, tokenText, tokensBeforeFailure, totalMs } from './tokens.ts';

const MAX_FORM = 25 << 20;

export async function transcriptions(call: Call): Promise<void> {
  const raw = await readBody(call);
  let form: FormData;
  try {
    if (raw.length > MAX_FORM) throw new Error('http: request body too large');
    const type = call.req.headers['content-type'] ?? '';
    if (!/^multipart\/form-data/i.test(type)) throw new Error("request Content-Type isn't multipart/form-data");
    form = await new Response(raw, { headers: { 'content-type': type } }).formData();
  } catch (err) {
    return openaiError(call.res, 400, `failed to parse multipart form: ${(err as Error).message}`);
  }
  const model = form.get('model');
  if (typeof model !== 'string' || model === '') return openaiError(call.res, 400, 'model is required');
  const file = form.get('file');
  if (file === null || typeof file === 'string')
    return openaiError(call.res, 400, 'file is required: http: no such file');
  if (file.size === 0) return openaiError(call.res, 400, 'audio file is empty');
  const entry = call.state.models.get(model);
  if (!entry) return openaiError(call.res, 404, `model '${model}' not found`);
  const plan = planFor(call.state.settings, {});
  if (!(await enterOpenai(call, entry, undefined, plan))) return;
  const count = tokensBeforeFailure(plan);
  await sleepUntil(performance.now() + totalMs(plan, count), call.signal);
  let text = '';
  for (let i = 0; i < count; i++) text += tokenText(call.state.settings, i);
  call.tokensSent = count;
  if (form.get('response_format') === 'text') return sendText(call.res, 200, text);
  sendJson(call.res, 200, { text }, 'application/json');
}
