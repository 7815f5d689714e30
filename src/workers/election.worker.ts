/** Thread entry of the election actor: wires parentPort to ElectionActor, with a 1 s tick. */
import { parentPort, workerData } from 'node:worker_threads';
import { ElectionActor } from '../actors/election.ts';
import { systemClock } from '../clock.ts';
import { Endpoint } from '../actors/runtime.ts';
import { createLogger } from '../log.ts';
import { decodeForElection } from '../protocol/actor-inbox.ts';
import type { ElectionToSupervisor, SupervisorToElection } from '../protocol/messages.ts';
import type { ElectionWorkerData } from '../protocol/workers.ts';

const data = workerData as ElectionWorkerData;
const log = createLogger(data.log, { actor: 'election' });
const port = parentPort!;
let endpoint: Endpoint<SupervisorToElection, ElectionToSupervisor> | null = null;
const actor = new ElectionActor({
  send: (msg) => endpoint?.send(msg),
  clock: systemClock,
  log,
  conflictTtlMs: data.conflictTtlMs,
});
endpoint = new Endpoint<SupervisorToElection, ElectionToSupervisor>(
  port,
  decodeForElection,
  (msg) => actor.handle(msg),
  (err) => log.error({ err }, 'bad message from the supervisor dropped'),
);
systemClock.setInterval(() => actor.tick(), 1_000);
