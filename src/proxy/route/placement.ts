/**
 * Which server a request for a model goes to on a client node (pure, no I/O). Warm first: a server
 * that has the model loaded wins, and of several, always the same one (sticky: a rendezvous hash of
 * the model and the server, so every worker of this node picks alike without talking), while it has
 * fewer than `spillAfter` of this worker's requests in flight. Past that, the request spills to the
 * next warm server, and only when no warm server has room is the model loaded cold on another: the
 * one with the fewest models loaded (the likeliest to have memory free), then the least busy, then
 * the same hash. Servers that do not list the model come last only when none lists it.
 */
import type { Upstream } from '../../protocol/messages.ts';
import { normalizeModel, parseModel } from './model-name.ts';

export interface PlacementInputs {
  /** This worker's in-flight requests per server id. */
  readonly inFlight: ReadonlyMap<string, number>;
  /** Models each server has loaded, normalised. */
  readonly loaded: (u: Upstream) => ReadonlySet<string>;
  readonly spillAfter: number;
}

/** FNV-1a of the model and the server id: the server's rank for this model, the same in every worker. */
export function rank(model: string, id: string): number {
  let h = 0x811c9dc5;
  const s = `${model}\u0000${id}`;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  return h;
}

/** Whether `u` lists `want` (normalised) among its models. */
export function lists(u: Upstream, want: string): boolean {
  return u.models.some((m) => normalizeModel(m) === want);
}

/** The candidates for a request naming `model`, in the order to try them. */
export function place(ups: readonly Upstream[], model: string, p: PlacementInputs): Upstream[] {
  const want = normalizeModel(model);
  const healthy = ups.filter((u) => u.healthy);
  const having = healthy.filter((u) => lists(u, want));
  const pool = having.length > 0 ? having : healthy;
  const busy = (u: Upstream): number => p.inFlight.get(u.id) ?? 0;
  const room = (u: Upstream): boolean => busy(u) < p.spillAfter;
  const byRank = (a: Upstream, b: Upstream): number => rank(want, b.id) - rank(want, a.id);
  const warm = pool.filter((u) => p.loaded(u).has(want)).sort(byRank);
  const cold = pool
    .filter((u) => !p.loaded(u).has(want))
    .sort((a, b) => p.loaded(a).size - p.loaded(b).size || busy(a) - busy(b) || byRank(a, b));
  const full = (list: Upstream[]): Upstream[] => list.filter((u) => !room(u)).sort((a, b) => busy(a) - busy(b));
  const order = [...warm.filter(room), ...cold.filter(room), ...full(warm), ...full(cold)];
  // A cloud model no server lists: the leader first, where account requests go (someone signed in there).
  if (having.length === 0 && parseModel(model).cloud) {
    const leader = order.findIndex((u) => u.leader);
    if (leader > 0) return [order[leader]!, ...order.slice(0, leader), ...order.slice(leader + 1)];
  }
  return order;
}
