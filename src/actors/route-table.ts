/**
 * The route table the supervisor publishes to its proxy workers: on a client node the cluster
 * view's server nodes, on a server node the local Ollama alone.
 */
import type { OllamaTarget } from '../config/ollama-host.ts';
import type { NodeRole } from '../protocol/lan.ts';
import type { RouteTable } from '../protocol/messages.ts';
import type { OllamaState } from './ollama-watch.ts';
import type { ClusterHandle } from './supervisor-deps.ts';

/** The table after `previous` (its version + 1) for a node of `role`. */
export function nextRouteTable(
  previous: RouteTable,
  role: NodeRole,
  cluster: Pick<ClusterHandle, 'upstreams'>,
  ollama: OllamaState,
  target: OllamaTarget,
): RouteTable {
  if (role === 'client') {
    return { version: previous.version + 1, role: 'client', upstreams: cluster.upstreams() };
  }
  return {
    version: previous.version + 1,
    role: 'server',
    upstreams: [
      {
        id: 'local',
        url: target.origin,
        device: '',
        basePath: target.basePath,
        healthy: ollama.healthy,
        models: ollama.models,
        leader: true,
        load: 0,
      },
    ],
  };
}

/** Whether `next` routes differently from `current` (a new version alone is no change). */
export function routesChanged(current: RouteTable, next: RouteTable): boolean {
  return JSON.stringify(next.upstreams) !== JSON.stringify(current.upstreams);
}
