/**
 * In-host probe of the residency bench (bench/cluster/residency.ts): N streamed generations in a row
 * through ollama-js, alternating between the models given, each timed from the call to its first
 * part (TTFB as the client sees it, cold loads included). Prints one JSON line: { ttfbMs, failed }.
 *
 *   alternate.ts N MODEL_A,MODEL_B
 */
import { Ollama } from 'ollama';
import { CLIENT_URL, emit, errText } from './common.ts';

const n = Number(process.argv[2] ?? '100');
const models = (process.argv[3] ?? 'llama3.2,qwen3:0.6b').split(',');
const ollama = new Ollama({ host: CLIENT_URL });
const ttfbMs: number[] = [];
const failed: string[] = [];
for (let i = 0; i < n; i++) {
  const t0 = performance.now();
  try {
    let first = true;
    const stream = await ollama.generate({ model: models[i % models.length]!, prompt: 'x', stream: true });
    for await (const _part of stream) {
      if (first) ttfbMs.push(performance.now() - t0);
      first = false;
    }
  } catch (err) {
    failed.push(errText(err));
  }
}
emit({ ttfbMs, failed });
