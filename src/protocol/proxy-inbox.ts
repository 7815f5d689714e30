/**
 * The proxy worker's decoder for what the supervisor sends it: the same checks as the zod schemas in
 * messages.ts, written by hand (guards.ts) for these eight message types. Every proxy worker is a V8
 * isolate of its own, and loading zod there cost each one ~12 MB of memory for a handful of small
 * messages. Like the schema, it builds a fresh object with the known keys only.
 * test/unit/proxy-inbox.test.ts holds it to the schema's verdicts.
 */
import { LOG_LEVELS, type LogLevel } from '../config/defaults.ts';
import { array, bad, bool, int, num, object, oneOf, plainRecord, str, type Path } from './guards.ts';
import type { RouteTable, SupervisorToProxy, TrustSettings, Upstream } from './messages.ts';
import { unexpectedType, unpack } from './wire.ts';

function upstream(v: unknown, path: Path): Upstream {
  const o = object(v, path);
  return {
    id: str(o.id, [...path, 'id']),
    url: str(o.url, [...path, 'url']),
    device: str(o.device, [...path, 'device']),
    basePath: str(o.basePath, [...path, 'basePath']),
    healthy: bool(o.healthy, [...path, 'healthy']),
    models: array(o.models, [...path, 'models'], str),
    leader: bool(o.leader, [...path, 'leader']),
    load: num(o.load, [...path, 'load']),
    ...(o.loaded === undefined ? {} : { loaded: array(o.loaded, [...path, 'loaded'], str) }),
    ...(o.loadedAt === undefined ? {} : { loadedAt: num(o.loadedAt, [...path, 'loadedAt']) }),
  };
}

function routeTable(v: unknown, path: Path): RouteTable {
  const o = object(v, path);
  // Fields in the schema's order, so a message wrong in two places is refused naming the same one.
  const version = int(o.version, [...path, 'version']);
  const role = oneOf(o.role, [...path, 'role'], ['server', 'client']);
  return { version, role, upstreams: array(o.upstreams, [...path, 'upstreams'], upstream) };
}

function trust(v: unknown, path: Path): TrustSettings {
  const o = object(v, path);
  return {
    trustLan: bool(o.trustLan, [...path, 'trustLan']),
    allowed: array(o.allowed, [...path, 'allowed'], str),
    disabled: array(o.disabled, [...path, 'disabled'], str),
  };
}

type Details = Record<string, string | number | boolean | null>;

function details(v: unknown, path: Path): Details {
  const o = plainRecord(v, path);
  const out: Details = {};
  for (const [k, x] of Object.entries(o)) {
    if (
      x !== null &&
      typeof x !== 'string' &&
      typeof x !== 'boolean' &&
      !(typeof x === 'number' && Number.isFinite(x))
    ) {
      bad([...path, k], 'expected a string, number, boolean or null');
    }
    out[k] = x;
  }
  return out;
}

function errorData(v: unknown, path: Path): { code: string; message: string; details?: Details } {
  const o = object(v, path);
  const out: { code: string; message: string; details?: Details } = {
    code: str(o.code, [...path, 'code']),
    message: str(o.message, [...path, 'message']),
  };
  if (o.details !== undefined) out.details = details(o.details, [...path, 'details']);
  return out;
}

/** Decodes one message from the supervisor to a proxy worker, or throws a ProtocolError. */
export function decodeForProxy(raw: unknown): SupervisorToProxy {
  const m = object(unpack(raw), []);
  const type = m.type;
  switch (type) {
    case 'routes.update':
      return { type, table: routeTable(m.table, ['table']) };
    case 'log.level':
      return { type, level: oneOf<LogLevel>(m.level, ['level'], LOG_LEVELS) };
    case 'stats.request':
      return { type, id: int(m.id, ['id']) };
    case 'proxy.drain':
      return { type, deadlineMs: num(m.deadlineMs, ['deadlineMs']) };
    case 'trust.update':
      return { type, trust: trust(m.trust, ['trust']) };
    case 'status.reply':
      return {
        type,
        id: int(m.id, ['id']),
        status: m.status === null ? null : plainRecord(m.status, ['status']),
        error: m.error === null ? null : errorData(m.error, ['error']),
      };
    case 'metrics.collect':
      return { type, id: int(m.id, ['id']) };
    case 'metrics.reply':
      return {
        type,
        id: int(m.id, ['id']),
        text: m.text === null ? null : str(m.text, ['text']),
        error: m.error === null ? null : errorData(m.error, ['error']),
      };
    case 'sched.grant':
      return { type, ticket: int(m.ticket, ['ticket']), index: int(m.index, ['index']) };
    case 'sched.refuse':
      return {
        type,
        ticket: int(m.ticket, ['ticket']),
        code: oneOf(m.code, ['code'], ['OLN_QUEUE_FULL', 'OLN_QUEUE_TIMEOUT'] as const),
        retryAfterS: int(m.retryAfterS, ['retryAfterS']),
      };
    default:
      if (typeof type === 'string') throw unexpectedType(type);
      return bad(['type'], 'expected a string');
  }
}
