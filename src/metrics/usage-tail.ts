/**
 * Token counts read from the end of a response without holding the response: the relay hands each
 * body piece here, which keeps a copy of only its last TAIL_BYTES bytes (the pieces' buffers are the
 * connection's to reuse). At the end the tail holds Ollama's final `done` object of a native answer
 * (`prompt_eval_count`, `eval_count`) or the `usage` of an OpenAI-style one (`prompt_tokens`,
 * `completion_tokens`); both are the last fields Ollama writes. Every streamed /v1 chunk may carry a
 * zeroed usage: the last one counts.
 */

/** Ollama's final object is about 300 bytes; chunk framing and the SSE `data: [DONE]` line fit beside it. */
export const TAIL_BYTES = 1024;

export interface TokenUsage {
  readonly prompt: number;
  readonly generated: number;
}

export class UsageTail {
  #buf: Buffer | null = null;
  #len = 0;

  /** Keeps the last TAIL_BYTES of what went by; a few hundred bytes copied per piece at most. */
  add(bytes: Buffer): void {
    const n = bytes.length;
    if (n === 0) return;
    if (this.#buf === null) this.#buf = Buffer.allocUnsafe(TAIL_BYTES);
    const buf = this.#buf;
    // TypedArray set and copyWithin: V8 builtins, cheaper per call than Buffer's copy.
    if (n >= TAIL_BYTES) {
      buf.set(n === TAIL_BYTES ? bytes : bytes.subarray(n - TAIL_BYTES), 0);
      this.#len = TAIL_BYTES;
      return;
    }
    if (this.#len + n > TAIL_BYTES) {
      const keep = TAIL_BYTES - n;
      buf.copyWithin(0, this.#len - keep, this.#len);
      this.#len = keep;
    }
    buf.set(bytes, this.#len);
    this.#len += n;
  }

  /** The token counts in the tail, or null when it names none. */
  usage(): TokenUsage | null {
    if (this.#buf === null) return null;
    return usageIn(this.#buf.toString('latin1', 0, this.#len));
  }
}

/** The number after the last `"key":` in `text`, or -1. */
function lastNumber(text: string, key: string): number {
  const at = text.lastIndexOf(key);
  if (at < 0) return -1;
  let i = at + key.length;
  while (text.charCodeAt(i) === 0x20) i++;
  let n = 0;
  let digits = 0;
  for (let c = text.charCodeAt(i); c >= 0x30 && c <= 0x39; c = text.charCodeAt(++i)) {
    n = n * 10 + (c - 0x30);
    digits++;
  }
  return digits === 0 ? -1 : n;
}

/** Token counts of the end of an answer: native fields first, else OpenAI's usage. */
export function usageIn(text: string): TokenUsage | null {
  const evalCount = lastNumber(text, '"eval_count":');
  const promptEval = lastNumber(text, '"prompt_eval_count":');
  if (evalCount >= 0 || promptEval >= 0) return { prompt: Math.max(0, promptEval), generated: Math.max(0, evalCount) };
  const completion = lastNumber(text, '"completion_tokens":');
  const prompt = lastNumber(text, '"prompt_tokens":');
  if (completion >= 0 || prompt >= 0) return { prompt: Math.max(0, prompt), generated: Math.max(0, completion) };
  return null;
}
