/**
 * Shared by the in-host probes (they run inside a LAN host's network namespace and only talk to
 * that host's loopback): an ollama-js client whose every request has its own deadline, and one
 * JSON line per event on stdout.
 */
import { Ollama } from 'ollama';

/** The client node's address inside the host: ollana's client listener. */
export const CLIENT_URL = 'http://127.0.0.1:11434';

/** One JSON line on stdout (a pipe: synchronous on Linux, so lines survive a SIGKILL right after). */
export function emit(obj: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

export function errText(err: unknown): string {
  const e = err as { message?: string; cause?: { code?: string; message?: string }; name?: string };
  const cause = e.cause?.code ?? e.cause?.message;
  return `${e.name === 'TimeoutError' || e.name === 'AbortError' ? `${e.name}: ` : ''}${e.message ?? String(err)}${cause ? ` (${cause})` : ''}`.slice(
    0,
    300,
  );
}

/**
 * One small streamed generation through ollama-js; resolves when `done` arrived, rejects on any
 * error or after `timeoutMs` (headers and body together).
 */
export async function generateOnce(timeoutMs: number, model = 'llama3.2'): Promise<void> {
  const deadline = AbortSignal.timeout(timeoutMs);
  const ollama = new Ollama({
    host: CLIENT_URL,
    fetch: (input, init) =>
      fetch(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, deadline]) : deadline }),
  });
  let done = false;
  const stream = await ollama.generate({ model, prompt: 'x', stream: true });
  for await (const part of stream) done = part.done;
  if (!done) throw new Error('stream ended without done');
}

/** Parses `--name value` flags into a record (numbers only; the probes take nothing else). */
export function numFlags(argv: readonly string[], defaults: Record<string, number>): Record<string, number> {
  const out = { ...defaults };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]?.replace(/^--/, '') ?? '';
    const val = Number(argv[i + 1]);
    if (!(key in out) || !Number.isFinite(val)) throw new Error(`bad flag ${argv[i]} ${argv[i + 1]}`);
    out[key] = val;
  }
  return out;
}
