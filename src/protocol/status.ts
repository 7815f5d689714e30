/**
 * The node's status: what the supervisor builds (src/actors/node-status.ts), a proxy worker serves
 * as GET /ollana/v1/status, and `ollana status` prints. One type for all three, so a field added here
 * is checked at each of them. It crosses the thread boundary as the `status.reply` message (msgpack,
 * checked there as a plain record) and the wire as JSON. Types only.
 */
import type { Conflict, DiscoveryStats, Upstream, WorkerStats } from './messages.ts';
import type { NodeRole } from './lan.ts';

/** One proxy worker in the status: its stats, or that it is not ready (starting, or did not answer in time). */
export type WorkerReport = WorkerStats | { readonly worker: number; readonly ready: false };

/** A server node a client node heard of. */
export interface ServerPeerStatus {
  readonly id: string;
  readonly addr: string;
  readonly url: string;
  readonly role: NodeRole;
  readonly lastSeenMsAgo: number;
  readonly healthy: boolean;
  readonly draining: boolean;
  readonly leader: boolean;
  readonly load: { readonly inFlight: number; readonly workers: number };
  readonly models: readonly string[];
}

/** A client node heard of. */
export interface ClientPeerStatus {
  readonly id: string;
  readonly addr: string;
  readonly role: NodeRole;
  readonly lastSeenMsAgo: number;
}

export interface WorkerTotals {
  readonly requests: number;
  readonly inFlight: number;
  readonly completed: number;
  readonly clientAborts: number;
  readonly upstreamErrors: number;
  readonly bytesIn: number;
  readonly bytesOut: number;
  readonly tlsHandshakes: number;
  readonly tlsResumed: number;
  readonly fastRequests: number;
  readonly handedToNode: number;
}

/** The fair-share scheduler of a server node (src/sched/owner.ts). */
export type SchedStatus = {
  /** slots per model at Ollama, and the bounds of waiting */
  readonly slots: number;
  readonly maxWaitMs: number;
  readonly queueDepth: number;
  readonly models: readonly {
    readonly model: string;
    readonly slots: number;
    readonly inFlight: number;
    /** requests waiting, per device */
    readonly queued: Readonly<Record<string, number>>;
    readonly longestWaitMs: number;
  }[];
  readonly devices: readonly {
    readonly device: string;
    readonly weight: number;
    /** requests that waited and then got their slot (those that found one free are not counted here) */
    readonly servedAfterWait: number;
    readonly waiting: number;
    /** 503s: queue full or waited too long */
    readonly refused: number;
    readonly throttled: boolean;
  }[];
};

/** A type alias, not an interface, so that it is a plain record where the status.reply message wants one. */
export type NodeStatus = {
  readonly ollana: { readonly version: string; readonly pid: number; readonly uptimeS: number };
  readonly node: { readonly id: string; readonly boot: string; readonly name: string; readonly fingerprint: string };
  readonly trust: {
    readonly trustLan: boolean;
    readonly allowed: number;
    readonly disabled: number;
    readonly pending: number;
    /** a server node: whether it serves TLS (false with --insecure-http); a client node: null */
    readonly tls: boolean | null;
  };
  readonly mode: 'auto' | 'server' | 'client';
  readonly role: NodeRole;
  readonly listen: { readonly host: string; readonly port: number };
  /** a server node's local Ollama; null on a client node */
  readonly ollama: {
    readonly url: string;
    readonly healthy: boolean;
    readonly version: string | null;
    readonly models: readonly string[];
    /** ISO time of the last health check */
    readonly checkedAt: string;
  } | null;
  readonly cluster: {
    readonly term: number;
    readonly leader: string;
    readonly isLeader: boolean;
    readonly servers: readonly string[];
    readonly conflicts: readonly Conflict[];
  };
  readonly peers: readonly (ServerPeerStatus | ClientPeerStatus)[];
  /** null with --discovery off */
  readonly discovery: {
    readonly port: number;
    readonly group: string;
    readonly multicast: boolean;
    readonly broadcast: boolean;
    readonly interfaces: readonly string[];
    /** null when the discovery thread did not answer in time */
    readonly stats: DiscoveryStats | null;
  } | null;
  readonly upstreams: readonly Upstream[];
  readonly connections: { readonly open: number; readonly max: number };
  /** a server node's fair-share scheduler; null on a client node */
  readonly sched: SchedStatus | null;
  readonly workers: {
    readonly configured: number;
    readonly live: number;
    readonly restarts: number;
    readonly totals: WorkerTotals;
    readonly list: readonly WorkerReport[];
  };
  readonly memory: { readonly rssBytes: number };
};
