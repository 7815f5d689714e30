/**
 * A proxy worker's request metrics, in a prom-client registry of its own (not the global one: each
 * worker thread has its own, and the supervisor adds them up at scrape time, hub.ts). Per request the
 * worker does a few counter increments and two histogram observations (RequestMeter); nothing is
 * formatted until a scrape asks.
 */
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { Counter, Histogram, Registry } from './prom.ts';
import { tlsCounts } from '../net/tls.ts';
import { LabelCap, routeFamily, statusClass, TOKEN_FAMILIES } from './labels.ts';
import { ModelScan } from '../proxy/route/model-scan.ts';
import { UsageTail } from './usage-tail.ts';

/** Time to first byte: a cached short answer in milliseconds up to a cold model load of a minute. */
export const TTFB_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60];
/** Whole request: a token or two up to a long generation or a model pull of 10 minutes. */
export const DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600];
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
  readonly requests: Counter<'family' | 'model' | 'outcome' | 'device'>;
  readonly firstByte: Histogram<'family' | 'model'>;
  readonly duration: Histogram<'family' | 'model'>;
  readonly promptTokens: Counter<'family' | 'model' | 'device'>;
  readonly generatedTokens: Counter<'family' | 'model' | 'device'>;
  readonly failovers: Counter<'family'>;
  readonly retries: Counter<string>;
  readonly unreachable: Counter<'upstream'>;

  constructor(bytes: ByteCounts) {
    const registers = [this.registry];
    this.requests = new Counter({
      name: 'ollana_requests_total',
      help: 'Requests relayed, by route family, model, outcome (status class, or aborted) and device (server nodes)',
      labelNames: ['family', 'model', 'outcome', 'device'],
      registers,
    });
    this.firstByte = new Histogram({
      name: 'ollana_request_first_byte_seconds',
      help: 'Time from the request to the first response byte from the upstream (the first token of a stream)',
      labelNames: ['family', 'model'],
      buckets: TTFB_BUCKETS,
      registers,
    });
    this.duration = new Histogram({
      name: 'ollana_request_duration_seconds',
      help: 'Time from the request to the end of its response',
      labelNames: ['family', 'model'],
      buckets: DURATION_BUCKETS,
      registers,
    });
    this.promptTokens = new Counter({
      name: 'ollana_prompt_tokens_total',
      help: 'Prompt tokens Ollama reported (prompt_eval_count, or usage.prompt_tokens of /v1 answers)',
      labelNames: ['family', 'model', 'device'],
      registers,
    });
    this.generatedTokens = new Counter({
      name: 'ollana_generated_tokens_total',
      help: 'Tokens Ollama generated (eval_count, or usage.completion_tokens of /v1 answers)',
      labelNames: ['family', 'model', 'device'],
      registers,
    });
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
  async snapshot(): Promise<MetricObjectWithValues<MetricValue<string>>[]> {
    return this.registry.getMetricsAsJSON();
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
  readonly #started = process.hrtime.bigint();
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

  /** The response began with `status`. */
  responded(status: number): void {
    const ns = process.hrtime.bigint() - this.#started;
    this.#status = status;
    if (this.#scan !== null) {
      this.#model = this.#m.models.value(this.#scan.model);
      this.#scan = null;
    }
    if (status >= 200 && status < 300 && TOKEN_FAMILIES.has(this.#family)) this.#tail = new UsageTail();
    this.#m.firstByte.observe({ family: this.#family, model: this.#model }, Number(ns) / 1e9);
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

  /** The exchange is over, however it ended. */
  end(): void {
    if (this.#ended) return;
    this.#ended = true;
    const ns = process.hrtime.bigint() - this.#started;
    const aborted = this.#aborted;
    const m = this.#m;
    const model = this.#model;
    const outcome = aborted ? 'aborted' : this.#failed ? 'failed' : statusClass(this.#status);
    m.requests.inc({ family: this.#family, model, outcome, device: this.#device });
    m.duration.observe({ family: this.#family, model }, Number(ns) / 1e9);
    const usage = aborted || this.#failed ? null : (this.#tail?.usage() ?? null);
    if (usage !== null) {
      const labels = { family: this.#family, model, device: this.#device };
      if (usage.prompt > 0) m.promptTokens.inc(labels, usage.prompt);
      if (usage.generated > 0) m.generatedTokens.inc(labels, usage.generated);
    }
  }
}
