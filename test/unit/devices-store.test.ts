/**
 * devices.json and pending.json on real files: round trips, private modes, atomic replacement, and
 * each kind of bad file refused whole with a message naming the file, the place and the fix.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { OllanaError } from '../../src/errors.ts';
import { deviceIdFromDer } from '../../src/identity/device-id.ts';
import {
  allowedIds,
  readDevices,
  readPending,
  readPendingChecked,
  writeDevices,
  writePending,
  type DeviceEntry,
  type PendingEntry,
} from '../../src/identity/devices.ts';
import { withTrustLock } from '../../src/identity/trust-lock.ts';
import { removeHome, tempHome } from '../helpers/ollana-process.ts';

const homes: string[] = [];
after(() => {
  for (const h of homes) removeHome(h);
});
function dir(): string {
  const h = tempHome('ollana-devices-');
  homes.push(h);
  return h;
}

const A = deviceIdFromDer(Uint8Array.of(1));
const B = deviceIdFromDer(Uint8Array.of(2));
const SINCE = '2026-01-02T03:04:05.000Z';
const devices: DeviceEntry[] = [
  { id: A, name: 'laptop', state: 'allowed', since: SINCE },
  { id: B, name: '', state: 'disabled', since: SINCE },
];
const pending: PendingEntry[] = [
  {
    id: B,
    name: 'gpu-box',
    addr: '192.168.1.20:11435',
    kind: 'server-seen',
    firstSeen: SINCE,
    lastSeen: SINCE,
    count: 3,
  },
];

function badFile(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof OllanaError, String(err));
    assert.equal(err.code, 'OLN_BAD_DEVICES_FILE');
    assert.equal(err.exitCode, 3);
    assert.match(err.message, pattern);
    return true;
  });
}

test('missing files read as empty lists; written ones read back, 0600, in the documented form', () => {
  const d = dir();
  assert.deepEqual(readDevices(d), []);
  assert.deepEqual(readPending(d), []);
  writeDevices(d, devices);
  writePending(d, pending);
  assert.deepEqual(readDevices(d), devices);
  assert.deepEqual(readPending(d), pending);
  assert.equal(statSync(join(d, 'devices.json')).mode & 0o777, 0o600);
  assert.equal(statSync(join(d, 'pending.json')).mode & 0o777, 0o600);
  assert.deepEqual(JSON.parse(readFileSync(join(d, 'devices.json'), 'utf8')), { version: 1, devices });
  assert.deepEqual(JSON.parse(readFileSync(join(d, 'pending.json'), 'utf8')), { version: 1, pending });
  assert.deepEqual(allowedIds(devices), [A]);
  writeDevices(d, devices.slice(0, 1));
  assert.deepEqual(readDevices(d), devices.slice(0, 1));
  assert.deepEqual(readdirSync(d).sort(), ['devices.json', 'pending.json'], 'no temporary files left behind');
});

test('writing into a data directory that does not exist yet makes it, 0700', () => {
  const d = join(dir(), 'new', 'data');
  writeDevices(d, devices);
  assert.equal(statSync(d).mode & 0o777, 0o700);
  assert.deepEqual(readDevices(d), devices);
});

test('a malformed devices.json is refused whole, naming the file, the place and the fix', () => {
  const d = dir();
  const file = join(d, 'devices.json');
  const fix = /; repair it, or move it away and allow the devices again with `ollana device allow`$/;
  const cases: [string, RegExp][] = [
    ['{"version":1,', /is not valid JSON/],
    ['[]', /is not valid: .*expected object/],
    ['{"version":2,"devices":[]}', /is not valid at version/],
    ['{"version":1,"devices":[],"extra":1}', /is not valid: .*extra/],
    [
      JSON.stringify({ version: 1, devices: [{ ...devices[0], id: A.toLowerCase() }] }),
      /at devices\.0\.id: not a device id as `ollana device show` prints it/,
    ],
    [JSON.stringify({ version: 1, devices: [{ ...devices[0], state: 'on' }] }), /at devices\.0\.state/],
    [JSON.stringify({ version: 1, devices: [{ ...devices[0], since: 'yesterday' }] }), /at devices\.0\.since/],
    [JSON.stringify({ version: 1, devices: [devices[0], devices[0]] }), /at devices: lists a device twice/],
  ];
  for (const [text, pattern] of cases) {
    writeFileSync(file, text);
    badFile(() => readDevices(d), new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} `));
    badFile(() => readDevices(d), pattern);
    badFile(() => readDevices(d), fix);
  }
});

test('issue #22: a malformed pending.json entry is skipped with a description; the good ones are read', () => {
  const d = dir();
  const file = join(d, 'pending.json');
  const C = deviceIdFromDer(Uint8Array.of(3));
  const good = [pending[0]!, { ...pending[0]!, id: C }];
  writeFileSync(
    file,
    JSON.stringify({
      version: 1,
      pending: [good[0], { ...pending[0], id: 'CGOB' }, good[1], { ...pending[0], count: 0 }, good[0]],
    }),
  );
  const read = readPendingChecked(d);
  assert.deepEqual(read.pending, good);
  assert.match(
    read.problem ?? '',
    new RegExp(
      `^${file}: skipped 3 malformed entries \\(pending\\.1\\.id: not a device id.*; pending\\.3\\.count: .*; ` +
        `pending\\.4: lists ${B} twice\\); the running node writes it again`,
    ),
  );
  assert.deepEqual(readPending(d), good);
  for (const [text, pattern] of [
    ['garbage', /not valid JSON .*, ignored/],
    ['{"version":2,"pending":[]}', /not valid at version: .*, ignored/],
  ] as const) {
    writeFileSync(file, text);
    const r = readPendingChecked(d);
    assert.deepEqual(r.pending, []);
    assert.match(r.problem ?? '', pattern);
  }
  writePending(d, good);
  assert.equal(readPendingChecked(d).problem, null);
});

test('issue #22: nothing that would not read back is written: a malformed id or name is refused before the file is touched', () => {
  const d = dir();
  writePending(d, pending);
  const before = readFileSync(join(d, 'pending.json'), 'utf8');
  const refused = (fn: () => void): void =>
    assert.throws(
      fn,
      (err: unknown) =>
        err instanceof OllanaError &&
        err.code === 'OLN_INTERNAL' &&
        /refusing to write .*pending\.json: the new content would not be valid at pending\.0\.(id|name)/.test(
          err.message,
        ),
    );
  refused(() => writePending(d, [{ ...pending[0]!, id: 'CGOB' }]));
  refused(() => writePending(d, [{ ...pending[0]!, name: 'x'.repeat(300) }]));
  assert.throws(() => writeDevices(d, [{ ...devices[0]!, id: A.toLowerCase() }]), /refusing to write .*devices\.json/);
  assert.equal(readFileSync(join(d, 'pending.json'), 'utf8'), before);
  assert.deepEqual(readdirSync(d).sort(), ['pending.json']);
});

test('the trust lock: another process holding it -> OLN_DATA_DIR_BUSY after the wait; a SIGKILLed holder frees it at once', async (t) => {
  const d = dir();
  // A holder that takes the lock, says so, and blocks (synchronously, as every holder does) until killed.
  const holder = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `
    import { withTrustLock } from ${JSON.stringify(new URL('../../src/identity/trust-lock.ts', import.meta.url).href)};
    withTrustLock(${JSON.stringify(d)}, 1000, () => {
      process.stdout.write('locked\\n');
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60_000);
    });`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => holder.kill('SIGKILL'));
  const [first] = (await once(holder.stdout, 'data')) as [Buffer];
  assert.equal(first.toString(), 'locked\n');
  const started = Date.now();
  assert.throws(
    () => withTrustLock(d, 300, () => 'never'),
    (err: unknown) => {
      assert.ok(err instanceof OllanaError, String(err));
      assert.equal(err.code, 'OLN_DATA_DIR_BUSY');
      assert.match(err.message, /another ollana process has held .*trust\.lock for more than 300 ms/);
      return true;
    },
  );
  assert.ok(Date.now() - started >= 250, 'it waited');
  holder.kill('SIGKILL');
  await once(holder, 'exit');
  assert.equal(
    withTrustLock(d, 1000, () => 'mine'),
    'mine',
    'no stale lock after the holder died',
  );
  assert.deepEqual(readdirSync(d).sort(), ['trust.lock'], 'no journal or other file beside it');
});
