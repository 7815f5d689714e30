/** The discovery actor and what its users need: settings, bounds, the socket it takes. */
export { DiscoveryActor, type DiscoveryDeps } from './actor.ts';
export type { DatagramSocketLike } from './lan-sender.ts';
export { DISCOVERY_DEFAULTS, MAX_PEERS, NEW_PEER_LIMIT, type DiscoveryOptions } from './options.ts';
