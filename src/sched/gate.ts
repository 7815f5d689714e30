/**
 * A proxy worker's side of the scheduler: which requests pass admission, and their slots. An
 * inference request (generate, chat, embed, /v1 completions, responses, messages) names its model in
 * its JSON body; while the model has a free slot and nobody waits for one, the request takes it from
 * the shared board (board.ts) with one compare-and-swap and goes on at once. Otherwise it asks the
 * owner (owner.ts, on the supervisor's thread) and waits for `sched.grant` or `sched.refuse`.
 *
 * Devices: the peer certificate's device id; the node's own certificate and plain loopback clients
 * are one device, "local".
 */
import type { MessageOf } from '../protocol/messages.ts';
import { ModelScan } from '../proxy/route/model-scan.ts';
import { normalizeModel as sameModelKey } from '../proxy/route/model-name.ts';
import { announce, give, modelIndex, normalizeModel, tryTake, type Board } from './board.ts';

/** The paths whose requests hold a slot of their model at Ollama while they run. */
const INFERENCE = new Set([
  '/api/generate',
  '/api/chat',
  '/api/embed',
  '/api/embeddings',
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
  '/v1/responses',
  '/v1/messages',
]);

export const LOCAL_DEVICE = 'local';

export type SchedRefusal = 'OLN_QUEUE_FULL' | 'OLN_QUEUE_TIMEOUT';

/** What admission needs of a request (the relay's Downstream has it). */
export interface Admittable {
  readonly method: string;
  readonly url: string;
  readonly body: Buffer | object | null;
  /** the allowed device it came from (metrics/device-label.ts), '' if none */
  readonly device: string;
}

type ToOwner = MessageOf<'sched.wait'> | MessageOf<'sched.cancel'> | MessageOf<'sched.kick'>;

/** One admitted request's hold on its model: a slot, or a place in the queue. */
export class Pass {
  readonly #gate: SchedGate;
  readonly index: number;
  readonly model: string;
  readonly device: string;
  #state: 'held' | 'new' | 'waiting' | 'done';
  #ticket = 0;
  #since = 0;
  #go: (() => void) | null = null;
  #refuse: ((code: SchedRefusal, retryAfterS: number) => void) | null = null;
  /** ms the request waited for its slot; -1 if it did not wait */
  waitedMs = -1;

  constructor(gate: SchedGate, index: number, model: string, device: string, held: boolean) {
    this.#gate = gate;
    this.index = index;
    this.model = model;
    this.device = device;
    this.#state = held ? 'held' : 'new';
  }

  /** Whether it holds its slot: the request goes on now. */
  get held(): boolean {
    return this.#state === 'held';
  }

  /** Queues the request; `go` runs when its slot is granted, `refuse` when it is turned away. */
  wait(go: () => void, refuse: (code: SchedRefusal, retryAfterS: number) => void): void {
    if (this.#state !== 'new') return;
    this.#state = 'waiting';
    this.#go = go;
    this.#refuse = refuse;
    this.#since = Date.now();
    this.#ticket = this.#gate.enqueue(this);
  }

  /** The request is over, or its client left: the slot goes back, or the place in the queue. */
  done(): void {
    const state = this.#state;
    this.#state = 'done';
    if (state === 'held') this.#gate.release(this.index);
    else if (state === 'waiting') this.#gate.cancel(this.#ticket);
  }

  /** The owner granted the slot (false: this request was over already; the caller gives it back). */
  granted(): boolean {
    if (this.#state !== 'waiting') return false;
    this.#state = 'held';
    this.waitedMs = Date.now() - this.#since;
    const go = this.#go!;
    this.#go = null;
    this.#refuse = null;
    go();
    return true;
  }

  refused(code: SchedRefusal, retryAfterS: number): void {
    if (this.#state !== 'waiting') return;
    this.#state = 'done';
    const refuse = this.#refuse!;
    this.#go = null;
    this.#refuse = null;
    refuse(code, retryAfterS);
  }
}

const REFUSALS: Record<SchedRefusal, string> = {
  OLN_QUEUE_FULL:
    'ollana: this device already has as many requests waiting for this model as the server allows (--queue-depth); ' +
    'retry after the time in Retry-After, or send fewer at once',
  OLN_QUEUE_TIMEOUT:
    'ollana: no slot of this model came free for this device within --queue-timeout (the server is shared ' +
    'fairly between devices and is busy); retry after the time in Retry-After',
};

/**
 * Whether the request goes on now (no pass, or it holds its slot). Otherwise it waits: `go` runs when
 * its slot is granted, `refuse` with the 503 to send when it is turned away.
 */
export function admitted(
  pass: Pass | null,
  go: () => void,
  refuse: (status: number, message: string, extra: string[]) => void,
): boolean {
  if (pass === null || pass.held) return true;
  pass.wait(go, (code, retryAfterS) =>
    refuse(503, `${REFUSALS[code]} [${code}]`, ['retry-after', String(retryAfterS), 'x-ollana-error', code]),
  );
  return false;
}

export class SchedGate {
  readonly #board: Board;
  readonly #worker: number;
  readonly #selfId: string;
  readonly #send: (msg: ToOwner) => void;
  readonly #waiting = new Map<number, Pass>();
  readonly #indexes = new Map<string, number>();
  #ticket = 0;

  constructor(board: Board, worker: number, selfId: string, send: (msg: ToOwner) => void) {
    this.#board = board;
    this.#worker = worker;
    this.#selfId = selfId;
    this.#send = send;
  }

  /** The request's pass (holding a slot, or to wait()), or null: it needs none (not inference, no model). */
  admit(r: Admittable): Pass | null {
    if (r.method !== 'POST') return null;
    const q = r.url.indexOf('?');
    if (!INFERENCE.has(q < 0 ? r.url : r.url.slice(0, q))) return null;
    // A body too large to hold (over 64 KiB, streamed) is not looked into: it passes (docs/fairness.md).
    if (!Buffer.isBuffer(r.body)) return null;
    const scan = new ModelScan(r.body.length);
    scan.feed(r.body);
    const named = scan.model;
    if (named === null) return null;
    const model = normalizeModel(named);
    // Slots are Ollama's per model, and Ollama takes `Qwen3:8b` and `library/qwen3:8b` for one model.
    const key = sameModelKey(named);
    let index = this.#indexes.get(key);
    if (index === undefined) {
      index = modelIndex(this.#board, key);
      if (this.#indexes.size < 4096) this.#indexes.set(key, index);
    }
    if (index < 0) return null;
    const held = tryTake(this.#board, index, this.#worker);
    const device = r.device === '' || r.device === this.#selfId ? LOCAL_DEVICE : r.device;
    return new Pass(this, index, model, device, held);
  }

  enqueue(pass: Pass): number {
    const ticket = ++this.#ticket;
    this.#waiting.set(ticket, pass);
    announce(this.#board, pass.index, this.#worker);
    this.#send({ type: 'sched.wait', ticket, index: pass.index, model: pass.model, device: pass.device });
    return ticket;
  }

  release(index: number): void {
    if (give(this.#board, index, this.#worker)) this.#send({ type: 'sched.kick', index });
  }

  cancel(ticket: number): void {
    if (this.#waiting.delete(ticket)) this.#send({ type: 'sched.cancel', ticket });
  }

  /** From the owner: `ticket` has its slot. */
  granted(ticket: number, index: number): void {
    const pass = this.#waiting.get(ticket);
    this.#waiting.delete(ticket);
    if (pass?.granted()) return;
    // Its client left as the grant crossed: the slot goes back at once.
    this.release(index);
  }

  refused(ticket: number, code: SchedRefusal, retryAfterS: number): void {
    const pass = this.#waiting.get(ticket);
    this.#waiting.delete(ticket);
    pass?.refused(code, retryAfterS);
  }
}
