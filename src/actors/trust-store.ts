/**
 * The supervisor's view of which devices this node trusts: devices.json (written by `ollana device
 * allow/disable`, watched so that a change reaches a running node within a second) plus --trust-lan,
 * and pending.json, the devices this node met but does not trust (written here, read by
 * `ollana device pending`).
 */
import { EventEmitter } from 'node:events';
import { unwatchFile, watchFile } from 'node:fs';
import { join } from 'node:path';
import {
  DEVICES_FILE, readDevices, readPending, writePending, type DeviceEntry, type PendingEntry,
} from '../identity/devices.ts';
import { errorMessage } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { TrustSettings } from '../protocol/messages.ts';

/** How often devices.json is looked at (a stat); changes apply within this plus a message hop. */
const WATCH_INTERVAL_MS = 250;
/** Pending entries are written at most this often. */
const PENDING_WRITE_MS = 500;
/** Most pending entries kept (oldest dropped): forged identities must not grow the file forever. */
const MAX_PENDING = 100;

export type PendingKind = PendingEntry['kind'];

/** Emits 'change' (TrustSettings) when devices.json changes what is trusted. */
export class TrustStore extends EventEmitter {
  readonly #dataDir: string;
  readonly #trustLan: boolean;
  readonly #log: Logger;
  #devices: DeviceEntry[] = [];
  #settings: TrustSettings;
  readonly #pending = new Map<string, PendingEntry>();
  #pendingTimer: NodeJS.Timeout | null = null;
  #watching = false;

  constructor(dataDir: string, trustLan: boolean, log: Logger) {
    super();
    this.#dataDir = dataDir;
    this.#trustLan = trustLan;
    this.#log = log;
    this.#devices = readDevices(dataDir);
    this.#settings = this.#compute();
    for (const p of this.#safeReadPending()) this.#pending.set(p.id, p);
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
    if (this.#watching) return;
    this.#watching = true;
    watchFile(join(this.#dataDir, DEVICES_FILE), { interval: WATCH_INTERVAL_MS, persistent: false }, () => this.#reload());
  }

  stop(): void {
    if (this.#watching) unwatchFile(join(this.#dataDir, DEVICES_FILE));
    this.#watching = false;
    if (this.#pendingTimer !== null) {
      clearTimeout(this.#pendingTimer);
      this.#flushPending();
    }
  }

  /** Records a device met but not trusted; returns true the first time this id is recorded. */
  notePending(id: string, name: string, addr: string, kind: PendingKind): boolean {
    if (id === '' || this.trusts(id) || this.isDisabled(id)) return false;
    const now = new Date().toISOString();
    const known = this.#pending.get(id);
    this.#pending.delete(id);
    this.#pending.set(id, known === undefined
      ? { id, name, addr, kind, firstSeen: now, lastSeen: now, count: 1 }
      : { ...known, name: name || known.name, addr, kind, lastSeen: now, count: known.count + 1 });
    while (this.#pending.size > MAX_PENDING) this.#pending.delete(this.#pending.keys().next().value!);
    this.#schedulePendingWrite();
    return known === undefined;
  }

  #compute(): TrustSettings {
    return {
      trustLan: this.#trustLan,
      allowed: this.#devices.filter((d) => d.state === 'allowed').map((d) => d.id),
      disabled: this.#devices.filter((d) => d.state === 'disabled').map((d) => d.id),
    };
  }

  #reload(): void {
    try {
      this.#devices = readDevices(this.#dataDir);
    } catch (err) {
      // A half-edited or broken file: keep the last good list rather than lock everyone out.
      this.#log.error({ err }, `ignoring ${DEVICES_FILE} until it is fixed, keeping the previous allow list: ${errorMessage(err)}`);
      return;
    }
    const next = this.#compute();
    if (JSON.stringify(next) === JSON.stringify(this.#settings)) return;
    this.#settings = next;
    let pruned = false;
    for (const id of this.#pending.keys()) {
      if (this.trusts(id) || this.isDisabled(id)) { this.#pending.delete(id); pruned = true; }
    }
    if (pruned) this.#schedulePendingWrite();
    this.#log.info({ allowed: next.allowed.length, disabled: next.disabled.length },
      `allow list changed: ${next.allowed.length} allowed, ${next.disabled.length} disabled device(s)`);
    this.emit('change', next);
  }

  #safeReadPending(): PendingEntry[] {
    try {
      return readPending(this.#dataDir);
    } catch {
      return []; // rewritten from scratch on the next refusal
    }
  }

  #schedulePendingWrite(): void {
    if (this.#pendingTimer !== null) return;
    this.#pendingTimer = setTimeout(() => this.#flushPending(), PENDING_WRITE_MS);
    this.#pendingTimer.unref();
  }

  #flushPending(): void {
    this.#pendingTimer = null;
    try {
      writePending(this.#dataDir, [...this.#pending.values()]);
    } catch (err) {
      this.#log.warn({ err }, `cannot write the pending device list: ${errorMessage(err)}`);
    }
  }
}
