/**
 * The node-wide cap on open client connections (--max-connections), kept in memory the proxy workers
 * share with the supervisor. The kernel spreads connections over the workers' listening sockets
 * (reusePort) as it likes, so a cap per worker would refuse on one worker while the node is under its
 * total; here a connection is admitted while the whole node holds fewer than the cap.
 *
 * Board layout (Int32Array over a SharedArrayBuffer): slot i counts worker i's open connections; the
 * last slot is a generation a worker bumps when it refuses a connection, which every worker waits on
 * (Atomics.waitAsync) to close its idle connections: room is made wherever the idle ones are.
 * One slot per worker rather than one counter: a worker that dies takes its connections with it
 * without counting them out, and the supervisor zeroes its slot (clearSlot).
 */

/** A board for `workers` proxy workers. */
export function connectionBoard(workers: number): Int32Array {
  return new Int32Array(new SharedArrayBuffer((workers + 1) * Int32Array.BYTES_PER_ELEMENT));
}

/** Open connections of the node: the sum of the workers' slots. */
export function openConnections(board: Int32Array): number {
  let n = 0;
  for (let i = 0; i < board.length - 1; i++) n += Atomics.load(board, i);
  return n;
}

/** Forgets a dead worker's connections (the kernel closed them with its thread). */
export function clearSlot(board: Int32Array, worker: number): void {
  Atomics.store(board, worker, 0);
}

export class ConnectionCap {
  readonly #board: Int32Array;
  readonly #slot: number;
  readonly #gen: number;
  readonly #max: number;
  #stopped = false;

  /**
   * @param board shared with the other workers; null: this worker alone (no pool around it)
   * @param max open connections of the whole node; 0 = no limit (connections are still counted)
   */
  constructor(board: Int32Array | null, worker: number, max: number) {
    this.#board = board ?? connectionBoard(worker + 1);
    this.#slot = worker;
    this.#gen = this.#board.length - 1;
    this.#max = max;
    clearSlot(this.#board, worker);
  }

  get max(): number {
    return this.#max;
  }

  /** Proxy workers sharing the board. */
  get workers(): number {
    return this.#board.length - 1;
  }

  /** Counts a new connection in, unless the node is at the cap. */
  admit(): boolean {
    Atomics.add(this.#board, this.#slot, 1);
    // Counted first, then checked: two workers admitting at once may both refuse the last place,
    // but the node never holds more than the cap.
    if (this.#max > 0 && openConnections(this.#board) > this.#max) {
      Atomics.sub(this.#board, this.#slot, 1);
      return false;
    }
    return true;
  }

  /** Counts an admitted connection out (it closed). */
  readonly release = (): void => {
    Atomics.sub(this.#board, this.#slot, 1);
  };

  /** Asks every worker, this one included, to close its idle connections. */
  askForRoom(): void {
    Atomics.add(this.#board, this.#gen, 1);
    Atomics.notify(this.#board, this.#gen);
  }

  /** Calls `evict` whenever a worker asks for room, until stop(). Never blocks: Atomics.waitAsync. */
  onRoomWanted(evict: () => void): void {
    const wait = (seen: number): void => {
      if (this.#stopped) return;
      const result = Atomics.waitAsync(this.#board, this.#gen, seen);
      const woke = (): void => {
        if (this.#stopped) return;
        const now = Atomics.load(this.#board, this.#gen);
        if (now !== seen) evict();
        wait(now);
      };
      if (result.async) void result.value.then(woke);
      else woke();
    };
    wait(Atomics.load(this.#board, this.#gen));
  }

  stop(): void {
    this.#stopped = true;
  }
}
