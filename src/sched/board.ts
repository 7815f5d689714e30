/**
 * The scheduler's shared memory: one Int32Array over a SharedArrayBuffer, handed to every proxy worker
 * and kept by the owner (owner.ts, on the supervisor's thread). Per model: the slots, the requests in
 * flight at Ollama, and how many wait; per worker and model: the slots that worker holds, so that the
 * slots of a worker that dies are given back. A worker takes a free slot with one compare-and-swap
 * when nobody waits (no message, no thread hop); only a full model's requests go to the owner's queue.
 *
 * Models are found by a 32-bit FNV-1a hash of their name in an open-addressed table of MAX_MODELS
 * entries, claimed with a compare-and-swap by whichever thread meets the model first. Two names
 * with one hash would share their slots (about one chance in 2^32 per pair); past MAX_MODELS models
 * a model is not limited (modelIndex returns -1).
 */

export const MAX_MODELS = 256;
/** fields of one model's entry */
const HASH = 0;
const SLOTS = 1;
const IN_FLIGHT = 2;
const WAITING = 3;
const FIELDS = 4;
/** header: the default slot count, the worker count */
const HEADER = 2;

export type Board = Int32Array;

export function createBoard(workers: number, slots: number): Board {
  const size = HEADER + MAX_MODELS * FIELDS + 2 * workers * MAX_MODELS;
  const board = new Int32Array(new SharedArrayBuffer(size * Int32Array.BYTES_PER_ELEMENT));
  board[0] = slots;
  board[1] = workers;
  return board;
}

const at = (index: number, field: number): number => HEADER + index * FIELDS + field;
/** slots worker `w` holds of model `index` */
const held = (_board: Board, w: number, index: number): number => HEADER + MAX_MODELS * FIELDS + w * MAX_MODELS + index;
/** wait requests worker `w` sent for model `index` that the owner has not read yet */
const announced = (board: Board, w: number, index: number): number =>
  HEADER + MAX_MODELS * FIELDS + (board[1]! + w) * MAX_MODELS + index;

/** A model name as Ollama resolves it: no tag means `:latest`. */
export function normalizeModel(model: string): string {
  const slash = model.lastIndexOf('/');
  return model.indexOf(':', slash + 1) < 0 ? `${model}:latest` : model;
}

function fnv1a(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  // 0 marks a free entry.
  return h === 0 ? 1 : h | 0;
}

/** The entry of `model` (claimed if new), or -1 when the table is full. */
export function modelIndex(board: Board, model: string): number {
  const h = fnv1a(model);
  const start = (h >>> 0) % MAX_MODELS;
  for (let i = 0; i < MAX_MODELS; i++) {
    const index = (start + i) % MAX_MODELS;
    const cur = Atomics.load(board, at(index, HASH));
    if (cur === h) return index;
    if (cur === 0) {
      const prev = Atomics.compareExchange(board, at(index, HASH), 0, h);
      if (prev === 0 || prev === h) return index;
    }
  }
  return -1;
}

export function slotsOf(board: Board, index: number): number {
  const own = Atomics.load(board, at(index, SLOTS));
  return own > 0 ? own : Atomics.load(board, 0);
}

export function inFlightOf(board: Board, index: number): number {
  return Atomics.load(board, at(index, IN_FLIGHT));
}

export function waitingOf(board: Board, index: number): number {
  return Atomics.load(board, at(index, WAITING));
}

/** Takes a slot if one is free and nobody waits for one (worker side, the fast path). */
export function tryTake(board: Board, index: number, worker: number): boolean {
  if (Atomics.load(board, at(index, WAITING)) > 0) return false;
  return reserve(board, index, worker);
}

/** Takes a slot for `worker` if one is free, waiting or not. */
export function reserve(board: Board, index: number, worker: number): boolean {
  if (!reserveSlot(board, index)) return false;
  assign(board, index, worker);
  return true;
}

/** Takes a free slot for a request not chosen yet (the owner, before it picks in queue order). */
export function reserveSlot(board: Board, index: number): boolean {
  const cell = at(index, IN_FLIGHT);
  const slots = slotsOf(board, index);
  for (;;) {
    const n = Atomics.load(board, cell);
    if (n >= slots) return false;
    if (Atomics.compareExchange(board, cell, n, n + 1) === n) return true;
  }
}

/** Books a slot taken with reserveSlot to the worker whose request got it. */
export function assign(board: Board, index: number, worker: number): void {
  Atomics.add(board, held(board, worker, index), 1);
}

/** Gives a slot back; true when requests wait for it (the owner must be told). */
export function give(board: Board, index: number, worker: number): boolean {
  Atomics.sub(board, held(board, worker, index), 1);
  Atomics.sub(board, at(index, IN_FLIGHT), 1);
  return Atomics.load(board, at(index, WAITING)) > 0;
}

/** A worker is about to ask the owner for a slot: from now on the fast path of every worker waits. */
export function announce(board: Board, index: number, worker: number): void {
  Atomics.add(board, at(index, WAITING), 1);
  Atomics.add(board, announced(board, worker, index), 1);
}

/** The owner read a worker's wait request. */
export function received(board: Board, index: number, worker: number): void {
  Atomics.sub(board, announced(board, worker, index), 1);
}

/** A waiting request left the queue (granted, refused, cancelled). */
export function leftQueue(board: Board, index: number): void {
  Atomics.sub(board, at(index, WAITING), 1);
}

/**
 * A worker's thread ended: the slots it held are free again, and its wait requests the owner never
 * read no longer count as waiting. Returns the models that had any, to serve their queues.
 */
export function reclaim(board: Board, worker: number): number[] {
  const touched: number[] = [];
  for (let index = 0; index < MAX_MODELS; index++) {
    const h = Atomics.exchange(board, held(board, worker, index), 0);
    const a = Atomics.exchange(board, announced(board, worker, index), 0);
    if (h !== 0) Atomics.sub(board, at(index, IN_FLIGHT), h);
    if (a !== 0) Atomics.sub(board, at(index, WAITING), a);
    if (h !== 0 || a !== 0) touched.push(index);
  }
  return touched;
}
