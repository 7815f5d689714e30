/**
 * The LAN discovery protocol on UDP 11436: the datagram's typed body. Wire format (datagram.ts):
 * 4 magic bytes "OLNA", 1 version byte (LAN_PROTOCOL_VERSION), a 2-byte body length, the body (one
 * msgpack map, carrying the sender's certificate), then the sender's ECDSA P-256 signature (64 bytes,
 * r || s) over everything before it; the whole datagram at most MAX_DATAGRAM bytes.
 *
 * Version 2 made datagrams signed. A version-1 node drops version-2 datagrams as "version" and the
 * reverse: old and new nodes do not see each other until both run version 2.
 */
export const LAN_MAGIC = Uint8Array.of(0x4f, 0x4c, 0x4e, 0x41); // "OLNA"
export const LAN_PROTOCOL_VERSION = 2;
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

export interface LanDatagram {
  readonly kind: LanKind;
  /** the sender's device id: must be the id of `cert`, checked by the receiver */
  readonly id: string;
  /** random per process start: the same id with another boot is a restart, or a clone when both go on */
  readonly boot: string;
  readonly role: NodeRole;
  /** port of the node's proxy listener (0 for a client node: it serves only its own machine) */
  readonly port: number;
  /**
   * per-sender sequence number, increasing; duplicates (multicast + broadcast copies) share one. It
   * starts at the sender's clock (ms) when its discovery starts, so a later boot (or a restarted
   * discovery thread) continues above every number an earlier one sent.
   */
  readonly seq: number;
  readonly load: LoadSummary;
  /** digest of the sorted model list; a change tells clients to fetch /api/tags again */
  readonly models: string;
  /** election term and the leader this node believes in ('' when none) */
  readonly term: number;
  readonly leader: string;
  /** a server node that is stopping: send it no new requests, let the running ones finish */
  readonly draining: boolean;
}

/** A peer as discovery reports it: the datagram plus where it really came from. */
export interface PeerInfo {
  readonly id: string;
  readonly boot: string;
  readonly role: NodeRole;
  /** source address of the datagram (never an address the payload claims) */
  readonly addr: string;
  readonly port: number;
  /** SHA-256 of its certificate (hex), which its datagrams carry and were verified against */
  readonly fp: string;
  readonly load: LoadSummary;
  readonly models: string;
  readonly term: number;
  readonly leader: string;
  readonly draining: boolean;
  /** Date.now() when last heard */
  readonly lastSeen: number;
}
