/**
 * The discovery actor's settings, their defaults and checks, and the bounds on what peers can make
 * it hold (DESIGN.md, "LAN protocol"; README, "Bounded against floods").
 */
import type { LanInterface } from '../../net/lan-interfaces.ts';
import type { RateLimit } from '../../net/rate-limiter.ts';
import { DEFAULT_DISCOVERY_PORT, DEFAULT_GROUP } from '../../protocol/lan.ts';

/** Settings of the discovery actor; the optional ones default as in DISCOVERY_DEFAULTS. */
export interface DiscoveryOptions {
  /** UDP port shared by every node (bound with SO_REUSEADDR); 0 = any free port (tests) */
  readonly port: number;
  /** IPv4 multicast group */
  readonly group: string;
  /** send to the multicast group */
  readonly multicast: boolean;
  /** send to each interface's directed broadcast address (the fallback for networks that drop multicast) */
  readonly broadcast: boolean;
  readonly heartbeatMs: number;
  /** a peer not heard for this long is gone */
  readonly deadAfterMs: number;
  /** how often a client node that knows no server queries again */
  readonly queryIntervalMs: number;
  /** a server answers a query after a random delay in [0, answerJitterMs), so answers do not collide */
  readonly answerJitterMs: number;
  /** per source address */
  readonly rateLimit: RateLimit;
  /** with broadcast, also send to 255.255.255.255 (routed by the OS: the default route's interface) */
  readonly limitedBroadcast?: boolean;
  /** a live peer is reported again (peer.seen) at least this often, so its load figures stay fresh */
  readonly refreshMs?: number;
  /** null: every non-internal IPv4 interface, rescanned every rescanMs; a list: exactly these (tests) */
  readonly interfaces?: readonly LanInterface[] | null;
  readonly rescanMs?: number;
}

export type ResolvedOptions = Required<DiscoveryOptions>;

export const DISCOVERY_DEFAULTS: ResolvedOptions = Object.freeze({
  port: DEFAULT_DISCOVERY_PORT,
  group: DEFAULT_GROUP,
  multicast: true,
  broadcast: true,
  limitedBroadcast: true,
  heartbeatMs: 1_000,
  deadAfterMs: 3_500,
  queryIntervalMs: 1_000,
  answerJitterMs: 200,
  refreshMs: 5_000,
  // Legitimate traffic from one address is a few datagrams a second (each heartbeat arrives once per
  // path: multicast, directed and limited broadcast); several nodes may share one address.
  rateLimit: Object.freeze({ perSecond: 100, burst: 200 }),
  interfaces: null,
  rescanMs: 5_000,
});

/**
 * Bounds on what peers can make us hold and do. A LAN of a few hundred ollana nodes stays inside
 * them; a flood of made-up nodes (each with a key of its own, so each verifies) fills the table at
 * NEW_PEER_LIMIT a second until MAX_PEERS, and never further.
 */
export const MAX_PEERS = 256;
export const NEW_PEER_LIMIT: RateLimit = Object.freeze({ perSecond: 20, burst: 64 });

/** The given options over the defaults; an option given as undefined keeps its default. Throws a RangeError for a bad value. */
export function resolveOptions(options: Partial<DiscoveryOptions> | undefined): ResolvedOptions {
  // A plain spread would overwrite a default with an undefined.
  const given = Object.fromEntries(Object.entries(options ?? {}).filter(([, v]) => v !== undefined));
  return checkOptions({ ...DISCOVERY_DEFAULTS, ...given });
}

function checkOptions(o: ResolvedOptions): ResolvedOptions {
  const positive = ['heartbeatMs', 'deadAfterMs', 'queryIntervalMs', 'refreshMs', 'rescanMs'] as const;
  for (const key of positive) {
    if (!(o[key] > 0)) throw new RangeError(`discovery option ${key} must be > 0, got ${o[key]}`);
  }
  if (!(o.answerJitterMs >= 0))
    throw new RangeError(`discovery option answerJitterMs must be >= 0, got ${o.answerJitterMs}`);
  if (!Number.isInteger(o.port) || o.port < 0 || o.port > 65_535)
    throw new RangeError(`discovery port must be 0..65535, got ${o.port}`);
  if (!(o.rateLimit.perSecond > 0) || !(o.rateLimit.burst >= 1)) {
    throw new RangeError('discovery rateLimit needs perSecond > 0 and burst >= 1');
  }
  return o;
}
