/**
 * `ollana device show | list | pending | allow | disable`: this machine's device id, and the allow
 * list in the data directory. The commands only edit files; a running node notices devices.json
 * change and applies it, so none of them needs the node to be up.
 */
import type { DeviceCommand } from '../args.ts';
import { loadConfig } from '../../config/load.ts';
import { OllanaError } from '../../errors.ts';
import {
  readDevices,
  readPendingChecked,
  writeDevices,
  type DeviceEntry,
  type DeviceState,
  type PendingEntry,
} from '../../identity/devices.ts';
import { resolveDeviceId } from '../../identity/device-id.ts';
import { loadIdentity, loadOrCreateIdentity } from '../../identity/identity.ts';
import { CLI_LOCK_WAIT_MS, withTrustLock } from '../../identity/trust-lock.ts';

type Env = Readonly<Record<string, string | undefined>>;

const APPLIES = 'a running ollana node applies this within a second, without a restart';

const KIND_TEXT: Record<PendingEntry['kind'], string> = {
  'server-seen': 'a server node this machine saw on the LAN; it is not allowed here, so this machine does not use it',
  'client-refused': 'a client node this server refused; it is not allowed here',
};

/** Names and addresses come from other machines: no control characters reach the terminal. */
function printable(s: string): string {
  return s.replace(/\p{Cc}/gu, '?') || '-';
}

/**
 * pending.json is advisory: a malformed entry in it costs that entry (with a coded warning on
 * stderr), never the command.
 */
function readPendingWarn(dataDir: string): PendingEntry[] {
  const { pending, problem } = readPendingChecked(dataDir);
  if (problem !== null) process.stderr.write(`ollana: warning: ${problem} [OLN_BAD_DEVICES_FILE]\n`);
  return pending;
}

function out(json: boolean, data: unknown, text: string): number {
  process.stdout.write(json ? `${JSON.stringify(data, null, 2)}\n` : text);
  return 0;
}

async function show(dataDir: string, json: boolean): Promise<number> {
  const { identity: me, created, removed } = await loadOrCreateIdentity(dataDir);
  const { id, name, fingerprint, certFile, keyFile } = me;
  if (removed.length > 0)
    process.stderr.write(
      `ollana: removed what an interrupted write (a killed ollana) left in ${dataDir}: ${removed.join(', ')}\n`,
    );
  return out(
    json,
    { id, name, fingerprint, certFile, keyFile, created },
    (created ? `made a new identity for this machine in ${dataDir}\n` : '') +
      `device id:   ${id}\nname:        ${printable(name)}\nfingerprint: sha256 ${fingerprint}\ncertificate: ${certFile}\n\n` +
      `to pair, on the other machine run: ollana device allow ${id}\n`,
  );
}

function list(dataDir: string, json: boolean): number {
  const devices = readDevices(dataDir);
  if (devices.length === 0) {
    return out(
      json,
      { devices },
      'no devices allowed yet: run `ollana device show` on the other machine, then ' +
        '`ollana device allow <ID>` here (`ollana device pending` lists the devices this machine met)\n',
    );
  }
  const lines = devices.map((d) => `${d.state.padEnd(8)}  ${d.id}  ${printable(d.name)}  since ${d.since}`);
  return out(json, { devices }, `${lines.join('\n')}\n`);
}

function pending(dataDir: string, json: boolean): number {
  const decided = new Set(readDevices(dataDir).map((d) => d.id));
  const waiting = readPendingWarn(dataDir).filter((p) => !decided.has(p.id));
  if (waiting.length === 0) {
    return out(
      json,
      { pending: waiting },
      'no devices waiting: none was seen on the LAN or refused without being allowed\n',
    );
  }
  const blocks = waiting.map(
    (p) =>
      `${p.id}  ${printable(p.name)}  ${printable(p.addr)}\n  ${KIND_TEXT[p.kind]}\n` +
      `  seen ${p.count} time(s), first ${p.firstSeen}, last ${p.lastSeen}\n` +
      `  if \`ollana device show\` on that machine prints this id, allow it: ollana device allow ${p.id}\n`,
  );
  return out(json, { pending: waiting }, blocks.join('\n'));
}

/**
 * Sets a device's state (and name) in the allow list, and says what changed. The whole
 * read-modify-write holds the data directory's trust lock: two commands at once (or a command and
 * the node writing pending.json) would otherwise each write the list it read, and one would be lost.
 */
function setState(
  dataDir: string,
  input: string,
  state: DeviceState,
  nameGiven: string | null,
  json: boolean,
  weight: number | null,
): number {
  return withTrustLock(dataDir, CLI_LOCK_WAIT_MS, () => setStateLocked(dataDir, input, state, nameGiven, json, weight));
}

function setStateLocked(
  dataDir: string,
  input: string,
  state: DeviceState,
  nameGiven: string | null,
  json: boolean,
  weightGiven: number | null,
): number {
  const devices = readDevices(dataDir);
  const waiting = readPendingWarn(dataDir);
  // This machine's own id is among the decided ones so that its prefix, typed by mistake, gets that
  // error. Pending ids are only met on the LAN: a prefix must not resolve to one (resolveDeviceId).
  const own = loadIdentity(dataDir)?.id;
  const id = resolveDeviceId(
    input,
    [...devices.map((d) => d.id), ...(own ? [own] : [])],
    waiting.map((p) => p.id),
  );
  const prev = devices.find((d) => d.id === id);
  const seen = waiting.find((p) => p.id === id);
  if (id === own) {
    throw new OllanaError(
      'OLN_BAD_DEVICE_ID',
      `${id} is this machine's own device id; run \`ollana device show\` ` +
        `on the other machine and ${state === 'allowed' ? 'allow' : 'disable'} the id it prints`,
    );
  }
  if (state === 'disabled' && prev === undefined && seen === undefined) {
    throw new OllanaError(
      'OLN_BAD_DEVICE_ID',
      `${id} is not a device this machine knows, so there is nothing to disable ` +
        '(a device that is not allowed is refused anyway); `ollana device list` and `ollana device pending` show the known ones',
    );
  }
  const name = nameGiven ?? (seen?.name || prev?.name || '');
  const weight = weightGiven ?? prev?.weight ?? 1;
  const reweighted = (prev?.weight ?? 1) !== weight;
  const changed = prev?.state !== state || prev.name !== name || reweighted;
  const entry: DeviceEntry = {
    id,
    name,
    state,
    since: prev?.state === state ? prev.since : new Date().toISOString(),
    ...(weight === 1 ? {} : { weight }),
  };
  if (changed) writeDevices(dataDir, prev ? devices.map((d) => (d.id === id ? entry : d)) : [...devices, entry]);

  const label = `${id} (${printable(name)})`;
  const text = !changed
    ? `${label} is already ${state}; nothing changed\n`
    : prev?.state === state && reweighted
      ? `${label} now has weight ${weight}: its share of a busy server node's slots against weight-1 devices\n${APPLIES}\n`
      : prev?.state === state
        ? `renamed ${id} from ${printable(prev.name)} to ${printable(name)}\n`
        : state === 'allowed'
          ? `allowed ${label}${prev?.state === 'disabled' ? ', which was disabled' : ''}\n${APPLIES}\n`
          : `disabled ${label}: it is refused from now on\n${APPLIES}\n`;
  return out(json, { device: entry, previous: prev?.state ?? null, changed }, text);
}

export async function deviceCommand(cmd: DeviceCommand, env: Env): Promise<number> {
  const { dataDir } = loadConfig(cmd.flags, env);
  switch (cmd.verb) {
    case 'show':
      return show(dataDir, cmd.json);
    case 'list':
      return list(dataDir, cmd.json);
    case 'pending':
      return pending(dataDir, cmd.json);
    case 'allow':
      return setState(dataDir, cmd.id ?? '', 'allowed', cmd.name, cmd.json, cmd.weight);
    case 'disable':
      return setState(dataDir, cmd.id ?? '', 'disabled', null, cmd.json, null);
    default: {
      const never: never = cmd.verb;
      throw new Error(`unknown device command ${String(never)}`);
    }
  }
}

/**
 * Allows `id` as `ollana device allow` does (same lock, same checks, same message): `ollana pair`
 * writes what it paired through here.
 */
export function allowDevice(dataDir: string, id: string, name: string): number {
  return setState(dataDir, id, 'allowed', name.slice(0, 64), false, null);
}
