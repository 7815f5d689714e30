/**
 * Every message actors exchange, as one discriminated union on `type`. Payloads are plain readonly
 * data that survive msgpack: no classes, Maps, Dates, undefined or Errors.
 *
 * Naming: commands are `<actor>.<verb>` (proxy.drain), results and events are `<thing>.<past or noun>`.
 * A request that expects a reply carries an `id` (correlation) and the sender applies a deadline.
 */
import { z } from 'zod';
import { LOG_LEVELS } from '../config/defaults.ts';

const errorData = z.object({
  code: z.string(),
  message: z.string(),
  details: z.record(z.string(), z.union([z.string(), z.number(), z.boolean(), z.null()])).optional(),
});

export const upstreamSchema = z.object({
  id: z.string(),
  /** origin, e.g. http://127.0.0.1:11434, or https://10.0.0.2:11435 for a server node */
  url: z.string(),
  /** device id the server node must present in the TLS handshake ('' for the local Ollama) */
  device: z.string(),
  /** path prefix joined before the request path ('' when none) */
  basePath: z.string(),
  healthy: z.boolean(),
  /** models this upstream has (from /api/tags); empty = unknown */
  models: z.array(z.string()),
  /** the cluster's leader: server-affine requests (pull, create, blobs...) all go to one server */
  leader: z.boolean(),
  /** in-flight requests the server last reported, to balance before this worker has sent it any */
  load: z.number(),
  /** models loaded on it (its /api/ps), when known: a client node routes to a warm server first */
  loaded: z.array(z.string()).optional(),
  /** when `loaded` was read (ms since the epoch): a worker's own newer reading wins (route/residency.ts) */
  loadedAt: z.number().optional(),
});
export type Upstream = z.infer<typeof upstreamSchema>;

export const routeTableSchema = z.object({
  version: z.number().int(),
  role: z.enum(['server', 'client']),
  upstreams: z.array(upstreamSchema),
});
export type RouteTable = z.infer<typeof routeTableSchema>;

const latencySchema = z.object({
  count: z.number(),
  min: z.number(),
  max: z.number(),
  mean: z.number(),
  p50: z.number(),
  p90: z.number(),
  p99: z.number(),
  p999: z.number(),
});
export type LatencySummary = z.infer<typeof latencySchema>;

export const workerStatsSchema = z.object({
  worker: z.number().int(),
  threadId: z.number().int(),
  requests: z.number(),
  inFlight: z.number(),
  completed: z.number(),
  clientAborts: z.number(),
  upstreamErrors: z.number(),
  bytesIn: z.number(),
  bytesOut: z.number(),
  /** status classes of answered requests: 2xx, 3xx, 4xx, 5xx */
  statuses: z.record(z.string(), z.number()),
  /** time to response headers, ms */
  ttfbMs: latencySchema,
  /** whole request, ms */
  durationMs: latencySchema,
  rssBytes: z.number(),
  /** TLS handshakes completed by this worker (server or client side), and how many resumed a session */
  tlsHandshakes: z.number(),
  tlsResumed: z.number(),
  /** Requests the server node's fast front relayed itself, and connections it handed to node:http (fast/front.ts). */
  fastRequests: z.number(),
  handedToNode: z.number(),
});
export type WorkerStats = z.infer<typeof workerStatsSchema>;

export const trustSchema = z.object({
  trustLan: z.boolean(),
  allowed: z.array(z.string()),
  disabled: z.array(z.string()),
  /** fair-share weights of devices that have one other than 1 (sched/); read by the supervisor only */
  weights: z.record(z.string(), z.number()).optional(),
});

export type TrustSettings = z.infer<typeof trustSchema>;

const loadSchema = z.object({ inFlight: z.number(), workers: z.number() });

/** What every node says about itself on the LAN (the datagram's fields that describe a node). */
const nodeFields = {
  id: z.string(),
  boot: z.string(),
  role: z.enum(['server', 'client']),
  port: z.number().int(),
  fp: z.string(),
  load: loadSchema,
  models: z.string(),
  term: z.number().int(),
  leader: z.string(),
  /** a server node that is stopping: no new requests, the running ones finish */
  draining: z.boolean(),
};

/** A peer as discovery reports it: its own words plus where it was heard from, and when. */
export const peerSchema = z.object({ ...nodeFields, addr: z.string(), lastSeen: z.number() });

/** This node as discovery should announce it (`fp` is not sent: its datagrams carry the certificate). */
export const selfSchema = z.object(nodeFields);
export type SelfInfo = z.infer<typeof selfSchema>;

export const discoveryStatsSchema = z.object({
  received: z.number(),
  sent: z.number(),
  sendErrors: z.number(),
  peers: z.number(),
  dropped: z.object({
    magic: z.number(),
    version: z.number(),
    malformed: z.number(),
    oversize: z.number(),
    rateLimited: z.number(),
    duplicate: z.number(),
    /** id not its certificate's, or a bad signature */
    forged: z.number(),
    /** over the budget for checking certificates and signatures */
    verifyLimited: z.number(),
    /** an earlier boot of a known peer (a replay) */
    stale: z.number(),
    /** a new peer past the table's size or admission rate */
    peerLimit: z.number(),
  }),
});
export type DiscoveryStats = z.infer<typeof discoveryStatsSchema>;

export const conflictSchema = z.object({
  kind: z.enum(['duplicate-id', 'two-leaders', 'port-clash', 'ollama-on-port']),
  id: z.string(),
  detail: z.string(),
  addrs: z.array(z.string()),
  since: z.number(),
});
export type Conflict = z.infer<typeof conflictSchema>;

const messageSchema = z.discriminatedUnion('type', [
  // supervisor -> discovery
  z.object({
    type: z.literal('discovery.configure'),
    self: selfSchema,
    /** false: stay silent (a server whose Ollama stopped answering); a change to false sends bye once */
    announce: z.boolean(),
  }),
  z.object({ type: z.literal('discovery.stop') }),
  z.object({ type: z.literal('discovery.stats.request'), id: z.number().int() }),
  // discovery -> supervisor
  z.object({
    type: z.literal('discovery.ready'),
    port: z.number().int(),
    group: z.string(),
    multicast: z.boolean(),
    broadcast: z.boolean(),
    interfaces: z.array(z.string()),
  }),
  /** a new peer, or a known one whose fields (other than lastSeen/load) changed */
  z.object({ type: z.literal('peer.seen'), peer: peerSchema }),
  z.object({ type: z.literal('peer.gone'), id: z.string(), reason: z.enum(['bye', 'timeout']) }),
  /** a datagram carrying `id` (this node's or a peer's) from a second live process (another boot) */
  z.object({ type: z.literal('peer.clone'), id: z.string(), addr: z.string(), boot: z.string() }),
  z.object({ type: z.literal('discovery.stats.report'), id: z.number().int(), stats: discoveryStatsSchema }),
  z.object({ type: z.literal('discovery.stopped') }),
  // supervisor -> election
  z.object({
    type: z.literal('election.self'),
    id: z.string(),
    boot: z.string(),
    role: z.enum(['server', 'client']),
    /** a server node counts as a member only while its Ollama answers */
    healthy: z.boolean(),
  }),
  // and discovery's peer.seen, peer.gone and peer.clone, forwarded as they are
  // election -> supervisor
  z.object({
    type: z.literal('election.view'),
    view: z.object({
      term: z.number().int(),
      leader: z.string(),
      /** ids of the live, healthy server members, leader first */
      servers: z.array(z.string()),
      conflicts: z.array(conflictSchema),
    }),
  }),

  // supervisor -> proxy worker
  z.object({ type: z.literal('routes.update'), table: routeTableSchema }),
  z.object({ type: z.literal('log.level'), level: z.enum(LOG_LEVELS) }),
  z.object({ type: z.literal('stats.request'), id: z.number().int() }),
  z.object({ type: z.literal('proxy.drain'), deadlineMs: z.number() }),
  z.object({ type: z.literal('trust.update'), trust: trustSchema }),
  z.object({
    type: z.literal('status.reply'),
    id: z.number().int(),
    status: z.record(z.string(), z.unknown()).nullable(),
    error: errorData.nullable(),
  }),
  z.object({ type: z.literal('metrics.collect'), id: z.number().int() }),
  /** the node's metrics in the Prometheus text format, or why there are none */
  z.object({
    type: z.literal('metrics.reply'),
    id: z.number().int(),
    text: z.string().nullable(),
    error: errorData.nullable(),
  }),
  /** the owner of the model queues (sched/owner.ts) gives a waiting request its slot, or refuses it */
  z.object({ type: z.literal('sched.grant'), ticket: z.number().int(), index: z.number().int() }),
  z.object({
    type: z.literal('sched.refuse'),
    ticket: z.number().int(),
    code: z.enum(['OLN_QUEUE_FULL', 'OLN_QUEUE_TIMEOUT']),
    retryAfterS: z.number().int(),
  }),
  // proxy worker -> supervisor
  /** a request for a full model (sched/gate.ts): queue it for its device */
  z.object({
    type: z.literal('sched.wait'),
    ticket: z.number().int(),
    index: z.number().int(),
    model: z.string(),
    device: z.string(),
  }),
  /** a queued request's client went away */
  z.object({ type: z.literal('sched.cancel'), ticket: z.number().int() }),
  /** a slot of model `index` came free while requests wait for it */
  z.object({ type: z.literal('sched.kick'), index: z.number().int() }),
  z.object({ type: z.literal('proxy.ready'), worker: z.number().int(), threadId: z.number().int() }),
  z.object({ type: z.literal('stats.report'), id: z.number().int(), stats: workerStatsSchema }),
  z.object({ type: z.literal('status.request'), id: z.number().int() }),
  /** a worker's metrics as prom-client's getMetricsAsJSON() gives them (metrics/hub.ts adds them up) */
  z.object({
    type: z.literal('metrics.report'),
    id: z.number().int(),
    metrics: z.array(z.record(z.string(), z.unknown())),
  }),
  z.object({ type: z.literal('metrics.request'), id: z.number().int() }),
  /** a server node's worker refused a device after the handshake */
  z.object({
    type: z.literal('trust.refused'),
    id: z.string(),
    name: z.string(),
    addr: z.string(),
    verdict: z.enum(['no-certificate', 'unknown', 'disabled', 'bad-handshake']),
  }),
  /** a client node's worker was refused by a server node (it does not allow this device yet) */
  z.object({ type: z.literal('trust.refused-by'), server: z.string() }),
]);

export type Message = z.infer<typeof messageSchema>;
export type MessageType = Message['type'];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

export const SUPERVISOR_TO_PROXY = [
  'routes.update',
  'log.level',
  'stats.request',
  'proxy.drain',
  'status.reply',
  'trust.update',
  'metrics.collect',
  'metrics.reply',
  'sched.grant',
  'sched.refuse',
] as const;
export type SupervisorToProxy = MessageOf<(typeof SUPERVISOR_TO_PROXY)[number]>;
export const PROXY_TO_SUPERVISOR = [
  'proxy.ready',
  'stats.report',
  'status.request',
  'trust.refused',
  'trust.refused-by',
  'metrics.report',
  'metrics.request',
  'sched.wait',
  'sched.cancel',
  'sched.kick',
] as const;
export type ProxyToSupervisor = MessageOf<(typeof PROXY_TO_SUPERVISOR)[number]>;

export const SUPERVISOR_TO_DISCOVERY = ['discovery.configure', 'discovery.stop', 'discovery.stats.request'] as const;
export type SupervisorToDiscovery = MessageOf<(typeof SUPERVISOR_TO_DISCOVERY)[number]>;
export const DISCOVERY_TO_SUPERVISOR = [
  'discovery.ready',
  'peer.seen',
  'peer.gone',
  'peer.clone',
  'discovery.stats.report',
  'discovery.stopped',
] as const;
export type DiscoveryToSupervisor = MessageOf<(typeof DISCOVERY_TO_SUPERVISOR)[number]>;

/** The election hears about peers through discovery's own messages, which the supervisor forwards unchanged. */
export const SUPERVISOR_TO_ELECTION = ['election.self', 'peer.seen', 'peer.gone', 'peer.clone'] as const;
export type SupervisorToElection = MessageOf<(typeof SUPERVISOR_TO_ELECTION)[number]>;
export type ElectionToSupervisor = MessageOf<'election.view'>;
export type ElectionView = ElectionToSupervisor['view'];

export { messageSchema };
