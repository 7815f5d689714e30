/**
 * The allow list (devices.json, written by `ollana device allow|disable`) and the devices waiting
 * for it (pending.json, written by the running node), both in the data directory. A running node
 * re-reads devices.json when it changes, so every write is atomic and a bad file is refused whole
 * with a message naming it, rather than half-applied.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { OllanaError, errorMessage, systemCode } from '../errors.ts';
import { writeFileAtomic } from './atomic-file.ts';
import { dirError, ensurePrivateDir } from './data-dir.ts';
import { parseDeviceId } from './device-id.ts';

export type DeviceState = 'allowed' | 'disabled';

export interface DeviceEntry {
  readonly id: string;
  readonly name: string;
  readonly state: DeviceState;
  /** When the device got its current state (ISO 8601). */
  readonly since: string;
}

export interface PendingEntry {
  readonly id: string;
  readonly name: string;
  readonly addr: string;
  /** A server node this client saw on the LAN but does not allow, or a client this server refused. */
  readonly kind: 'server-seen' | 'client-refused';
  readonly firstSeen: string;
  readonly lastSeen: string;
  readonly count: number;
}

export const DEVICES_FILE = 'devices.json';
export const PENDING_FILE = 'pending.json';

const deviceId = z.string().refine((s) => parseDeviceId(s) === s, 'not a device id as `ollana device show` prints it (8 groups of 7 characters joined by dashes)');
const name = z.string().max(256);
const time = z.iso.datetime({ offset: true });

const uniqueIds = <T extends { id: string }>(list: T[]): boolean => new Set(list.map((d) => d.id)).size === list.length;

const devicesSchema = z.strictObject({
  version: z.literal(1),
  devices: z.array(z.strictObject({ id: deviceId, name, state: z.enum(['allowed', 'disabled']), since: time }))
    .refine(uniqueIds, 'lists a device twice'),
});

const pendingSchema = z.strictObject({
  version: z.literal(1),
  pending: z.array(z.strictObject({
    id: deviceId, name, addr: z.string().max(256), kind: z.enum(['server-seen', 'client-refused']),
    firstSeen: time, lastSeen: time, count: z.number().int().min(1),
  })).refine(uniqueIds, 'lists a device twice'),
});

function readJson<T>(file: string, schema: z.ZodType<T>, fix: string): T | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return null;
    throw dirError(file, 'read', err);
  }
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new OllanaError('OLN_BAD_DEVICES_FILE', `${file} is not valid JSON (${errorMessage(err)}); ${fix}`, { cause: err, details: { file } });
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const where = issue.path.length > 0 ? ` at ${issue.path.join('.')}` : '';
    throw new OllanaError('OLN_BAD_DEVICES_FILE', `${file} is not valid${where}: ${issue.message}; ${fix}`, { details: { file } });
  }
  return parsed.data;
}

function writeJson(dataDir: string, fileName: string, data: unknown): void {
  ensurePrivateDir(dataDir);
  const file = join(dataDir, fileName);
  try {
    writeFileAtomic(file, `${JSON.stringify(data, null, 2)}\n`, 0o600);
  } catch (err) {
    throw dirError(file, 'write', err);
  }
}

/** The allow list; [] when there is none yet. */
export function readDevices(dataDir: string): DeviceEntry[] {
  const file = join(dataDir, DEVICES_FILE);
  const fix = 'repair it, or move it away and allow the devices again with `ollana device allow`';
  return readJson(file, devicesSchema, fix)?.devices ?? [];
}

/** Replaces the allow list in one step (tmp + rename, 0600); a watching node never reads half of it. */
export function writeDevices(dataDir: string, list: readonly DeviceEntry[]): void {
  writeJson(dataDir, DEVICES_FILE, { version: 1, devices: list });
}

/** Devices the running node saw and did not allow; [] when there is none. */
export function readPending(dataDir: string): PendingEntry[] {
  const file = join(dataDir, PENDING_FILE);
  return readJson(file, pendingSchema, 'delete it: the running node writes it again as it meets devices')?.pending ?? [];
}

/** Replaces pending.json in one step (tmp + rename, 0600). */
export function writePending(dataDir: string, list: readonly PendingEntry[]): void {
  writeJson(dataDir, PENDING_FILE, { version: 1, pending: list });
}

/** Ids of the devices in state 'allowed'. */
export function allowedIds(list: readonly DeviceEntry[]): string[] {
  return list.filter((d) => d.state === 'allowed').map((d) => d.id);
}
