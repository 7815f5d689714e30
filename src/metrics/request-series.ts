/**
 * The per-request series of a proxy worker, kept as plain numbers: a request finds its cells once
 * (one Map lookup by family, model and device) and then only adds. prom-client's own label handling
 * (a label hash, a label check and a closure per call) cost 3-4 µs per request, a few percent of a
 * relayed request's CPU; these cells cost well under one. At scrape time they are written out in
 * prom-client's getMetricsAsJSON form, which the supervisor adds up and prints (hub.ts).
 */
import type { MetricJson, MetricsJson } from './hub.ts';

/** Time to first byte: a cached short answer in milliseconds up to a cold model load of a minute. */
export const TTFB_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60];
/** Whole request: a token or two up to a long generation or a model pull of 10 minutes. */
export const DURATION_BUCKETS = [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600];

/** One histogram's numbers: a count per bucket (not cumulative; the last is +Inf), the sum. */
class Hist {
  readonly counts: Float64Array;
  sum = 0;

  constructor(bounds: readonly number[]) {
    this.counts = new Float64Array(bounds.length + 1);
  }

  observe(bounds: readonly number[], v: number): void {
    let i = 0;
    while (i < bounds.length && v > bounds[i]!) i++;
    this.counts[i]! += 1;
    this.sum += v;
  }

  addTo(other: Hist): void {
    for (let i = 0; i < this.counts.length; i++) other.counts[i]! += this.counts[i]!;
    other.sum += this.sum;
  }
}

/** The cells of one family, model and device. */
export class Cells {
  readonly family: string;
  readonly model: string;
  readonly device: string;
  /** requests by outcome */
  readonly outcomes = new Map<string, number>();
  readonly ttfb = new Hist(TTFB_BUCKETS);
  readonly duration = new Hist(DURATION_BUCKETS);
  promptTokens = 0;
  generatedTokens = 0;

  constructor(family: string, model: string, device: string) {
    this.family = family;
    this.model = model;
    this.device = device;
  }

  ended(outcome: string): void {
    this.outcomes.set(outcome, (this.outcomes.get(outcome) ?? 0) + 1);
  }
}

function histogramJson(
  name: string,
  help: string,
  bounds: readonly number[],
  hists: Map<string, { labels: Record<string, string>; hist: Hist }>,
): MetricJson {
  const values: MetricJson['values'] = [];
  for (const { labels, hist } of hists.values()) {
    let cumulative = 0;
    for (let i = 0; i <= bounds.length; i++) {
      cumulative += hist.counts[i]!;
      values.push({
        labels: { ...labels, le: i < bounds.length ? bounds[i]! : '+Inf' },
        value: cumulative,
        metricName: `${name}_bucket`,
      });
    }
    values.push({ labels, value: hist.sum, metricName: `${name}_sum` });
    values.push({ labels, value: cumulative, metricName: `${name}_count` });
  }
  return { name, help, type: 'histogram', values, aggregator: 'sum' };
}

export class RequestSeries {
  readonly #cells = new Map<string, Cells>();

  cells(family: string, model: string, device: string): Cells {
    const key = `${family}\n${model}\n${device}`;
    let c = this.#cells.get(key);
    if (c === undefined) {
      c = new Cells(family, model, device);
      this.#cells.set(key, c);
    }
    return c;
  }

  /** The series in prom-client's getMetricsAsJSON form. */
  json(): MetricsJson {
    const requests: MetricJson['values'] = [];
    const prompt: MetricJson['values'] = [];
    const generated: MetricJson['values'] = [];
    // The histograms are by family and model only: the devices' cells are added together.
    const ttfb = new Map<string, { labels: Record<string, string>; hist: Hist }>();
    const duration = new Map<string, { labels: Record<string, string>; hist: Hist }>();
    for (const c of this.#cells.values()) {
      const tokenLabels = { family: c.family, model: c.model, device: c.device };
      for (const [outcome, n] of c.outcomes) requests.push({ labels: { ...tokenLabels, outcome }, value: n });
      if (c.promptTokens > 0) prompt.push({ labels: tokenLabels, value: c.promptTokens });
      if (c.generatedTokens > 0) generated.push({ labels: tokenLabels, value: c.generatedTokens });
      const key = `${c.family}\n${c.model}`;
      for (const [into, hist, bounds] of [
        [ttfb, c.ttfb, TTFB_BUCKETS],
        [duration, c.duration, DURATION_BUCKETS],
      ] as const) {
        let entry = into.get(key);
        if (entry === undefined) {
          entry = { labels: { family: c.family, model: c.model }, hist: new Hist(bounds) };
          into.set(key, entry);
        }
        hist.addTo(entry.hist);
      }
    }
    const counter = (name: string, help: string, values: MetricJson['values']): MetricJson => ({
      name,
      help,
      type: 'counter',
      values,
      aggregator: 'sum',
    });
    return [
      counter(
        'ollana_requests_total',
        'Requests relayed, by route family, model, outcome (status class, aborted, failed) and device (server nodes)',
        requests,
      ),
      histogramJson(
        'ollana_request_first_byte_seconds',
        'Time from the request to the first response byte from the upstream (the first token of a stream)',
        TTFB_BUCKETS,
        ttfb,
      ),
      histogramJson(
        'ollana_request_duration_seconds',
        'Time from the request to the end of its response',
        DURATION_BUCKETS,
        duration,
      ),
      counter(
        'ollana_prompt_tokens_total',
        'Prompt tokens Ollama reported (prompt_eval_count, or usage.prompt_tokens of /v1 answers)',
        prompt,
      ),
      counter(
        'ollana_generated_tokens_total',
        'Tokens Ollama generated (eval_count, or usage.completion_tokens of /v1 answers)',
        generated,
      ),
    ];
  }
}
