/**
 * GET /ollana/v1/events: server-sent events for the dashboard. While at least one page listens, the
 * worker reads the node's status and metrics once a second (both come from the supervisor, so every
 * worker's traffic is in them) and sends every listener one `snapshot` event; a new listener first
 * gets a `history` event with the rates of the last minutes. The listeners per worker are bounded, and
 * nothing is read while none listens.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { NodeStatus } from '../protocol/status.ts';
import { type Rates, type Totals, rates, readTotals, snapshot } from './snapshot.ts';

/** Listeners per proxy worker; a page past them gets 503 with retry-after. */
export const MAX_LISTENERS = 8;
export const TICK_MS = 1_000;
/** Rates kept for a new page's charts: five minutes at one a second. */
export const HISTORY = 300;

export interface EventSource {
  status(): Promise<NodeStatus>;
  metrics(): Promise<string>;
}

export class DashboardEvents {
  readonly #source: EventSource;
  readonly #listeners = new Set<ServerResponse>();
  readonly #history: Rates[] = [];
  #timer: NodeJS.Timeout | null = null;
  #prev: Totals | null = null;
  #busy = false;

  constructor(source: EventSource) {
    this.#source = source;
  }

  get listeners(): number {
    return this.#listeners.size;
  }

  /** Takes `res` as a listener, or answers 503 when the worker has its fill. */
  listen(req: IncomingMessage, res: ServerResponse, extra: string[]): void {
    if (this.#listeners.size >= MAX_LISTENERS) {
      const body = `ollana: the dashboard has ${MAX_LISTENERS} pages open on this worker already; close one or retry`;
      res.writeHead(503, ['content-type', 'text/plain; charset=utf-8', 'retry-after', '5', ...extra]).end(body);
      return;
    }
    res.writeHead(200, [
      'content-type',
      'text/event-stream; charset=utf-8',
      'cache-control',
      'no-store',
      'x-content-type-options',
      'nosniff',
      ...extra,
    ]);
    res.write(`retry: 2000\nevent: history\ndata: ${JSON.stringify(this.#history)}\n\n`);
    this.#listeners.add(res);
    const drop = (): void => {
      this.#listeners.delete(res);
      if (this.#listeners.size === 0) this.#stop();
    };
    req.socket.setTimeout(0);
    res.on('close', drop);
    if (this.#timer === null) {
      this.#timer = setInterval(() => this.#tick(), TICK_MS);
      this.#timer.unref();
      this.#tick();
    }
  }

  /** Ends every listener (the worker drains or stops); pages reconnect to a live worker. */
  close(): void {
    for (const res of this.#listeners) res.end();
    this.#listeners.clear();
    this.#stop();
  }

  #stop(): void {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    this.#prev = null;
  }

  #tick(): void {
    // One reading at a time: a slow supervisor skips ticks rather than piling requests on it.
    if (this.#busy) return;
    this.#busy = true;
    Promise.all([this.#source.status(), this.#source.metrics()])
      .then(([status, text]) => {
        if (this.#timer === null) return;
        const now = readTotals(text, Date.now());
        const rate = this.#prev === null ? null : rates(this.#prev, now);
        this.#prev = now;
        if (rate !== null) {
          this.#history.push(rate);
          if (this.#history.length > HISTORY) this.#history.shift();
        }
        this.#send(`event: snapshot\ndata: ${JSON.stringify(snapshot(status, now, rate))}\n\n`);
      })
      .catch((err: Error) => this.#send(`event: unavailable\ndata: ${JSON.stringify(err.message)}\n\n`))
      .finally(() => {
        this.#busy = false;
      });
  }

  #send(frame: string): void {
    for (const res of this.#listeners) res.write(frame);
  }
}
