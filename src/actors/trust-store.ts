/**
 * The supervisor's view of which devices this node trusts: devices.json (written by `ollana device
 * allow/disable`, watched so that a change reaches a running node within a second) plus --trust-lan,
 * and pending.json, the devices this node met but does not trust (written here, read by
 * `ollana device pending`).
 *
 * What the node says about a pending device is true when it says it: notePending runs its caller's
 * log line only once pending.json holds the device, so a person (or a test) who reads the line and
 * runs `ollana device pending` at once finds it there.
 */
import { EventEmitter } from 'node:events';
import { unwatchFile, watchFile } from 'node:fs';
import { join } from 'node:path';
import {
  DEVICES_FILE,
  PENDING_FILE,
  readDevices,
  readPendingChecked,
  writePending,
  type DeviceEntry,
  type PendingEntry,
} from '../identity/devices.ts';
import { parseDeviceId } from '../identity/device-id.ts';
import { withTrustLock } from '../identity/trust-lock.ts';
import { systemClock, unrefTimer, type Clock, type TimerHandle } from '../clock.ts';
import { errorMessage, isOllanaError, systemCode } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { TrustSettings } from '../protocol/messages.ts';

/** How often devices.json is looked at (a stat); changes apply within this plus a message hop. */
const WATCH_INTERVAL_MS = 250;
/**
 * pending.json is written at most this often: a device met for the first time is written at once
 * when the last write is older than this, else at the end of the interval (and its log line waits
 * with it); a device met again (count, last seen) waits for the interval.
 */
const PENDING_WRITE_MS = 500;
/**
 * How long the node waits for the trust lock; `ollana device` holds it for about a millisecond.
 * Short, since the wait blocks the supervisor's thread: when it runs out the write is tried again.
 */
const NODE_LOCK_WAIT_MS = 200;
/** The longest name and address kept (pending.json's schema): longer ones are cut, not refused. */
const MAX_TEXT = 256;
/** Most pending entries kept (oldest dropped): forged identities must not grow the file forever. */
const MAX_PENDING = 100;

export type PendingKind = PendingEntry['kind'];

export interface TrustStoreDeps {
  /** time for the write pacing and the dates in pending.json; real time by default */
  readonly clock?: Clock;
  /** calls `onChange` when `file` may have changed; returns what stops it. fs.watchFile by default */
  readonly watch?: (file: string, intervalMs: number, onChange: () => void) => () => void;
  /** writes pending.json with `entries`, throwing as writePending does; under the trust lock by default */
  readonly writePending?: (dataDir: string, entries: readonly PendingEntry[]) => void;
}

/** Polls the file's stat: a change made by another process (`ollana device`) is seen within intervalMs. */
function watchByStat(file: string, intervalMs: number, onChange: () => void): () => void {
  watchFile(file, { interval: intervalMs, persistent: false }, onChange);
  return () => unwatchFile(file);
}

function writePendingLocked(dataDir: string, entries: readonly PendingEntry[]): void {
  withTrustLock(dataDir, NODE_LOCK_WAIT_MS, () => writePending(dataDir, entries));
}

/** Emits 'change' (TrustSettings) when devices.json changes what is trusted. */
export class TrustStore extends EventEmitter {
  readonly #dataDir: string;
  readonly #trustLan: boolean;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #watch: NonNullable<TrustStoreDeps['watch']>;
  readonly #write: NonNullable<TrustStoreDeps['writePending']>;
  #devices: DeviceEntry[] = [];
  #settings: TrustSettings;
  readonly #pending = new Map<string, PendingEntry>();
  #pendingTimer: TimerHandle | null = null;
  /** Callers' log lines waiting for the next write of pending.json. */
  #afterWrite: (() => void)[] = [];
  #lastWrite = 0;
  /** Why pending.json could not be written last time (an errno or a code), told once; null: it could. */
  #unsaved: string | null = null;
  /** stops the watch of devices.json; null: not watching */
  #unwatch: (() => void) | null = null;

  constructor(dataDir: string, trustLan: boolean, log: Logger, deps: TrustStoreDeps = {}) {
    super();
    this.#dataDir = dataDir;
    this.#trustLan = trustLan;
    this.#log = log;
    this.#clock = deps.clock ?? systemClock;
    this.#watch = deps.watch ?? watchByStat;
    this.#write = deps.writePending ?? writePendingLocked;
    this.#devices = readDevices(dataDir);
    this.#settings = this.#compute();
    for (const p of this.#readPendingAtStart()) this.#pending.set(p.id, p);
  }

  get settings(): TrustSettings {
    return this.#settings;
  }

  /** Whether this node uses / admits device `id`. */
  trusts(id: string): boolean {
    if (this.#settings.disabled.includes(id)) return false;
    return this.#trustLan || this.#settings.allowed.includes(id);
  }

  isDisabled(id: string): boolean {
    return this.#settings.disabled.includes(id);
  }

  get pendingCount(): number {
    return this.#pending.size;
  }

  start(): void {
    if (this.#unwatch !== null) return;
    this.#unwatch = this.#watch(join(this.#dataDir, DEVICES_FILE), WATCH_INTERVAL_MS, () => this.#reload());
  }

  stop(): void {
    this.#unwatch?.();
    this.#unwatch = null;
    if (this.#pendingTimer !== null) {
      this.#clock.clearTimeout(this.#pendingTimer);
      this.#flushPending();
    }
  }

  /**
   * Records a device met but not trusted, and calls `then(first)` (first: this id was not pending
   * before) once pending.json holds it, or at once when nothing is recorded (a trusted or disabled
   * device). An id that is not a well-formed device id is dropped without a call: it can be neither
   * saved nor allowed. Returns whether the id was new.
   */
  notePending(id: string, name: string, addr: string, kind: PendingKind, then?: (first: boolean) => void): boolean {
    if (parseDeviceId(id) !== id) {
      this.#log.debug({ device: { id: id.slice(0, 80) } }, 'ignoring a device met with a malformed id');
      return false;
    }
    if (this.trusts(id) || this.isDisabled(id)) {
      then?.(false);
      return false;
    }
    const now = new Date(this.#clock.now()).toISOString();
    const known = this.#pending.get(id);
    this.#pending.delete(id);
    const entry: PendingEntry =
      known === undefined
        ? { id, name, addr, kind, firstSeen: now, lastSeen: now, count: 1 }
        : { ...known, name: name || known.name, addr, kind, lastSeen: now, count: known.count + 1 };
    this.#pending.set(id, { ...entry, name: entry.name.slice(0, MAX_TEXT), addr: entry.addr.slice(0, MAX_TEXT) });
    while (this.#pending.size > MAX_PENDING) this.#pending.delete(this.#pending.keys().next().value!);
    const first = known === undefined;
    if (then !== undefined) this.#afterWrite.push(() => then(first));
    this.#schedulePendingWrite(first);
    return first;
  }

  #compute(): TrustSettings {
    return {
      trustLan: this.#trustLan,
      allowed: this.#devices.filter((d) => d.state === 'allowed').map((d) => d.id),
      disabled: this.#devices.filter((d) => d.state === 'disabled').map((d) => d.id),
      weights: Object.fromEntries(
        this.#devices.filter((d) => d.weight !== undefined && d.weight !== 1).map((d) => [d.id, d.weight!]),
      ),
    };
  }

  #reload(): void {
    try {
      this.#devices = readDevices(this.#dataDir);
    } catch (err) {
      // A half-edited or broken file: keep the last good list rather than lock everyone out.
      this.#log.error(
        { err },
        `ignoring ${DEVICES_FILE} until it is fixed, keeping the previous allow list: ${errorMessage(err)}`,
      );
      return;
    }
    const next = this.#compute();
    if (JSON.stringify(next) === JSON.stringify(this.#settings)) return;
    this.#settings = next;
    let pruned = false;
    for (const id of this.#pending.keys()) {
      if (this.trusts(id) || this.isDisabled(id)) {
        this.#pending.delete(id);
        pruned = true;
      }
    }
    if (pruned) this.#schedulePendingWrite(false);
    this.#log.info(
      { allowed: next.allowed.length, disabled: next.disabled.length },
      `allow list changed: ${next.allowed.length} allowed, ${next.disabled.length} disabled device(s)`,
    );
    this.emit('change', next);
  }

  /** pending.json as left by the last run; what was wrong with it is said once, and it is rewritten. */
  #readPendingAtStart(): PendingEntry[] {
    try {
      const { pending, problem } = readPendingChecked(this.#dataDir);
      if (problem !== null) this.#log.warn({ code: 'OLN_BAD_DEVICES_FILE' }, `${problem} [OLN_BAD_DEVICES_FILE]`);
      return pending;
    } catch (err) {
      this.#log.warn(
        { err, code: isOllanaError(err) ? err.code : undefined },
        `cannot read ${PENDING_FILE}, starting with no pending devices: ${errorMessage(err)}`,
      );
      return [];
    }
  }

  #schedulePendingWrite(urgent: boolean): void {
    if (this.#pendingTimer !== null) return;
    const wait = urgent ? Math.max(0, this.#lastWrite + PENDING_WRITE_MS - this.#clock.now()) : PENDING_WRITE_MS;
    if (wait === 0) {
      this.#flushPending();
      return;
    }
    this.#pendingTimer = this.#clock.setTimeout(() => this.#flushPending(), wait);
    unrefTimer(this.#pendingTimer);
  }

  #flushPending(): void {
    this.#pendingTimer = null;
    this.#lastWrite = this.#clock.now();
    try {
      this.#write(this.#dataDir, [...this.#pending.values()]);
      if (this.#unsaved !== null)
        this.#log.info(`${PENDING_FILE} can be written again: the devices met are listed by \`ollana device pending\``);
      this.#unsaved = null;
    } catch (err) {
      this.#cannotWrite(err);
    }
    // Said after the write, even a failed one: the line must not announce what is not on disk yet,
    // and a failure was just told (once) with what to do.
    const waiting = this.#afterWrite;
    this.#afterWrite = [];
    for (const say of waiting) say();
  }

  /**
   * A full, read-only or foreign-owned data directory must not stop the node: it keeps serving, and
   * says once per cause what it cannot save and what to do. A lock held by an `ollana device`
   * command is no fault: the write is tried again.
   */
  #cannotWrite(err: unknown): void {
    const code = isOllanaError(err) ? err.code : 'OLN_INTERNAL';
    if (code === 'OLN_DATA_DIR_BUSY') {
      this.#log.debug({ err }, `${PENDING_FILE} is locked by another ollana process; writing it again shortly`);
      this.#schedulePendingWrite(false);
      return;
    }
    const cause = isOllanaError(err) ? (systemCode(err.cause) ?? code) : (systemCode(err) ?? code);
    if (this.#unsaved === cause) return;
    this.#unsaved = cause;
    this.#log.warn(
      { err, code, errno: cause },
      `${errorMessage(err)}. The node keeps serving; the devices it meets are not saved for \`ollana device pending\` until it can write there [${code}]`,
    );
  }
}
