/**
 * The node's trust store on real files: what a log line announces about a pending device is on disk
 * when the line runs (issue #14), malformed ids never reach pending.json and a malformed one from a
 * previous run costs only its bad entries (issue #22), and a full or read-only data directory is
 * told once per cause, with the right words, while the store keeps working (a real tmpfs; root).
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import { pino } from 'pino';
import { TrustStore } from '../../src/actors/trust-store.ts';
import { deviceIdFromDer } from '../../src/identity/device-id.ts';
import { readPending } from '../../src/identity/devices.ts';
import type { Logger } from '../../src/log.ts';
import { removeHome, tempHome } from '../helpers/ollana-process.ts';

const homes: string[] = [];
after(() => {
  for (const h of homes) removeHome(h);
});
function dir(): string {
  const h = tempHome('ollana-trust-store-');
  homes.push(h);
  return h;
}

interface Line {
  level: string;
  msg: string;
  code?: string;
  errno?: string;
}

function sink(): { log: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Line);
      done();
    },
  });
  return { log: pino({ level: 'info', formatters: { level: (label) => ({ level: label }) } }, dest), lines };
}

const ids = Array.from({ length: 6 }, (_, i) => deviceIdFromDer(Buffer.from(`store ${i}`)));

/** notePending's `then`, as a promise that fails the test if it is never called. */
function noted(
  store: TrustStore,
  id: string,
  dataDir: string,
  name = '',
): Promise<{ first: boolean; onDisk: boolean }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`notePending never called back for ${id}`)), 3_000);
    store.notePending(id, name, '10.0.0.9:11435', 'server-seen', (first) => {
      clearTimeout(timer);
      resolve({ first, onDisk: readPending(dataDir).some((p) => p.id === id) });
    });
  });
}

test("issue #14: a caller's log line runs only once pending.json lists the device, also for devices met in a burst", async (t) => {
  const d = dir();
  const store = new TrustStore(d, false, pino({ level: 'silent' }));
  t.after(() => store.stop());
  assert.deepEqual(await noted(store, ids[0]!, d), { first: true, onDisk: true });
  // Within the write interval: the second and third wait for the next write, and are in it.
  const burst = await Promise.all([noted(store, ids[1]!, d), noted(store, ids[2]!, d), noted(store, ids[0]!, d)]);
  assert.deepEqual(burst, [
    { first: true, onDisk: true },
    { first: true, onDisk: true },
    { first: false, onDisk: true },
  ]);
  assert.deepEqual(
    readPending(d).map((p) => [p.id, p.count]),
    [
      [ids[1], 1],
      [ids[2], 1],
      [ids[0], 2],
    ],
  );
});

test('issue #22: a malformed id never reaches pending.json; an overlong name is cut; the file always reads back', async (t) => {
  const d = dir();
  const store = new TrustStore(d, false, pino({ level: 'silent' }));
  t.after(() => store.stop());
  let called = false;
  for (const bad of ['CGOB', '', ids[0]!.toLowerCase(), `${ids[0]!}-AAAAAAA`, 'x'.repeat(10_000)]) {
    assert.equal(
      store.notePending(bad, 'forged', '10.0.0.66:11435', 'server-seen', () => {
        called = true;
      }),
      false,
    );
  }
  assert.equal(called, false, 'no log line for an id that cannot be allowed');
  assert.deepEqual(await noted(store, ids[3]!, d, 'n'.repeat(1_000)), { first: true, onDisk: true });
  const saved = readPending(d);
  assert.deepEqual(
    saved.map((p) => p.id),
    [ids[3]],
  );
  assert.equal(saved[0]!.name.length, 256);
});

test('issue #22: a pending.json with malformed entries from the last run: the good ones are kept and it says once what it skipped', async (t) => {
  const d = dir();
  const good = {
    id: ids[4]!,
    name: 'gpu',
    addr: '10.0.0.4:11435',
    kind: 'server-seen',
    firstSeen: '2026-01-01T00:00:00.000Z',
    lastSeen: '2026-01-01T00:00:00.000Z',
    count: 2,
  } as const;
  writeFileSync(join(d, 'pending.json'), JSON.stringify({ version: 1, pending: [good, { ...good, id: 'CGOB' }] }));
  const { log, lines } = sink();
  const store = new TrustStore(d, false, log);
  t.after(() => store.stop());
  assert.deepEqual(
    lines.map((l) => [l.level, l.code]),
    [['warn', 'OLN_BAD_DEVICES_FILE']],
  );
  assert.match(
    lines[0]!.msg,
    /pending\.json: skipped 1 malformed entry \(pending\.1\.id: not a device id.*\); the running node writes it again/,
  );
  assert.equal(store.pendingCount, 1);
  await noted(store, ids[5]!, d);
  assert.deepEqual(
    readPending(d).map((p) => p.id),
    [ids[4], ids[5]],
  );
});

test('a full, then read-only data directory: one warning per cause naming the file, the errno and the fix; it recovers', {
  timeout: 60_000,
}, async (t) => {
  const h = dir();
  const d = join(h, 'data');
  mkdirSync(d);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', d]);
  t.after(() => {
    execFileSync('umount', ['-l', d]);
  });
  const { log, lines } = sink();
  const store = new TrustStore(d, false, log);
  t.after(() => store.stop());
  await noted(store, ids[0]!, d);
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${join(d, 'fill')}`, 'bs=4k', 'count=64'], { stdio: 'ignore' });
  } catch {
    /* dd ends with ENOSPC: the disk is full, as wanted */
  }

  for (const id of ids.slice(1, 4)) assert.deepEqual(await noted(store, id, d), { first: true, onDisk: false });
  const full = lines.filter((l) => l.level === 'warn');
  assert.equal(full.length, 1, JSON.stringify(lines));
  assert.equal(full[0]!.code, 'OLN_DIR_UNWRITABLE');
  assert.equal(full[0]!.errno, 'ENOSPC');
  assert.match(
    full[0]!.msg,
    new RegExp(
      `cannot write ${d}/pending\\.json: the disk is full; free some space there, or choose another data directory .*` +
        'The node keeps serving; the devices it meets are not saved for `ollana device pending` until it can write there \\[OLN_DIR_UNWRITABLE\\]$',
    ),
  );
  assert.doesNotMatch(full[0]!.msg, /permission/);

  execFileSync('mount', ['-o', 'remount,ro', d]);
  assert.deepEqual(await noted(store, ids[4]!, d), { first: true, onDisk: false });
  await noted(store, ids[4]!, d);
  const ro = lines.filter((l) => l.level === 'warn').slice(1);
  assert.equal(ro.length, 1, JSON.stringify(lines));
  assert.equal(ro[0]!.errno, 'EROFS');
  assert.match(ro[0]!.msg, /: the file system is read-only; remount it read-write, or choose another data directory/);

  execFileSync('mount', ['-o', 'remount,rw', d]);
  rmSync(join(d, 'fill'));
  assert.deepEqual(await noted(store, ids[5]!, d), { first: true, onDisk: true });
  assert.match(lines.at(-1)!.msg, /pending\.json can be written again/);
  assert.deepEqual(
    readPending(d).map((p) => p.id),
    ids,
  );
  assert.ok(
    readdirSync(d).every((f) => !f.endsWith('.tmp')),
    `no temporary file left: ${readdirSync(d).join(' ')}`,
  );
});
