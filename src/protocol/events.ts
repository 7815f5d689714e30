/**
 * The events the main thread's parts emit to each other (EventEmitter, in one process, so nothing is
 * encoded): the proxy pool and the actor threads to the supervisor, the supervisor to `ollana serve`.
 * Each map names an event and its arguments, for EventEmitter<Map> and for the supervisor's fakes.
 */
import type { OllanaError } from '../errors.ts';
import type { NodeRole } from './lan.ts';
import type { Message, MessageOf } from './messages.ts';
import type { NodeStatus } from './status.ts';

/** How the supervisor answers a worker's status request: the status, or why there is none. */
export type StatusReply = (status: NodeStatus | null, error: string | null) => void;

export interface ProxyPoolEvents {
  /** a worker needs GET /ollana/v1/status */
  'status-request': [reply: StatusReply];
  /** a worker needs GET /ollana/v1/metrics: the text, or null and why not */
  'metrics-request': [reply: (text: string | null, error: string | null) => void];
  /** a slot keeps failing at start-up: the pool gave up on it */
  fatal: [err: OllanaError];
  'worker-ready': [index: number];
  /** this server node's worker turned a device away */
  refused: [report: MessageOf<'trust.refused'>];
  /** a server node turned this (client) node away: its id */
  'refused-by': [server: string];
}

export interface ActorThreadEvents<In extends Message> {
  message: [msg: In];
  restarted: [];
  /** it gave up restarting, or the thread failed with a coded error */
  fatal: [err: OllanaError];
}

export interface SupervisorEvents {
  /** the node cannot go on: `ollana serve` stops it and exits with the error's status */
  fatal: [err: OllanaError];
  /** auto mode changed the node's role */
  'role-changed': [role: NodeRole];
  /** discovery said its bye and ended (the stop waits for it) */
  'discovery-stopped': [];
}
