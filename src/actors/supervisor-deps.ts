/**
 * The supervisor's I/O, injected: the clock, the probes of the local Ollama and of the listen port,
 * how its threads start, the trust store and the cluster view. Each defaults to the real one
 * (realSupervisorDeps); unit tests pass fakes and run the supervisor in-process.
 */
import { systemClock, type Clock } from '../clock.ts';
import type { Identity } from '../identity/identity.ts';
import type { Logger } from '../log.ts';
import { ClusterView } from './cluster.ts';
import { netPortProbe, type PortProbe } from './listen-claim.ts';
import { netOllamaProbe, type OllamaProbe } from './ollama-watch.ts';
import { realThreads, type ThreadFactory } from './thread-factory.ts';
import { TrustStore } from './trust-store.ts';

/** What the supervisor uses of the trust store (devices.json, pending.json). */
export type TrustHandle = Pick<
  TrustStore,
  'settings' | 'trusts' | 'isDisabled' | 'pendingCount' | 'start' | 'stop' | 'notePending'
> & {
  on(event: 'change', listener: () => void): unknown;
};
/** What the supervisor uses of a client node's cluster view. */
export type ClusterHandle = Pick<ClusterView, 'seen' | 'gone' | 'close' | 'setView' | 'upstreams' | 'peers' | 'models'>;

/** The supervisor's I/O; each defaults to the real one. */
export interface SupervisorDeps {
  readonly clock: Clock;
  /** asks the local Ollama (health, models) */
  readonly ollama: OllamaProbe;
  /** claims the listen address and diagnoses a taken one */
  readonly ports: PortProbe;
  readonly threads: ThreadFactory;
  readonly trust: (dataDir: string, trustLan: boolean, log: Logger) => TrustHandle;
  /** `onChange` is called when the cluster's upstreams change (a new route table is due) */
  readonly cluster: (log: Logger, identity: Identity, onChange: () => void) => ClusterHandle;
}

export const realSupervisorDeps: SupervisorDeps = {
  clock: systemClock,
  ollama: netOllamaProbe,
  ports: netPortProbe,
  threads: realThreads,
  trust: (dataDir, trustLan, log) => new TrustStore(dataDir, trustLan, log),
  cluster: (log, identity, onChange) => new ClusterView(log, identity, onChange),
};

/** A real timer keeps nothing alive (the node lives by its listeners); a fake one has no unref. */
export function unref(handle: unknown): void {
  if (typeof handle === 'object' && handle !== null && 'unref' in handle && typeof handle.unref === 'function')
    handle.unref();
}
