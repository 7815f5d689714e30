/**
 * A proxy worker's picture of which models each server node has loaded: the supervisor's reading
 * (the route table's `loaded`, polled every second, actors/residency-poll.ts) or this worker's own,
 * whichever is newer. The worker's own readings come from its requests: a model answered 200 on a
 * server is loaded there now, an unload that succeeded took it away, and right after such a request
 * the worker reads the server's /api/ps itself (a load can have evicted another model). So a client
 * whose next request follows at once is routed by what its previous one did, not by a poll up to a
 * second old.
 */
import type { Pool } from 'undici';
import type { Upstream } from '../../protocol/messages.ts';
import { fetchJson } from './aggregate.ts';
import { normalizeModel } from './model-name.ts';

interface Reading {
  readonly models: Set<string>;
  /** ms since the epoch (Date.now()) when it was true */
  readonly at: number;
}

export class Residency {
  readonly #own = new Map<string, Reading>();
  /** The table's `loaded` of each upstream object, normalised (a new table brings new objects). */
  readonly #fromTable = new WeakMap<Upstream, ReadonlySet<string>>();
  readonly #pool: (u: Upstream) => Pool;

  constructor(pool: (u: Upstream) => Pool) {
    this.#pool = pool;
  }

  /** The models `u` has loaded, normalised (`name:tag`). */
  loaded(u: Upstream): ReadonlySet<string> {
    const own = this.#own.get(u.id);
    if (own !== undefined && own.at > (u.loadedAt ?? 0)) return own.models;
    if (own !== undefined) this.#own.delete(u.id); // the table caught up
    let table = this.#fromTable.get(u);
    if (table === undefined) {
      table = new Set((u.loaded ?? []).map(normalizeModel));
      this.#fromTable.set(u, table);
    }
    return table;
  }

  /** A request of this worker just loaded (`loaded` true) or unloaded `model` on `u`. */
  mark(u: Upstream, model: string, loaded: boolean): void {
    const models = new Set(this.loaded(u));
    const want = normalizeModel(model);
    if (models.has(want) === loaded) return;
    if (loaded) models.add(want);
    else models.delete(want);
    this.#own.set(u.id, { models, at: Date.now() });
  }

  /** Reads `u`'s /api/ps now (after a request that can have changed it); failures leave the picture as is. */
  refresh(u: Upstream): void {
    const started = Date.now();
    fetchJson(this.#pool(u), u, '/api/ps').then(
      (body) => {
        const list = Array.isArray(body.models) ? (body.models as { name?: unknown }[]) : [];
        const models = new Set(
          list
            .map((m) => m.name)
            .filter((n): n is string => typeof n === 'string')
            .map(normalizeModel),
        );
        const prev = this.#own.get(u.id);
        if (prev === undefined || prev.at <= started) this.#own.set(u.id, { models, at: started });
      },
      () => undefined,
    );
  }
}
