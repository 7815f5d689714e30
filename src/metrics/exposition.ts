/** Serves a scrape: the Prometheus text format, version 0.0.4 (what prom-client writes). */
import type { ServerResponse } from 'node:http';
import { Registry } from './prom.ts';

export function sendMetrics(res: ServerResponse, text: string, extra: string[]): void {
  res.writeHead(200, [
    'content-type',
    Registry.PROMETHEUS_CONTENT_TYPE,
    'content-length',
    String(Buffer.byteLength(text)),
    'cache-control',
    'no-store',
    ...extra,
  ]);
  res.end(res.req.method === 'HEAD' ? undefined : text);
}
