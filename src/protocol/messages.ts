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
  /** origin, e.g. http://127.0.0.1:11434 */
  url: z.string(),
  /** path prefix joined before the request path ('' when none) */
  basePath: z.string(),
  healthy: z.boolean(),
  /** models this upstream has (from /api/tags); empty = unknown */
  models: z.array(z.string()),
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
});
export type WorkerStats = z.infer<typeof workerStatsSchema>;

const messageSchema = z.discriminatedUnion('type', [
  // supervisor -> proxy worker
  z.object({ type: z.literal('routes.update'), table: routeTableSchema }),
  z.object({ type: z.literal('log.level'), level: z.enum(LOG_LEVELS) }),
  z.object({ type: z.literal('stats.request'), id: z.number().int() }),
  z.object({ type: z.literal('proxy.drain'), deadlineMs: z.number() }),
  z.object({ type: z.literal('status.reply'), id: z.number().int(), status: z.record(z.string(), z.unknown()).nullable(),
    error: errorData.nullable() }),
  // proxy worker -> supervisor
  z.object({ type: z.literal('proxy.ready'), worker: z.number().int(), threadId: z.number().int() }),
  z.object({ type: z.literal('stats.report'), id: z.number().int(), stats: workerStatsSchema }),
  z.object({ type: z.literal('status.request'), id: z.number().int() }),
]);

export type Message = z.infer<typeof messageSchema>;
export type MessageType = Message['type'];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

export const SUPERVISOR_TO_PROXY = ['routes.update', 'log.level', 'stats.request', 'proxy.drain', 'status.reply'] as const;
export type SupervisorToProxy = MessageOf<(typeof SUPERVISOR_TO_PROXY)[number]>;
export type ProxyToSupervisor = MessageOf<'proxy.ready' | 'stats.report' | 'status.request'>;

export { messageSchema };
