/**
 * The supervisor's side of the election: the election actor on its own thread, or, with discovery
 * off, the same actor run on the main thread. Either way the supervisor sends it this node's state
 * and the peers, and gets its view back.
 */
import type { Clock } from '../clock.ts';
import { OllanaError } from '../errors.ts';
import type { Logger, LogSettings } from '../log.ts';
import { ownModule } from '../module-file.ts';
import type { ElectionToSupervisor, ElectionView, SupervisorToElection } from '../protocol/messages.ts';
import type { ElectionWorkerData } from '../protocol/workers.ts';
import { ElectionActor } from './election.ts';
import type { ActorHandle, ThreadFactory } from './thread-factory.ts';

const ELECTION_FILE = ownModule('../workers/election.worker.ts', import.meta.url);
/** How long a conflict stays reported after it was last seen. */
const CONFLICT_TTL_MS = 30_000;

export type ElectionLink = Pick<ActorHandle<ElectionToSupervisor, SupervisorToElection>, 'send' | 'stop'>;

export interface ElectionLinkOptions {
  /** discovery is off: run the actor here (see startElection) */
  readonly solo: boolean;
  readonly logSettings: LogSettings;
  /** the supervisor's logger (the thread's failures) */
  readonly log: Logger;
  /** the node's root logger (the actor's own lines, when it runs here) */
  readonly rootLog: Logger;
  readonly threads: ThreadFactory;
  readonly clock: Clock;
  /** Tells a new election (each new thread) this node's state and the peers known. */
  readonly onStart: (link: ElectionLink) => void;
  readonly onView: (view: ElectionView) => void;
  readonly onFatal: (err: OllanaError) => void;
}

/**
 * Starts the election. Discovery off: this node hears no peer, so there is nothing to elect and no
 * thread is started for it (a thread's isolate costs 18-35 MB). The election actor runs here instead,
 * fed only this node's own state: a server node whose Ollama answers is its own leader, as the thread
 * would say. Conflicts come from peers only, so there is no tick to expire them.
 */
export function startElection(o: ElectionLinkOptions): ElectionLink {
  if (o.solo) {
    const actor = new ElectionActor({
      send: (msg) => o.onView(msg.view),
      clock: o.clock,
      log: o.rootLog.child({ actor: 'election' }),
      conflictTtlMs: CONFLICT_TTL_MS,
    });
    const link: ElectionLink = { send: (msg) => actor.handle(msg), stop: () => Promise.resolve() };
    o.onStart(link);
    return link;
  }
  const data: ElectionWorkerData = { log: o.logSettings, conflictTtlMs: CONFLICT_TTL_MS };
  const election: ActorHandle<ElectionToSupervisor, SupervisorToElection> = o.threads.actor<
    ElectionToSupervisor,
    SupervisorToElection
  >({
    name: 'election',
    file: ELECTION_FILE,
    workerData: data,
    accepts: ['election.view'],
    log: o.log,
    onStart: () => o.onStart(election),
  });
  election.on('message', (msg) => o.onView(msg.view));
  election.on('fatal', (err: Error) =>
    o.onFatal(err instanceof OllanaError ? err : new OllanaError('OLN_WORKER_FAILED', err.message)),
  );
  election.start();
  return election;
}
