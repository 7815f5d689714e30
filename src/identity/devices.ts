/**
 * The allow list (devices.json, written by `ollana device allow|disable`) and the devices waiting
 * for it (pending.json, written by the running node), both in the data directory. A running node
 * re-reads devices.json when it changes, so every write is atomic and a bad allow list is refused
 * whole with a message naming it, rather than half-applied. pending.json is advisory (devices met,
 * not trusted): a malformed entry in it is skipped with a warning instead of failing a command. Both
 * are checked against their schema before they are written, so ollana never writes a file it would
 * refuse to read back. Read-modify-writes of either hold the trust lock (trust-lock.ts).
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
  /** Its share per round when devices wait for the same model on a server node (absent: 1). */
  readonly weight?: number;
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

const deviceId = z
  .string()
  .refine(
    (s) => parseDeviceId(s) === s,
    'not a device id as `ollana device show` prints it (8 groups of 7 characters joined by dashes)',
  );
const name = z.string().max(256);
const time = z.iso.datetime({ offset: true });

const uniqueIds = <T extends { id: string }>(list: T[]): boolean => new Set(list.map((d) => d.id)).size === list.length;

const devicesSchema = z.strictObject({
  version: z.literal(1),
  devices: z
    .array(
      z.strictObject({
        id: deviceId,
        name,
        state: z.enum(['allowed', 'disabled']),
        since: time,
        weight: z.number().int().min(1).max(100).optional(),
      }),
    )
    .refine(uniqueIds, 'lists a device twice'),
});

const pendingEntrySchema = z.strictObject({
  id: deviceId,
  name,
  addr: z.string().max(256),
  kind: z.enum(['server-seen', 'client-refused']),
  firstSeen: time,
  lastSeen: time,
  count: z.number().int().min(1),
});

const pendingSchema = z.strictObject({
  version: z.literal(1),
  pending: z.array(pendingEntrySchema).refine(uniqueIds, 'lists a device twice'),
});

/** Where a zod issue is, and what: `at pending.0.id: not a device id ...`. */
function describeIssue(issue: z.core.$ZodIssue, prefix: readonly (string | number)[] = []): string {
  const path = [...prefix, ...issue.path.map(String)];
  return `${path.length > 0 ? ` at ${path.join('.')}` : ''}: ${issue.message}`;
}

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
    throw new OllanaError('OLN_BAD_DEVICES_FILE', `${file} is not valid JSON (${errorMessage(err)}); ${fix}`, {
      cause: err,
      details: { file },
    });
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    throw new OllanaError(
      'OLN_BAD_DEVICES_FILE',
      `${file} is not valid${describeIssue(parsed.error.issues[0]!)}; ${fix}`,
      { details: { file } },
    );
  }
  return parsed.data;
}

function writeJson<T>(dataDir: string, fileName: string, schema: z.ZodType<T>, data: T): void {
  const file = join(dataDir, fileName);
  const checked = schema.safeParse(data);
  if (!checked.success) {
    // A bug upstream (an unchecked id or name reached this far): refuse to write what no reader accepts.
    throw new OllanaError(
      'OLN_INTERNAL',
      `refusing to write ${file}: the new content would not be valid` + `${describeIssue(checked.error.issues[0]!)}`,
      { details: { file } },
    );
  }
  ensurePrivateDir(dataDir);
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
  writeJson(dataDir, DEVICES_FILE, devicesSchema, { version: 1 as const, devices: [...list] });
}

export interface PendingRead {
  readonly pending: PendingEntry[];
  /** What was wrong with the file, when something was (entries skipped, or the whole file); else null. */
  readonly problem: string | null;
}

/**
 * Devices the running node saw and did not allow, every well-formed entry of pending.json; a
 * malformed entry (or a file that is not a pending list at all) is skipped and described in `problem`.
 * Throws only when the file cannot be read (OLN_DIR_UNWRITABLE).
 */
export function readPendingChecked(dataDir: string): PendingRead {
  const file = join(dataDir, PENDING_FILE);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return { pending: [], problem: null };
    throw dirError(file, 'read', err);
  }
  const why = (what: string): string => `${file}: ${what}; the running node writes it again as it meets devices`;
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    return { pending: [], problem: why(`not valid JSON (${errorMessage(err)}), ignored`) };
  }
  const outer = z.strictObject({ version: z.literal(1), pending: z.array(z.unknown()) }).safeParse(data);
  if (!outer.success)
    return { pending: [], problem: why(`not valid${describeIssue(outer.error.issues[0]!)}, ignored`) };
  const pending: PendingEntry[] = [];
  const skipped: string[] = [];
  outer.data.pending.forEach((raw, i) => {
    const entry = pendingEntrySchema.safeParse(raw);
    if (!entry.success) skipped.push(describeIssue(entry.error.issues[0]!, ['pending', i]).replace(/^ at /, ''));
    else if (pending.some((p) => p.id === entry.data.id)) skipped.push(`pending.${i}: lists ${entry.data.id} twice`);
    else pending.push(entry.data);
  });
  return {
    pending,
    problem:
      skipped.length === 0
        ? null
        : why(
            `skipped ${skipped.length} malformed entr${skipped.length === 1 ? 'y' : 'ies'} (${skipped.slice(0, 3).join('; ')}${skipped.length > 3 ? '; ...' : ''})`,
          ),
  };
}

/** The well-formed entries of pending.json ([] when there is none); see readPendingChecked. */
export function readPending(dataDir: string): PendingEntry[] {
  return readPendingChecked(dataDir).pending;
}

/** Replaces pending.json in one step (tmp + rename, 0600). */
export function writePending(dataDir: string, list: readonly PendingEntry[]): void {
  writeJson(dataDir, PENDING_FILE, pendingSchema, { version: 1 as const, pending: [...list] });
}

/** Ids of the devices in state 'allowed'. */
export function allowedIds(list: readonly DeviceEntry[]): string[] {
  return list.filter((d) => d.state === 'allowed').map((d) => d.id);
}
