/**
 * The parts of prom-client ollana uses, without the rest: the package's entry (index.js) also loads
 * the push gateway (node:http, node:https, zlib), summaries (tdigest), the default process
 * collectors and the cluster module, and every thread is an isolate of its own. The entry cost each
 * proxy worker ~2 MB of heap (~10 MB of RSS) against ~0.25 MB (~1 MB) for these files. prom-client
 * is pinned and has no "exports" map, so these files can be required by their paths; they are the
 * very classes the entry exports, typed from the entry.
 */
import { createRequire } from 'node:module';
import type {
  AggregatorRegistry as PromAggregatorRegistry,
  Counter as PromCounter,
  Gauge as PromGauge,
  Histogram as PromHistogram,
  Registry as PromRegistry,
} from 'prom-client';

const require = createRequire(import.meta.url);

export const Registry = require('prom-client/lib/registry.js') as typeof PromRegistry;
export type Registry = PromRegistry;
export const Counter = require('prom-client/lib/counter.js') as typeof PromCounter;
export type Counter<T extends string> = PromCounter<T>;
export const Histogram = require('prom-client/lib/histogram.js') as typeof PromHistogram;
export type Histogram<T extends string> = PromHistogram<T>;

/** The supervisor's: gauges and the aggregation across workers (main thread only). */
export function mainThreadParts(): { Gauge: typeof PromGauge; AggregatorRegistry: typeof PromAggregatorRegistry } {
  return {
    Gauge: require('prom-client/lib/gauge.js') as typeof PromGauge,
    AggregatorRegistry: require('prom-client/lib/cluster.js') as typeof PromAggregatorRegistry,
  };
}
