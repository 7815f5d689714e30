/**
 * The LAN discovery protocol on UDP 11436: the datagram's typed body. Wire format (datagram.ts):
 * 4 magic bytes "OLNA", 1 version byte (LAN_PROTOCOL_VERSION), then one msgpack map, whole datagram
 * at most MAX_DATAGRAM bytes.
 */
export const LAN_MAGIC = Uint8Array.of(0x4f, 0x4c, 0x4e, 0x41); // "OLNA"
export const LAN_PROTOCOL_VERSION = 1;
/** Under the IPv6 minimum MTU (1280) less headers: never fragmented on any LAN. */
export const MAX_DATAGRAM = 1200;
/** Administratively scoped (RFC 2365, 239.255.0.0/16 is the local scope); 11.36 recalls the port. */
export const DEFAULT_GROUP = '239.255.11.36';
export const DEFAULT_DISCOVERY_PORT = 11436;

export type LanKind = 'query' | 'announce' | 'bye';
export type NodeRole = 'server' | 'client';

/** What a peer says about its load, for balancing before any request was sent to it. */
export interface LoadSummary {
  readonly inFlight: number;
  readonly workers: number;
}

/** A member as the leader lists it in its answer to a query: enough to use it at once. */
export interface MemberEntry {
  readonly id: string;
  readonly addr: string;
  readonly port: number;
}

export interface LanDatagram {
  readonly kind: LanKind;
  /** node id (device id once the trust issue lands): hex, at most 64 chars */
  readonly id: string;
  /** random per process start: the same id with another boot is a conflict (a cloned identity) */
  readonly boot: string;
  readonly role: NodeRole;
  /** port of the node's proxy listener (0 for a client node: it serves only its own machine) */
  readonly port: number;
  /** certificate fingerprint, '' until TLS pinning */
  readonly fp: string;
  /** per-sender sequence number, increasing; duplicates (multicast + broadcast copies) share one */
  readonly seq: number;
  readonly load: LoadSummary;
  /** digest of the sorted model list; a change tells clients to fetch /api/tags again */
  readonly models: string;
  /** election term and the leader this node believes in ('' when none) */
  readonly term: number;
  readonly leader: string;
  /** only in a leader's answer to a query: the live server members */
  readonly members?: readonly MemberEntry[];
}

/** A peer as discovery reports it: the datagram plus where it really came from. */
export interface PeerInfo {
  readonly id: string;
  readonly boot: string;
  readonly role: NodeRole;
  /** source address of the datagram (never an address the payload claims) */
  readonly addr: string;
  readonly port: number;
  readonly fp: string;
  readonly load: LoadSummary;
  readonly models: string;
  readonly term: number;
  readonly leader: string;
  /** Date.now() when last heard */
  readonly lastSeen: number;
}
