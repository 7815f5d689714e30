/**
 * Reference system "naive": the smallest correct Node proxy (node:http server, undici Pool,
 * pool.stream into the response), with N worker threads sharing the port through reusePort as
 * ollana's do. It is what Node itself costs per request; ollana minus naive is what ollana's own
 * code costs, which is the part that tuning can win back.
 *
 *   node bench/lib/naive-proxy.ts --port P --upstream http://127.0.0.1:U --workers N
 * prints {"port":P} once every worker listens; SIGTERM stops it.
 */
import { createServer, type IncomingHttpHeaders } from 'node:http';
import { parseArgs } from 'node:util';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { Pool } from 'undici';

interface Settings {
  readonly port: number;
  readonly upstream: string;
}

const HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'host',
  'te',
  'trailer',
  'upgrade',
  'proxy-connection',
]);

function strip(
  h: IncomingHttpHeaders | Record<string, string | string[] | undefined>,
): Record<string, string | string[]> {
  const out: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(h)) if (v !== undefined && !HOP.has(k)) out[k] = v;
  return out;
}

function serve(s: Settings): void {
  const pool = new Pool(s.upstream, {
    connections: 512,
    pipelining: 1,
    keepAliveTimeout: 60_000,
    headersTimeout: 0,
    bodyTimeout: 0,
  });
  const server = createServer({ noDelay: true, keepAliveTimeout: 65_000, requestTimeout: 0 }, (req, res) => {
    const hasBody = req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined;
    pool.stream(
      {
        path: req.url ?? '/',
        method: (req.method ?? 'GET') as 'GET',
        headers: strip(req.headers),
        body: hasBody ? req : null,
      },
      ({ statusCode, headers }) => {
        res.writeHead(statusCode, strip(headers));
        return res;
      },
      (err) => {
        if (err === null) return;
        if (!res.headersSent)
          res.writeHead(502, { 'content-type': 'application/json' }).end('{"error":"naive proxy: upstream failed"}');
        else res.destroy(err);
      },
    );
    res.on('close', () => {
      if (!res.writableFinished) req.destroy();
    });
  });
  server.listen({ host: '127.0.0.1', port: s.port, reusePort: true, backlog: 4096 }, () =>
    parentPort?.postMessage('ready'),
  );
}

if (isMainThread) {
  const { values } = parseArgs({
    options: { port: { type: 'string' }, upstream: { type: 'string' }, workers: { type: 'string' } },
  });
  const settings: Settings = { port: Number(values.port), upstream: String(values.upstream) };
  const workers = Number(values.workers ?? 1);
  let ready = 0;
  const threads = Array.from({ length: workers }, () => new Worker(new URL(import.meta.url), { workerData: settings }));
  for (const t of threads) {
    t.on('message', () => {
      if (++ready === workers) process.stdout.write(`${JSON.stringify({ port: settings.port })}\n`);
    });
    t.on('error', (err) => {
      process.stderr.write(`naive proxy worker died: ${err.stack ?? err.message}\n`);
      process.exit(1);
    });
  }
  process.once('SIGTERM', () => process.exit(0));
} else {
  serve(workerData as Settings);
}
