/**
 * Thread entry of the discovery actor, started by the supervisor with
 * `new Worker(new URL('./discovery.worker.ts', import.meta.url), { workerData })` (a singleton actor,
 * not a piscina task). It talks over parentPort. When the port cannot be bound, the thread throws the
 * OllanaError as plain data ({ code, message, details }): the Worker's 'error' event receives that
 * object, and OllanaError.fromData rebuilds it.
 */
import { createSocket } from 'node:dgram';
import { parentPort, workerData } from 'node:worker_threads';
import { pemSigner } from '../net/datagram-auth.ts';
import { DiscoveryActor } from '../actors/discovery/index.ts';
import { systemClock } from '../clock.ts';
import { Endpoint } from '../actors/runtime.ts';
import { OllanaError } from '../errors.ts';
import { createLogger } from '../log.ts';
import { decodeForDiscovery } from '../protocol/actor-inbox.ts';
import type { DiscoveryToSupervisor, SupervisorToDiscovery } from '../protocol/messages.ts';
import type { DiscoveryWorkerData } from '../protocol/workers.ts';

if (parentPort === null) throw new Error('discovery.worker.ts runs as a worker thread');
const port = parentPort;
const data = workerData as DiscoveryWorkerData;
const log = createLogger(data.log, { actor: 'discovery' });

let endpoint: Endpoint<SupervisorToDiscovery, DiscoveryToSupervisor> | null = null;
const actor = new DiscoveryActor({
  socket: createSocket({ type: 'udp4', reuseAddr: true }),
  clock: systemClock,
  random: Math.random,
  log,
  send: (msg) => {
    endpoint?.send(msg);
    // The last word: once it is posted the thread has nothing left to do, so let it end.
    if (msg.type === 'discovery.stopped') endpoint?.close();
  },
  options: data.options,
  signer: pemSigner(data.identity.certPem, data.identity.keyPem),
});

// Listening before the bind completes: a configure or stop sent meanwhile is kept, not lost.
endpoint = new Endpoint<SupervisorToDiscovery, DiscoveryToSupervisor>(
  port,
  decodeForDiscovery,
  (msg) => actor.handle(msg),
  (err) => log.error({ err }, 'bad message from the supervisor dropped'),
);

try {
  await actor.start();
} catch (err) {
  log.error({ err }, 'discovery cannot start');
  endpoint.close();
  throw err instanceof OllanaError ? err.toData() : err;
}
