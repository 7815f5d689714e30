/**
 * The inference routes' way through the scheduler (scheduler.ts), and the routes that show it:
 * /api/ps and the emulator's own counters at GET /emulator/v1/sched.
 */
import { ollamaError, openaiError, sendJson, type Call } from './http.ts';
import { DEFAULT_CONTEXT_LENGTH, type ModelEntry } from './models.ts';
import { MAX_QUEUE_MESSAGE, SchedError } from './scheduler.ts';
import type { Plan } from './tokens.ts';

export type ErrorReply = (res: Call['res'], status: number, message: string) => void;

export interface Scheduled {
  /** performance.now() when the runner was ready for this request: load_duration ends here. */
  readonly loadedAt: number;
  /** Waits for one of the runner's slots (FIFO); the slot is freed when the response closes. */
  slot(): Promise<void>;
}

/**
 * Gets the model's runner for this request (loading it, evicting another, or queueing as Ollama
 * would). Undefined when it has replied: 503 with Ollama's words when the pending queue is full.
 * The request holds the runner until its response closes; a client that leaves lets go at once.
 */
export async function schedule(
  call: Call,
  entry: ModelEntry,
  keepAliveMs: number | undefined,
  plan: Plan,
  reply: ErrorReply = ollamaError,
): Promise<Scheduled | undefined> {
  let lease: Awaited<ReturnType<Call['state']['sched']['acquire']>>;
  try {
    lease = await call.state.sched.acquire(entry, { keepAliveMs, loadMs: plan.loadMs, signal: call.signal });
  } catch (err) {
    if (err instanceof SchedError && err.code === 'busy') {
      reply(call.res, 503, MAX_QUEUE_MESSAGE);
      return undefined;
    }
    throw err;
  }
  const loadedAt = performance.now();
  // 'close' comes after a finished response too; an abort has already released the lease.
  call.res.once('close', lease.release);
  return { loadedAt, slot: lease.slot };
}

/** schedule() plus the slot, for routes that always generate (the /v1 ones): OpenAI-shaped errors. */
export async function enterOpenai(
  call: Call,
  entry: ModelEntry,
  keepAliveMs: number | undefined,
  plan: Plan,
): Promise<Scheduled | undefined> {
  const run = await schedule(call, entry, keepAliveMs, plan, openaiError);
  if (run) await run.slot();
  return run;
}

/** GET /api/ps: what is resident, longest remaining keep_alive first. */
export function ps(call: Call): void {
  const models = call.state.sched.running().map(({ entry, expiresAt }) => ({
    name: entry.name,
    model: entry.name,
    size: entry.size,
    digest: entry.digest,
    details: entry.details,
    expires_at: expiresAt.toISOString(),
    size_vram: entry.size,
    context_length: Math.min(DEFAULT_CONTEXT_LENGTH, entry.contextLength),
  }));
  sendJson(call.res, 200, { models });
}

/** GET /emulator/v1/sched: the scheduler's counters, for tests (real Ollama has no such path). */
export function schedCounters(call: Call): void {
  sendJson(call.res, 200, call.state.sched.counters());
}
