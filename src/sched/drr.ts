/**
 * One model's waiting requests, queued per device and served by deficit round robin: each device
 * with work waiting gets, per round, as many grants as its weight, so a device with a backlog of 50
 * and one with a single request share the slots as they free (1:1 with equal weights, 2:1 with
 * weights 2 and 1), and the one with a single request waits for at most one round. Every request
 * costs one grant: a slot is what is shared, whatever the request does with it.
 *
 * Pure: no clock, no I/O. The caller (owner.ts) says when a slot is free and when time passes.
 */

export interface Waiting {
  /** unique across the node (owner.ts: worker and ticket) */
  readonly key: string;
  readonly device: string;
  /** when it started waiting and when it gives up (ms, the owner's clock) */
  readonly since: number;
  readonly deadline: number;
}

export type EnqueueResult = 'queued' | 'full';

interface DeviceQueue {
  readonly device: string;
  readonly items: Waiting[];
  /** grants this device may still take in the current round */
  deficit: number;
}

export class DrrQueue {
  readonly #depth: number;
  readonly #weight: (device: string) => number;
  readonly #queues = new Map<string, DeviceQueue>();
  /** devices with work waiting, in round order; #turn is the one being served */
  readonly #ring: DeviceQueue[] = [];
  #turn = 0;
  #size = 0;

  /**
   * @param depth requests one device may have waiting (more are refused: 'full')
   * @param weight a device's share per round (at least 1)
   */
  constructor(depth: number, weight: (device: string) => number) {
    this.#depth = depth;
    this.#weight = weight;
  }

  get size(): number {
    return this.#size;
  }

  enqueue(w: Waiting): EnqueueResult {
    let q = this.#queues.get(w.device);
    if (q === undefined) {
      q = { device: w.device, items: [], deficit: 0 };
      this.#queues.set(w.device, q);
    }
    if (q.items.length >= this.#depth) return 'full';
    q.items.push(w);
    this.#size += 1;
    if (q.items.length === 1) {
      // A device that had nothing waiting joins the round right behind the one being served (its share
      // comes when its turn does): it is served after at most one other device's turn.
      q.deficit = 0;
      if (this.#ring.length === 0) this.#ring.push(q);
      else this.#ring.splice(this.#turn + 1, 0, q);
    }
    return 'queued';
  }

  /** The next request to grant a slot to, taken off its queue; null when nothing waits. */
  next(): Waiting | null {
    if (this.#size === 0) return null;
    // Bounded: every pass through the ring adds at least 1 to each device's deficit.
    for (;;) {
      if (this.#turn >= this.#ring.length) this.#turn = 0;
      const q = this.#ring[this.#turn]!;
      if (q.deficit >= 1) {
        q.deficit -= 1;
        const w = q.items.shift()!;
        this.#size -= 1;
        if (q.items.length === 0) this.#leaveRing(q);
        else if (q.deficit < 1) this.#advance();
        return w;
      }
      this.#advance();
    }
  }

  /** Takes a request out (its client left, or its worker died); false if it was not waiting. */
  remove(key: string, device: string): boolean {
    const q = this.#queues.get(device);
    if (q === undefined) return false;
    const i = q.items.findIndex((w) => w.key === key);
    if (i < 0) return false;
    q.items.splice(i, 1);
    this.#size -= 1;
    if (q.items.length === 0) this.#leaveRing(q);
    return true;
  }

  /** Takes out and returns every request matching `test` (expired ones, a dead worker's). */
  removeWhere(test: (w: Waiting) => boolean): Waiting[] {
    const out: Waiting[] = [];
    for (const q of [...this.#ring]) {
      const keep: Waiting[] = [];
      for (const w of q.items) (test(w) ? out : keep).push(w);
      if (keep.length === q.items.length) continue;
      this.#size -= q.items.length - keep.length;
      q.items.splice(0, q.items.length, ...keep);
      if (keep.length === 0) this.#leaveRing(q);
    }
    return out;
  }

  /** Requests waiting per device. */
  waitingByDevice(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const q of this.#ring) out[q.device] = q.items.length;
    return out;
  }

  waitingOf(device: string): number {
    return this.#queues.get(device)?.items.length ?? 0;
  }

  /** When the longest-waiting request started waiting, or null. */
  oldest(): number | null {
    let min: number | null = null;
    for (const q of this.#ring) {
      const first = q.items[0];
      if (first !== undefined && (min === null || first.since < min)) min = first.since;
    }
    return min;
  }

  #advance(): void {
    this.#turn = (this.#turn + 1) % this.#ring.length;
    const q = this.#ring[this.#turn]!;
    q.deficit += this.#weightOf(q.device);
  }

  #leaveRing(q: DeviceQueue): void {
    const i = this.#ring.indexOf(q);
    if (i >= 0) {
      this.#ring.splice(i, 1);
      if (i < this.#turn) this.#turn -= 1;
      else if (i === this.#turn && this.#ring.length > 0) {
        // The next device's turn begins: it gets its share for this round.
        if (this.#turn >= this.#ring.length) this.#turn = 0;
        const n = this.#ring[this.#turn]!;
        n.deficit += this.#weightOf(n.device);
      }
    }
    q.deficit = 0;
    this.#queues.delete(q.device);
  }

  #weightOf(device: string): number {
    return Math.max(1, Math.floor(this.#weight(device)));
  }
}
