/**
 * Finds the model a JSON request body names while the body streams in, so that a client node can
 * route a request by its model without holding the whole body: an image-laden chat can be tens of
 * MiB, and an attacker can keep many unfinished ones open (issue #22's figures are in
 * docs/lan.md). Only the
 * top level of the object is looked at, as modelOf (router.ts) does: `model`, else `name`. Nested
 * values and strings are skipped byte by byte without being kept.
 */

/** Longest model value kept; a longer one is no model name any server has. */
const MAX_VALUE_BYTES = 1024;

/** What the top level expects next. */
const Expect = { Start: 0, Key: 1, Colon: 2, Value: 3, Comma: 4, Done: 5 } as const;
type Expecting = (typeof Expect)[keyof typeof Expect];

export type ScanResult =
  /** The body must be read further. */
  | 'more'
  /** `model` was found: nothing after it can change the answer. */
  | 'found'
  /** Not an object, not JSON, or the bound was reached: read no further for the model. */
  | 'stop';

export class ModelScan {
  readonly #limit: number;
  #seen = 0;
  #expect: Expecting = Expect.Start;
  /** Nesting inside the top-level value being skipped (objects and arrays). */
  #depth = 0;
  #inString = false;
  #escape = false;
  /** Bytes of the top-level key or value string being read, when it matters; null: skipping it. */
  #text: number[] | null = null;
  #key: string | null = null;
  #model: string | null = null;
  #name: string | null = null;

  /** @param limit bytes to look at, at most, before giving up on finding the model */
  constructor(limit: number) {
    this.#limit = limit;
  }

  /** The model named so far: `model` if found, else `name`, else null. */
  get model(): string | null {
    return this.#model ?? this.#name;
  }

  feed(chunk: Buffer): ScanResult {
    if (this.#expect === Expect.Done) return this.#model !== null ? 'found' : 'stop';
    const n = Math.min(chunk.length, this.#limit - this.#seen);
    for (let i = 0; i < n; i++) {
      const c = chunk[i]!;
      if (this.#inString) {
        if (this.#escape) this.#escape = false;
        else if (c === 0x5c) this.#escape = true;
        else if (c === 0x22) {
          this.#inString = false;
          if (this.#depth === 0) {
            this.#endString();
            if (this.#model !== null) return this.#done();
          }
          continue;
        }
        if (this.#text !== null) {
          if (this.#text.length >= MAX_VALUE_BYTES) this.#text = null;
          else this.#text.push(c);
        }
        continue;
      }
      if (c === 0x20 || c === 0x09 || c === 0x0a || c === 0x0d) continue;
      if (this.#depth > 0) {
        if (c === 0x22) this.#inString = true;
        else if (c === 0x7b || c === 0x5b) this.#depth += 1;
        else if (c === 0x7d || c === 0x5d) {
          if (--this.#depth === 0) this.#expect = Expect.Comma;
        }
        continue;
      }
      switch (this.#expect) {
        case Expect.Start:
          if (c !== 0x7b) return this.#done();
          this.#expect = Expect.Key;
          break;
        case Expect.Key:
          if (c === 0x22) {
            this.#inString = true;
            this.#text = [];
          } else if (c !== 0x7d) return this.#done();
          else this.#expect = Expect.Done;
          break;
        case Expect.Colon:
          if (c !== 0x3a) return this.#done();
          this.#expect = Expect.Value;
          break;
        case Expect.Value:
          if (c === 0x22) {
            this.#inString = true;
            this.#text = this.#key === 'model' || this.#key === 'name' ? [] : null;
          } else if (c === 0x7b || c === 0x5b) {
            this.#depth = 1;
          } else {
            // A number, true, false or null: skipped up to the comma or the end.
            this.#expect = Expect.Comma;
            this.#key = null;
          }
          break;
        case Expect.Comma:
          if (c === 0x2c) this.#expect = Expect.Key;
          else if (c === 0x7d) this.#expect = Expect.Done;
          // Anything else belongs to a bare value being skipped (digits, letters of true/false/null).
          break;
      }
      if (this.#expect === Expect.Done) return this.#done();
    }
    this.#seen += n;
    return this.#seen >= this.#limit ? this.#done() : 'more';
  }

  /** A top-level string ended: a key, or the value of `model` / `name`. */
  #endString(): void {
    const text = this.#text;
    this.#text = null;
    if (this.#expect === Expect.Key) {
      this.#key = text === null ? null : this.#decode(text);
      this.#expect = Expect.Colon;
      return;
    }
    // A value.
    this.#expect = Expect.Comma;
    if (text !== null && this.#key !== null) {
      const value = this.#decode(text);
      if (value !== null && value !== '') {
        if (this.#key === 'model') this.#model = value;
        else if (this.#key === 'name') this.#name = value;
      }
    }
    this.#key = null;
  }

  #decode(bytes: number[]): string | null {
    try {
      return JSON.parse(`"${Buffer.from(bytes).toString('utf8')}"`) as string;
    } catch {
      return null;
    }
  }

  #done(): ScanResult {
    this.#expect = Expect.Done;
    return this.#model !== null ? 'found' : 'stop';
  }
}
