/**
 * A proxy worker's metrics: the per-request series in plain cells (request-series.ts: per request one
 * Map lookup, a few additions), the rare events (failovers, retries, unreachable marks) and the
 * counts kept elsewhere (TLS, bytes) in a prom-client registry of its own. Each worker thread has its
 * own; the supervisor adds them up at scrape time (hub.ts). Nothing is formatted until a scrape asks.
 */
import type { MetricsJson } from './hub.ts';
import { Counter, Registry } from './prom.ts';
import { tlsCounts } from '../net/tls.ts';
import { LabelCap, routeFamily, statusClass, TOKEN_FAMILIES } from './labels.ts';
import { ModelScan } from '../proxy/route/model-scan.ts';
import { UsageTail } from './usage-tail.ts';
import { DURATION_BUCKETS, RequestSeries, TTFB_BUCKETS, type Cells } from './request-series.ts';

/** Distinct model names per worker before the rest count as `other` (labels.ts). */
export const MAX_MODELS = 32;
/** Distinct devices per worker before the rest count as `other`: allowed devices are few and known. */
export const MAX_DEVICES = 64;
/** Distinct upstreams per worker before the rest count as `other`. */
export const MAX_UPSTREAMS = 64;
/** Bytes of a request body looked at for its model (`model` is the first field in practice). */
const MODEL_SCAN_BYTES = 64 * 1024;

/** The byte counters the worker keeps anyway (StatsCollector), read at scrape time. */
export interface ByteCounts {
  readonly bytesIn: number;
  readonly bytesOut: number;
}

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly models = new LabelCap(MAX_MODELS);
  readonly devices = new LabelCap(MAX_DEVICES);
  readonly upstreams = new LabelCap(MAX_UPSTREAMS);
  readonly series = new RequestSeries();
  readonly failovers: Counter<'family'>;
  readonly retries: Counter<string>;
  readonly unreachable: Counter<'upstream'>;

  constructor(bytes: ByteCounts) {
    const registers = [this.registry];
    this.failovers = new Counter({
      name: 'ollana_failovers_total',
      help: 'Requests a client node moved to another server node after a failure before the first byte',
      labelNames: ['family'],
      registers,
    });
    this.retries = new Counter({
      name: 'ollana_upstream_retries_total',
      help: 'Requests sent once more on a new connection because a kept upstream connection had closed',
      registers,
    });
    this.unreachable = new Counter({
      name: 'ollana_upstream_unreachable_marks_total',
      help: 'Times an upstream could not be reached and was marked to be tried last for a while',
      labelNames: ['upstream'],
      registers,
    });
    const fromCount = (name: string, help: string, read: () => number): void => {
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read());
        },
      });
    };
    fromCount(
      'ollana_tls_handshakes_total',
      'TLS handshakes completed, as server or client',
      () => tlsCounts.handshakes,
    );
    fromCount(
      'ollana_tls_resumptions_total',
      'TLS handshakes that resumed a session (no certificate exchange)',
      () => tlsCounts.resumed,
    );
    fromCount('ollana_received_bytes_total', 'Request body bytes relayed to upstreams', () => bytes.bytesIn);
    fromCount('ollana_sent_bytes_total', 'Response body bytes relayed to clients', () => bytes.bytesOut);
  }

  /** Starts measuring one request (`device`: the allowed device on a server node, else ''). */
  begin(url: string, device: string, model: string | null): RequestMeter {
    return new RequestMeter(this, routeFamily(url), this.devices.value(device), model);
  }

  /** An upstream was marked unreachable. */
  markUnreachable(upstream: string): void {
    this.unreachable.inc({ upstream: this.upstreams.value(upstream) });
  }

  /** The registry as plain data, for the supervisor (crosses the thread as msgpack). */
  async snapshot(): Promise<MetricsJson> {
    return [...this.series.json(), ...((await this.registry.getMetricsAsJSON()) as unknown as MetricsJson)];
  }
}

/** One request's measurements; `end` records them. */
export class RequestMeter {
  readonly #m: WorkerMetrics;
  readonly #family: string;
  readonly #device: string;
  #model: string;
  #scan: ModelScan | null = null;
  #tail: UsageTail | null = null;
  /** Its series' cells, found once the model is known. */
  #cells: Cells | null = null;
  #status = 0;
  #failed = false;
  #aborted = false;
  #ended = false;

  constructor(m: WorkerMetrics, family: string, device: string, model: string | null) {
    this.#m = m;
    this.#family = family;
    this.#device = device;
    this.#model = model === null ? '' : m.models.value(model);
    if (model === null && TOKEN_FAMILIES.has(family)) this.#scan = new ModelScan(MODEL_SCAN_BYTES);
  }

  /** A piece of the request body, looked at until its model is known (when the router did not say). */
  requestBody(chunk: Buffer): void {
    const scan = this.#scan;
    if (scan === null) return;
    const r = scan.feed(chunk);
    if (r === 'more') return;
    this.#scan = null;
    this.#model = this.#m.models.value(scan.model);
  }

  /** The response began with `status`, `ns` nanoseconds after the request arrived (the caller's clock). */
  responded(status: number, ns: bigint): void {
    this.#status = status;
    if (this.#scan !== null) {
      this.#model = this.#m.models.value(this.#scan.model);
      this.#scan = null;
    }
    if (status >= 200 && status < 300 && TOKEN_FAMILIES.has(this.#family)) this.#tail = new UsageTail();
    this.#cells ??= this.#m.series.cells(this.#family, this.#model, this.#device);
    this.#cells.ttfb.observe(TTFB_BUCKETS, Number(ns) / 1e9);
  }

  /** Response body bytes on their way to the client (only the tail is kept). */
  responseBody(bytes: Buffer): void {
    this.#tail?.add(bytes);
  }

  /** The request moved to another server node. */
  failover(): void {
    this.#m.failovers.inc({ family: this.#family });
  }

  /** The request goes again on a fresh upstream connection. */
  retry(): void {
    this.#m.retries.inc();
  }

  /** The upstream failed: ollana answered with its own error, or cut a response that had begun. */
  failed(): void {
    this.#failed = true;
  }

  /** An upstream could not be reached. */
  unreachable(upstream: string): void {
    this.#m.markUnreachable(upstream);
  }

  /** The client left before the exchange was over. */
  aborted(): void {
    this.#aborted = true;
  }

  /** The exchange is over, however it ended, `ns` nanoseconds after the request arrived. */
  end(ns: bigint): void {
    if (this.#ended) return;
    this.#ended = true;
    const aborted = this.#aborted;
    if (this.#scan !== null) this.#model = this.#m.models.value(this.#scan.model);
    this.#cells ??= this.#m.series.cells(this.#family, this.#model, this.#device);
    const c = this.#cells;
    c.ended(aborted ? 'aborted' : this.#failed ? 'failed' : statusClass(this.#status));
    c.duration.observe(DURATION_BUCKETS, Number(ns) / 1e9);
    const usage = aborted || this.#failed ? null : (this.#tail?.usage() ?? null);
    if (usage !== null) {
      c.promptTokens += usage.prompt;
      c.generatedTokens += usage.generated;
    }
  }
}
