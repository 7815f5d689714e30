/**
 * GET /ollana/v1/status and `ollana status`: the node's status, put together from what the
 * supervisor's parts know at this moment (protocol/status.ts is its type).
 */
import type { Mode } from '../config/defaults.ts';
import type { Identity } from '../identity/identity.ts';
import type { NodeRole, PeerInfo } from '../protocol/lan.ts';
import type { DiscoveryStats, ElectionView, RouteTable, TrustSettings } from '../protocol/messages.ts';
import type { NodeStatus, WorkerReport, SchedStatus } from '../protocol/status.ts';
import { peerUrl } from './cluster.ts';
import type { OllamaState } from './ollama-watch.ts';

/** What discovery said when it started (discovery.ready). */
export interface DiscoveryInfo {
  port: number;
  group: string;
  multicast: boolean;
  broadcast: boolean;
  interfaces: string[];
}

export interface StatusParts {
  readonly now: number;
  readonly startedAt: number;
  readonly version: string;
  readonly pid: number;
  readonly boot: string;
  readonly identity: Pick<Identity, 'id' | 'name' | 'fingerprint'>;
  readonly mode: Mode;
  readonly role: NodeRole;
  readonly trustLan: boolean;
  readonly insecureHttp: boolean;
  readonly trust: TrustSettings;
  readonly pending: number;
  readonly listen: { readonly host: string; readonly port: number };
  readonly ollamaUrl: string;
  readonly ollama: OllamaState;
  readonly view: ElectionView;
  /** a client node's server nodes (the cluster view), with their models */
  readonly servers: readonly PeerInfo[];
  readonly modelsOf: (id: string) => string[];
  readonly clients: Iterable<PeerInfo>;
  readonly discovery: DiscoveryInfo | null;
  readonly discoveryStats: DiscoveryStats | null;
  readonly table: RouteTable;
  readonly connections: { readonly open: number; readonly max: number };
  readonly sched: SchedStatus | null;
  readonly workers: readonly WorkerReport[];
  readonly configuredWorkers: number;
  readonly restarts: number;
  readonly rssBytes: number;
}

export function nodeStatus(p: StatusParts): NodeStatus {
  const { now, view } = p;
  const live = p.workers.filter((w) => 'requests' in w);
  const sum = (f: (w: (typeof live)[number]) => number): number => live.reduce((acc, w) => acc + f(w), 0);
  const servers =
    p.role === 'client'
      ? p.servers.map((peer) => ({
          id: peer.id,
          addr: peer.addr,
          url: peerUrl(peer),
          role: peer.role,
          lastSeenMsAgo: now - peer.lastSeen,
          healthy: !peer.draining,
          draining: peer.draining,
          leader: peer.id === view.leader,
          load: peer.load,
          models: p.modelsOf(peer.id),
        }))
      : [];
  const clients = [...p.clients].map((peer) => ({
    id: peer.id,
    addr: peer.addr,
    role: peer.role,
    lastSeenMsAgo: now - peer.lastSeen,
  }));
  return {
    ollana: { version: p.version, pid: p.pid, uptimeS: Math.round((now - p.startedAt) / 1000) },
    node: { id: p.identity.id, boot: p.boot, name: p.identity.name, fingerprint: p.identity.fingerprint },
    trust: {
      trustLan: p.trustLan,
      allowed: p.trust.allowed.length,
      disabled: p.trust.disabled.length,
      pending: p.pending,
      tls: p.role === 'server' ? !p.insecureHttp : null,
    },
    mode: p.mode,
    role: p.role,
    listen: { host: p.listen.host, port: p.listen.port },
    ollama:
      p.role === 'server'
        ? {
            url: p.ollamaUrl,
            healthy: p.ollama.healthy,
            version: p.ollama.version,
            models: p.ollama.models,
            checkedAt: new Date(p.ollama.checkedAt).toISOString(),
          }
        : null,
    cluster: {
      term: view.term,
      leader: view.leader,
      isLeader: view.leader !== '' && view.leader === p.identity.id,
      servers: view.servers,
      conflicts: view.conflicts,
    },
    peers: [...servers, ...clients],
    discovery: p.discovery === null ? null : { ...p.discovery, stats: p.discoveryStats },
    upstreams: p.table.upstreams,
    connections: p.connections,
    sched: p.sched,
    workers: {
      configured: p.configuredWorkers,
      live: live.length,
      restarts: p.restarts,
      totals: {
        requests: sum((w) => w.requests),
        inFlight: sum((w) => w.inFlight),
        completed: sum((w) => w.completed),
        clientAborts: sum((w) => w.clientAborts),
        upstreamErrors: sum((w) => w.upstreamErrors),
        bytesIn: sum((w) => w.bytesIn),
        bytesOut: sum((w) => w.bytesOut),
        tlsHandshakes: sum((w) => w.tlsHandshakes),
        tlsResumed: sum((w) => w.tlsResumed),
        fastRequests: sum((w) => w.fastRequests),
        handedToNode: sum((w) => w.handedToNode),
      },
      list: p.workers,
    },
    memory: { rssBytes: p.rssBytes },
  };
}
