/**
 * Which refused TLS clients a server node's worker reports to the supervisor (which logs each one
 * and lists refused devices as pending). Certificates cost nothing to make, so one host can present
 * a new device id on every connection: de-duplicating by id alone let 400 fresh certificates from
 * one host log ~94 KiB/s and push real devices out of the pending list. Here a refusal is reported
 * only if its id was not reported in the last `idEveryMs` AND its source address has reported fewer
 * than `perSource` distinct refusals in its current window; the rest are counted, and summary() says
 * per source how many were held back. Both maps are bounded.
 */

export interface RefusalReportSettings {
  /** An id (or, without a certificate, an address) is reported at most once per this. */
  readonly idEveryMs: number;
  /** Window of the per-source count. */
  readonly sourceWindowMs: number;
  /** Reports per source address per window. */
  readonly perSource: number;
  /** Most ids and most sources remembered; past it the oldest are forgotten. */
  readonly maxKeys: number;
}

export const REFUSAL_REPORTS: RefusalReportSettings = Object.freeze({
  idEveryMs: 5_000,
  sourceWindowMs: 60_000,
  perSource: 4,
  maxKeys: 1_024,
});

interface Source {
  since: number;
  reported: number;
  /** refusals held back in this window, and how many distinct ids they carried (bounded count) */
  held: number;
  heldIds: Set<string>;
}

export interface HeldBack {
  readonly source: string;
  readonly count: number;
  /** distinct device ids among them (at most maxKeys counted) */
  readonly ids: number;
}

/** Deletes the oldest entries of `map` (insertion order) until it has room for one more. */
function makeRoom<K, V>(map: Map<K, V>, max: number): void {
  while (map.size >= max) map.delete(map.keys().next().value as K);
}

export class RefusalReports {
  readonly #s: RefusalReportSettings;
  readonly #now: () => number;
  readonly #ids = new Map<string, number>();
  readonly #sources = new Map<string, Source>();

  constructor(settings: RefusalReportSettings = REFUSAL_REPORTS, now: () => number = Date.now) {
    this.#s = settings;
    this.#now = now;
  }

  /** Whether to report this refusal (`id`: the device id, null without a certificate; `addr`: the source). */
  due(id: string | null, addr: string): boolean {
    const now = this.#now();
    const key = id ?? `addr ${addr}`;
    let source = this.#sources.get(addr);
    if (source === undefined || now - source.since >= this.#s.sourceWindowMs) {
      if (source === undefined) makeRoom(this.#sources, this.#s.maxKeys);
      else this.#sources.delete(addr); // re-inserted below: the map stays oldest first
      source = { since: now, reported: 0, held: source?.held ?? 0, heldIds: source?.heldIds ?? new Set() };
      this.#sources.set(addr, source);
    }
    const last = this.#ids.get(key);
    if (last !== undefined && now - last < this.#s.idEveryMs) return false;
    if (source.reported >= this.#s.perSource) {
      source.held += 1;
      if (source.heldIds.size < this.#s.maxKeys) source.heldIds.add(key);
      return false;
    }
    source.reported += 1;
    this.#ids.delete(key);
    makeRoom(this.#ids, this.#s.maxKeys);
    this.#ids.set(key, now);
    return true;
  }

  /** The refusals held back per source since the last call (then forgotten). */
  summary(): HeldBack[] {
    const out: HeldBack[] = [];
    for (const [source, s] of this.#sources) {
      if (s.held === 0) continue;
      out.push({ source, count: s.held, ids: s.heldIds.size });
      s.held = 0;
      s.heldIds = new Set();
    }
    return out;
  }
}
