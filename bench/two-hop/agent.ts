/**
 * The load generator of the two-hop benchmark, run INSIDE the client host's network namespace (an
 * application on the client machine): the bench process cannot reach the LAN or the host's loopback,
 * so it sends commands over a Unix socket (a file, not network traffic) and gets JSON back:
 *
 *   POST /rate     {url, request, connections, seconds}  -> autocannon result (bench/lib/load/rate.ts)
 *   POST /streams  {url, n, body, timeoutMs, intervalMs} -> stream fan-out summary (bench/lib/load/streams.ts)
 *   GET  /client   -> the client node's counters from its 127.0.0.1:11434/ollana/v1/status
 *
 *   node bench/two-hop/agent.ts --socket PATH [--deadline-ms 600000]
 *
 * Prints {"ready":true} once it listens. Exits on SIGTERM, after --deadline-ms, or when the bench
 * that started it is gone, so it never outlives a run.
 */
import { rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import { runRate, type RateRequest } from '../lib/load/rate.ts';
import { runStreams } from '../lib/load/streams.ts';
import { countAtMost } from '../lib/scenarios/streams.ts';
import { percentileSorted } from '../lib/stats.ts';

/** The client node's address inside the client host. */
const CLIENT_STATUS = 'http://127.0.0.1:11434/ollana/v1/status';

export interface RateCommand {
  readonly url: string;
  readonly request: RateRequest;
  readonly connections: number;
  readonly seconds: number;
}

export interface StreamsCommand {
  readonly url: string;
  readonly n: number;
  readonly body: string;
  readonly timeoutMs: number;
  /** the emulator's token interval: a token is on time when delivered within it */
  readonly intervalMs: number;
}

export interface StreamsSummary {
  readonly completed: number;
  readonly failed: number;
  readonly failures: readonly string[];
  readonly tokens: number;
  readonly onTime: number;
  readonly wallMs: number;
  readonly ttfbP50Ms: number;
  readonly ttfbP99Ms: number;
  readonly delayP50Ms: number;
  readonly delayP99Ms: number;
  readonly delayP999Ms: number;
  readonly delayMaxMs: number;
}

export interface ClientCounters {
  /** server nodes in the client's route table */
  readonly upstreams: number;
  readonly requests: number;
  readonly tlsHandshakes: number;
  readonly tlsResumed: number;
}

async function streams(c: StreamsCommand): Promise<StreamsSummary> {
  const r = await runStreams(c.url, c.n, c.body, c.timeoutMs);
  return {
    completed: r.completed,
    failed: r.failed,
    failures: r.failures,
    tokens: r.tokens,
    wallMs: r.wallMs,
    onTime: countAtMost(r.delayMs, c.intervalMs),
    ttfbP50Ms: percentileSorted(r.ttfbMs, 50),
    ttfbP99Ms: percentileSorted(r.ttfbMs, 99),
    delayP50Ms: percentileSorted(r.delayMs, 50),
    delayP99Ms: percentileSorted(r.delayMs, 99),
    delayP999Ms: percentileSorted(r.delayMs, 99.9),
    delayMaxMs: r.delayMs.length > 0 ? r.delayMs[r.delayMs.length - 1]! : Number.NaN,
  };
}

async function client(): Promise<ClientCounters> {
  const res = await fetch(CLIENT_STATUS, { signal: AbortSignal.timeout(5_000) });
  if (!res.ok) throw new Error(`${CLIENT_STATUS}: HTTP ${res.status}`);
  const s = (await res.json()) as { upstreams?: unknown[]; workers?: { totals?: Record<string, number> } };
  const t = s.workers?.totals ?? {};
  return {
    upstreams: s.upstreams?.length ?? 0,
    requests: t.requests ?? 0,
    tlsHandshakes: t.tlsHandshakes ?? 0,
    tlsResumed: t.tlsResumed ?? 0,
  };
}

async function body(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  for await (const c of req) chunks.push(c as Buffer);
  return chunks.length === 0 ? null : JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

function reply(res: ServerResponse, status: number, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  try {
    const path = `${req.method} ${req.url}`;
    if (path === 'POST /rate') {
      const c = (await body(req)) as RateCommand;
      reply(res, 200, await runRate(c.url, c.request, c.connections, c.seconds));
    } else if (path === 'POST /streams') {
      reply(res, 200, await streams((await body(req)) as StreamsCommand));
    } else if (path === 'GET /client') {
      reply(res, 200, await client());
    } else {
      reply(res, 404, { error: `no such command ${path}` });
    }
  } catch (err) {
    reply(res, 500, { error: (err as Error).stack ?? String(err) });
  }
}

const { values } = parseArgs({ options: { socket: { type: 'string' }, 'deadline-ms': { type: 'string' } } });
if (values.socket === undefined) throw new Error('--socket PATH is required');
const socket = values.socket;
const server = createServer((req, res) => {
  void handle(req, res);
});
// A load run is bounded by the bench; only the deadline below ends an idle connection.
server.requestTimeout = 0;
server.listen(socket, () => process.stdout.write(`${JSON.stringify({ ready: true, pid: process.pid })}\n`));

const stop = (): void => {
  server.close();
  rmSync(socket, { force: true });
  process.exit(0);
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
setTimeout(stop, Number(values['deadline-ms'] ?? 600_000)).unref();
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) stop();
}, 1_000).unref();
