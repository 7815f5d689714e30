/**
 * Thread entry of a proxy worker, run by piscina. Its one task lasts the worker's life: listen on the
 * shared port, serve until the supervisor says proxy.drain, then resolve. A crash rejects the task,
 * which is how the supervisor learns to replace the thread.
 */
import { workerData } from 'piscina';
import { Endpoint, PendingReplies } from '../actors/runtime.ts';
import { OllanaError } from '../errors.ts';
import { createLogger } from '../log.ts';
import type { ProxyToSupervisor, SupervisorToProxy } from '../protocol/messages.ts';
import type { NodeStatus } from '../protocol/status.ts';
import type { ProxyTask, ProxyTaskResult, ProxyWorkerData } from '../protocol/workers.ts';
import { decodeForProxy } from '../protocol/proxy-inbox.ts';
import { ProxyServer } from '../proxy/proxy-server.ts';
import { REFUSAL_REPORTS, RefusalReports } from '../proxy/listen/refusal-reports.ts';

const STATUS_DEADLINE_MS = 3_000;
/** A device refused again within this time is not reported again (a flood must not become one). */
const REPORT_EVERY_MS = 5_000;

/** Whether `key` was not reported in the last REPORT_EVERY_MS; remembers it if so. */
function dueFor(sent: Map<string, number>, key: string): boolean {
  const now = Date.now();
  const last = sent.get(key);
  if (last !== undefined && now - last < REPORT_EVERY_MS) return false;
  if (sent.size > 1_000) sent.clear(); // many distinct forged identities: forget, never grow
  sent.set(key, now);
  return true;
}

export default async function serveProxy(task: ProxyTask): Promise<ProxyTaskResult> {
  const data = workerData as ProxyWorkerData;
  const log = createLogger(data.log, { actor: 'proxy', worker: task.worker });
  const statusReplies = new PendingReplies<NodeStatus>();
  const metricsReplies = new PendingReplies<{ text: string | null; error: string | null }>();
  let endpoint: Endpoint<SupervisorToProxy, ProxyToSupervisor> | null = null;
  const reported = new Map<string, number>();
  const refusals = new RefusalReports();
  // What the per-source limit held back, summed up once a window (a host presenting many identities).
  const summarize = (): void => {
    for (const h of refusals.summary()) {
      log.warn(
        { addr: h.source, count: h.count, ids: h.ids },
        `held back ${h.count} more refused TLS connections from ${h.source} (${h.ids} distinct device ids or none) ` +
          `in the last ${REFUSAL_REPORTS.sourceWindowMs / 1000} s: one host presenting many certificates is not listed as pending`,
      );
    }
  };
  const summaries = setInterval(summarize, REFUSAL_REPORTS.sourceWindowMs).unref();

  const server = new ProxyServer(
    {
      ...data.proxy,
      worker: task.worker,
      loadBoard: task.loadBoard,
      connectionBoard: task.connectionBoard,
      schedBoard: task.schedBoard,
    },
    log,
    {
      status: () => {
        const { id, reply } = statusReplies.open(STATUS_DEADLINE_MS, 'status request to the supervisor');
        endpoint?.send({ type: 'status.request', id });
        return reply;
      },
      metrics: () => {
        const { id, reply } = metricsReplies.open(STATUS_DEADLINE_MS, 'metrics request to the supervisor');
        endpoint?.send({ type: 'metrics.request', id });
        return reply.then((r) => {
          if (r.text === null) throw new Error(r.error ?? 'no metrics');
          return r.text;
        });
      },
      crash: () => {
        setImmediate(() => {
          throw new Error(`proxy worker ${task.worker} crashed on purpose (debug hook)`);
        });
      },
      refused: (a, addr) => {
        if (a.verdict === 'allowed' || !refusals.due(a.id, addr)) return;
        endpoint?.send({ type: 'trust.refused', id: a.id ?? '', name: a.name, addr, verdict: a.verdict });
      },
      sched: (msg) => endpoint?.send(msg),
      refusedBy: (server) => {
        if (dueFor(reported, `by ${server}`)) endpoint?.send({ type: 'trust.refused-by', server });
      },
    },
  );
  server.setRoutes(task.routes);

  let drainRequested: (deadlineMs: number) => void = () => undefined;
  const drainOrder = new Promise<number>((resolve) => {
    drainRequested = resolve;
  });

  endpoint = new Endpoint<SupervisorToProxy, ProxyToSupervisor>(
    task.port,
    decodeForProxy,
    (msg) => {
      switch (msg.type) {
        case 'routes.update':
          server.setRoutes(msg.table);
          break;
        case 'log.level':
          log.level = msg.level;
          break;
        case 'stats.request':
          endpoint?.send({ type: 'stats.report', id: msg.id, stats: server.snapshot() });
          break;
        case 'proxy.drain':
          drainRequested(msg.deadlineMs);
          break;
        case 'trust.update':
          server.setTrust(msg.trust);
          break;
        case 'sched.grant':
          server.sched?.granted(msg.ticket, msg.index);
          break;
        case 'sched.refuse':
          server.sched?.refused(msg.ticket, msg.code, msg.retryAfterS);
          break;
        case 'status.reply':
          // Checked as a plain record on arrival (proxy-inbox.ts); the supervisor built it as a NodeStatus,
          // and this worker only serves it as JSON.
          if (msg.status !== null) statusReplies.settle(msg.id, msg.status as unknown as NodeStatus);
          break;
        case 'metrics.collect':
          server.stats.metrics.snapshot().then(
            (metrics) =>
              endpoint?.send({
                type: 'metrics.report',
                id: msg.id,
                metrics: metrics as unknown as Record<string, unknown>[],
              }),
            (err: Error) => log.error({ err }, "cannot read this worker's metrics"),
          );
          break;
        case 'metrics.reply':
          metricsReplies.settle(msg.id, { text: msg.text, error: msg.error?.message ?? null });
          break;
        default: {
          const never: never = msg;
          throw new Error(`unhandled message ${JSON.stringify(never)}`);
        }
      }
    },
    (err) => log.error({ err }, 'bad message from the supervisor dropped'),
  );

  try {
    await server.listen();
  } catch (err) {
    task.port.close();
    // Crosses the thread as data; the supervisor rebuilds the OllanaError from code and message.
    const code = (err as { code?: string }).code;
    throw new OllanaError(
      code === 'EADDRINUSE' ? 'OLN_PORT_IN_USE' : code === 'EACCES' ? 'OLN_PORT_DENIED' : 'OLN_WORKER_FAILED',
      `proxy worker ${task.worker} cannot listen on ${data.proxy.host}:${data.proxy.port}: ${(err as Error).message}`,
    ).toData();
  }
  endpoint.send({ type: 'proxy.ready', worker: task.worker, threadId: server.stats.snapshot().threadId });
  log.debug({ host: data.proxy.host, port: data.proxy.port }, 'proxy worker listening');

  const deadlineMs = await drainOrder;
  clearInterval(summaries);
  summarize();
  const cut = await server.drain(deadlineMs);
  if (cut > 0) log.warn({ cut }, 'drain deadline reached; cut in-flight requests');
  statusReplies.rejectAll(new Error('worker stopping'));
  metricsReplies.rejectAll(new Error('worker stopping'));
  task.port.close();
  return { worker: task.worker, cut };
}
