/**
 * The discovery and election threads' decoders for what the supervisor sends them: the zod schemas
 * of messages.ts written by hand (guards.ts), as proxy-inbox.ts does for the proxy workers. Each of
 * these threads is a V8 isolate of its own, and zod was most of the code they loaded. Like the
 * schemas, the decoders build fresh objects with the known keys only; test/unit/actor-inbox.test.ts
 * holds them to the schemas' verdicts.
 */
import type { PeerInfo } from './lan.ts';
import { bad, bool, int, num, object, oneOf, str, type Path } from './guards.ts';
import type { SelfInfo, SupervisorToDiscovery, SupervisorToElection } from './messages.ts';
import { unexpectedType, unpack } from './wire.ts';

const ROLES = ['server', 'client'] as const;
const GONE_REASONS = ['bye', 'timeout'] as const;

type NodeFields = SelfInfo;

function load(v: unknown, path: Path): NodeFields['load'] {
  const o = object(v, path);
  return { inFlight: num(o.inFlight, [...path, 'inFlight']), workers: num(o.workers, [...path, 'workers']) };
}

/** The fields every node says about itself (messages.ts nodeFields), in the schema's order. */
function nodeFields(o: Record<string, unknown>, path: Path): NodeFields {
  const at = (k: string): Path => [...path, k];
  // An object literal evaluates in source order: the first wrong field in the schema's order is named.
  return {
    id: str(o.id, at('id')),
    boot: str(o.boot, at('boot')),
    role: oneOf(o.role, at('role'), ROLES),
    port: int(o.port, at('port')),
    fp: str(o.fp, at('fp')),
    load: load(o.load, at('load')),
    models: str(o.models, at('models')),
    term: int(o.term, at('term')),
    leader: str(o.leader, at('leader')),
    draining: bool(o.draining, at('draining')),
  };
}

function self(v: unknown, path: Path): SelfInfo {
  return nodeFields(object(v, path), path);
}

function peer(v: unknown, path: Path): PeerInfo {
  const o = object(v, path);
  return {
    ...nodeFields(o, path),
    addr: str(o.addr, [...path, 'addr']),
    lastSeen: num(o.lastSeen, [...path, 'lastSeen']),
  };
}

/** The message's type, or the ProtocolError a message without one (or of another port) deserves. */
function typeOf(m: Record<string, unknown>): string {
  return typeof m.type === 'string' ? m.type : bad(['type'], 'expected a string');
}

/** Decodes one message from the supervisor to the discovery thread, or throws a ProtocolError. */
export function decodeForDiscovery(raw: unknown): SupervisorToDiscovery {
  const m = object(unpack(raw), []);
  const type = typeOf(m);
  switch (type) {
    case 'discovery.configure':
      return { type, self: self(m.self, ['self']), announce: bool(m.announce, ['announce']) };
    case 'discovery.stop':
      return { type };
    case 'discovery.stats.request':
      return { type, id: int(m.id, ['id']) };
    default:
      throw unexpectedType(type);
  }
}

/** Decodes one message from the supervisor to the election thread, or throws a ProtocolError. */
export function decodeForElection(raw: unknown): SupervisorToElection {
  const m = object(unpack(raw), []);
  const type = typeOf(m);
  switch (type) {
    case 'election.self':
      return {
        type,
        id: str(m.id, ['id']),
        boot: str(m.boot, ['boot']),
        role: oneOf(m.role, ['role'], ROLES),
        healthy: bool(m.healthy, ['healthy']),
      };
    case 'peer.seen':
      return { type, peer: peer(m.peer, ['peer']) };
    case 'peer.gone':
      return { type, id: str(m.id, ['id']), reason: oneOf(m.reason, ['reason'], GONE_REASONS) };
    case 'peer.clone':
      return { type, id: str(m.id, ['id']), addr: str(m.addr, ['addr']), boot: str(m.boot, ['boot']) };
    default:
      throw unexpectedType(type);
  }
}
