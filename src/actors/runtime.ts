/**
 * The small actor runtime: an Endpoint sends and receives msgpack-encoded messages over anything
 * port-like (a worker MessagePort in production, an in-process MessageChannel in tests), and
 * PendingReplies matches replies to requests by correlation id, with a deadline on each.
 */
import { systemClock, unrefTimer, type Clock, type TimerHandle } from '../clock.ts';
import type { Message } from '../protocol/messages.ts';
import { type Decoder, ProtocolError, encodeMessage } from '../protocol/wire.ts';

export interface PortLike {
  postMessage(value: unknown): void;
  on(event: 'message', listener: (value: unknown) => void): unknown;
  close?(): void;
}

export class Endpoint<In extends Message, Out extends Message> {
  readonly #port: PortLike;

  /**
   * @param decode checks what arrives and takes only this side's message types (codec.ts decoderFor,
   *   or proxy-inbox.ts / actor-inbox.ts in a worker thread); it throws a ProtocolError for anything else.
   * @param onBad called for undecodable or unexpected messages; the endpoint keeps working.
   */
  constructor(port: PortLike, decode: Decoder<In>, onMessage: (msg: In) => void, onBad: (err: ProtocolError) => void) {
    this.#port = port;
    port.on('message', (raw) => {
      let msg: In;
      try {
        msg = decode(raw);
      } catch (err) {
        onBad(err instanceof ProtocolError ? err : new ProtocolError('malformed', String(err)));
        return;
      }
      onMessage(msg);
    });
  }

  send(msg: Out): void {
    this.#port.postMessage(encodeMessage(msg));
  }

  close(): void {
    this.#port.close?.();
  }
}

/** Replies awaited by correlation id; each request fails with a timeout error at its deadline. */
export class PendingReplies<T> {
  readonly #clock: Clock;
  #next = 1;
  readonly #waiting = new Map<number, { resolve: (v: T) => void; reject: (e: Error) => void; timer: TimerHandle }>();

  constructor(clock: Clock = systemClock) {
    this.#clock = clock;
  }

  open(deadlineMs: number, what: string): { id: number; reply: Promise<T> } {
    const id = this.#next++;
    const reply = new Promise<T>((resolve, reject) => {
      const timer = this.#clock.setTimeout(() => {
        this.#waiting.delete(id);
        reject(new Error(`${what} got no reply within ${deadlineMs} ms`));
      }, deadlineMs);
      unrefTimer(timer);
      this.#waiting.set(id, { resolve, reject, timer });
    });
    return { id, reply };
  }

  /** Settles request `id`; returns false when nobody waits for it any more (late or unknown reply). */
  settle(id: number, value: T): boolean {
    const entry = this.#waiting.get(id);
    if (!entry) return false;
    this.#clock.clearTimeout(entry.timer);
    this.#waiting.delete(id);
    entry.resolve(value);
    return true;
  }

  rejectAll(err: Error): void {
    for (const [id, entry] of this.#waiting) {
      this.#clock.clearTimeout(entry.timer);
      entry.reject(err);
      this.#waiting.delete(id);
    }
  }
}
