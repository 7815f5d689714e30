/** Thread entry of the election actor: wires parentPort to ElectionActor, with a 1 s tick. */
import { parentPort, workerData } from 'node:worker_threads';
import { ElectionActor } from '../actors/election.ts';
import { Endpoint } from '../actors/runtime.ts';
import { decoderFor } from '../protocol/codec.ts';
import { createLogger, type LogSettings } from '../log.ts';
import { SUPERVISOR_TO_ELECTION, type ElectionToSupervisor, type SupervisorToElection } from '../protocol/messages.ts';

export interface ElectionWorkerData {
  readonly log: LogSettings;
  readonly conflictTtlMs: number;
}

const data = workerData as ElectionWorkerData;
const log = createLogger(data.log, { actor: 'election' });
const port = parentPort!;
let endpoint: Endpoint<SupervisorToElection, ElectionToSupervisor> | null = null;
const actor = new ElectionActor({
  send: (msg) => endpoint?.send(msg),
  now: Date.now,
  log,
  conflictTtlMs: data.conflictTtlMs,
});
endpoint = new Endpoint<SupervisorToElection, ElectionToSupervisor>(port, decoderFor(SUPERVISOR_TO_ELECTION), (msg) => actor.handle(msg),
  (err) => log.error({ err }, 'bad message from the supervisor dropped'));
setInterval(() => actor.tick(), 1_000);
