/** Small statistics helpers: exact percentiles over samples, medians and spreads over rounds. */

/** Exact percentile (nearest rank) of an ascending-sorted array; NaN when empty. */
export function percentileSorted(sorted: ArrayLike<number>, p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = Math.ceil((p / 100) * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

/** Growable Float64Array: a round of 1000 streams records 100 000 token delays without boxing. */
export class Samples {
  #data: Float64Array;
  #n = 0;

  constructor(capacity = 1024) {
    this.#data = new Float64Array(Math.max(16, capacity));
  }

  push(v: number): void {
    if (this.#n === this.#data.length) {
      const next = new Float64Array(this.#data.length * 2);
      next.set(this.#data);
      this.#data = next;
    }
    this.#data[this.#n++] = v;
  }

  get length(): number {
    return this.#n;
  }

  /** Sorted copy of the values. */
  sorted(): Float64Array {
    return this.#data.slice(0, this.#n).sort();
  }
}

export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
  readonly n: number;
}

export function spread(values: readonly number[]): Spread | null {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  const median = v.length % 2 === 1 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
  return { median, min: v[0]!, max: v[v.length - 1]!, n: v.length };
}
