/**
 * Token buckets per source address, for datagrams from the LAN. The table is bounded: a sender that
 * spoofs many source addresses can at worst evict idle buckets, never grow memory.
 */
export interface RateLimit {
  /** sustained datagrams per second per source */
  readonly perSecond: number;
  /** datagrams a quiet source may send at once */
  readonly burst: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class SourceRateLimiter {
  readonly #limit: RateLimit;
  readonly #maxSources: number;
  readonly #buckets = new Map<string, Bucket>();

  constructor(limit: RateLimit, maxSources = 1024) {
    this.#limit = limit;
    this.#maxSources = maxSources;
  }

  /** Takes one token from `source`'s bucket; false when it is empty (drop the datagram). */
  admit(source: string, now: number): boolean {
    let bucket = this.#buckets.get(source);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxSources) this.prune(now);
      if (this.#buckets.size >= this.#maxSources) {
        // Still full of busy sources: evict the oldest inserted one (Map keeps insertion order).
        const oldest = this.#buckets.keys().next().value;
        if (oldest !== undefined) this.#buckets.delete(oldest);
      }
      bucket = { tokens: this.#limit.burst, at: now };
      this.#buckets.set(source, bucket);
    }
    const elapsed = Math.max(0, now - bucket.at);
    bucket.tokens = Math.min(this.#limit.burst, bucket.tokens + (elapsed * this.#limit.perSecond) / 1000);
    bucket.at = now;
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Forgets sources whose bucket would be full again by now: they cost nothing to recreate. */
  prune(now: number): void {
    const refillMs = (this.#limit.burst * 1000) / this.#limit.perSecond;
    for (const [source, bucket] of this.#buckets) {
      if (now - bucket.at >= refillMs) this.#buckets.delete(source);
    }
  }

  get size(): number {
    return this.#buckets.size;
  }
}
