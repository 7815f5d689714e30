/**
 * What the supervisor hands each worker thread when it starts it: the workerData of the discovery,
 * election and proxy threads, and the piscina task (and its result) that is a proxy worker's whole
 * life. Plain data (structured-cloned, not msgpack), declared here so that the thread entries in
 * src/workers and the supervisor side (supervisor, ProxyPool) import one contract, neither the other.
 * Types only: a worker thread that imports this file loads nothing.
 */
import type { MessagePort } from 'node:worker_threads';
import type { DiscoveryOptions } from '../actors/discovery/index.ts';
import type { LogSettings } from '../log.ts';
import type { ProxySettings } from '../proxy/proxy-server.ts';
import type { RouteTable } from './messages.ts';

export interface DiscoveryWorkerData {
  readonly log: LogSettings;
  readonly options: DiscoveryOptions;
  /** this node's identity (PEM texts), to sign its datagrams with */
  readonly identity: { readonly certPem: string; readonly keyPem: string };
}

export interface ElectionWorkerData {
  readonly log: LogSettings;
  readonly conflictTtlMs: number;
}

export interface ProxyWorkerData {
  readonly log: LogSettings;
  readonly proxy: Omit<ProxySettings, 'worker'>;
}

export interface ProxyTask {
  readonly worker: number;
  readonly port: MessagePort;
  readonly routes: RouteTable;
  /** In-flight requests per worker, in memory shared with the supervisor. */
  readonly loadBoard: Int32Array;
  /** Open connections per worker, shared by all of them (connection-cap.ts). */
  readonly connectionBoard: Int32Array;
  /** A server node's model slots, shared by the workers and the scheduler's owner (sched/board.ts). */
  readonly schedBoard?: Int32Array;
}

export interface ProxyTaskResult {
  readonly worker: number;
  /** requests still in flight at the drain deadline, cut off */
  readonly cut: number;
}
