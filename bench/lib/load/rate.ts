/**
 * Request rate with autocannon's programmatic API, in the bench process. Latencies come from the
 * 'response' event (float milliseconds from hrtime) into our own sample list, because autocannon's
 * histogram keeps whole milliseconds and a proxied /api/tags takes a fraction of one.
 */
import autocannon from 'autocannon';
import { Samples, percentileSorted } from '../stats.ts';

export interface RateRequest {
  readonly path: string;
  readonly method: 'GET' | 'POST';
  readonly body?: string;
}

export interface RateResult {
  /** 2xx responses. */
  readonly ok: number;
  readonly non2xx: number;
  /** Connection errors and timeouts. */
  readonly errors: number;
  readonly seconds: number;
  readonly reqPerSec: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
}

export function runRate(
  baseUrl: string,
  req: RateRequest,
  connections: number,
  durationS: number,
): Promise<RateResult> {
  const latencies = new Samples(65_536);
  let ok = 0;
  let non2xx = 0;
  return new Promise<RateResult>((resolve, reject) => {
    const instance = autocannon(
      {
        url: baseUrl + req.path,
        method: req.method,
        connections,
        pipelining: 1,
        duration: durationS,
        timeout: 10,
        ...(req.body !== undefined ? { body: req.body, headers: { 'content-type': 'application/json' } } : {}),
      },
      (err, result) => {
        if (err) {
          reject(err);
          return;
        }
        const sorted = latencies.sorted();
        resolve({
          ok,
          non2xx,
          errors: result.errors,
          seconds: result.duration,
          reqPerSec: ok / result.duration,
          p50Ms: percentileSorted(sorted, 50),
          p99Ms: percentileSorted(sorted, 99),
          p999Ms: percentileSorted(sorted, 99.9),
        });
      },
    );
    instance.on('response', (_client: unknown, status: number, _bytes: number, ms: number) => {
      if (status >= 200 && status < 300) {
        ok++;
        latencies.push(ms);
      } else non2xx++;
    });
  });
}
