/**
 * TrustStore in-process on a FakeClock: the watch of devices.json and the writer of pending.json are
 * injected, so the write pacing of pending devices, the change event of a changed allow list and the
 * once-per-cause warning of a data directory that cannot be written are checked without waiting, a
 * thread or a child process (trust-store.test.ts does the same on real files and a real tmpfs).
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { after, test, type TestContext } from 'node:test';
import { pino } from 'pino';
import { TrustStore } from '../../src/actors/trust-store.ts';
import { OllanaError } from '../../src/errors.ts';
import { deviceIdFromDer } from '../../src/identity/device-id.ts';
import { writeDevices, type PendingEntry } from '../../src/identity/devices.ts';
import { dirError } from '../../src/identity/data-dir.ts';
import type { TrustSettings } from '../../src/protocol/messages.ts';
import { FakeClock } from '../helpers/fake-clock.ts';
import { removeHome, tempHome } from '../helpers/ollana-process.ts';

const homes: string[] = [];
after(() => {
  for (const h of homes) removeHome(h);
});

interface Line {
  level: string;
  msg: string;
  code?: string;
  errno?: string;
}

const ids = Array.from({ length: 5 }, (_, i) => deviceIdFromDer(Buffer.from(`timing ${i}`)));

function errno(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated`), { code });
}

interface Harness {
  readonly store: TrustStore;
  readonly clock: FakeClock;
  readonly dir: string;
  readonly lines: Line[];
  /** each write of pending.json: when, and the ids it held */
  readonly writes: { at: number; ids: string[] }[];
  /** what the next writes throw (null: they succeed) */
  fail: Error | null;
  /** runs the watcher's callback, as a changed devices.json would */
  readonly touchDevices: () => void;
  readonly watching: () => boolean;
}

function harness(t: TestContext): Harness {
  const dir = tempHome('ollana-trust-timing-');
  homes.push(dir);
  const clock = new FakeClock();
  const lines: Line[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Line);
      done();
    },
  });
  const log = pino({ level: 'info', formatters: { level: (label) => ({ level: label }) } }, dest);
  let onChange: (() => void) | null = null;
  const h: Harness = {
    clock,
    dir,
    lines,
    writes: [],
    fail: null,
    touchDevices: () => onChange?.(),
    watching: () => onChange !== null,
    store: null as unknown as TrustStore,
  };
  const store = new TrustStore(dir, false, log, {
    clock,
    watch: (_file, _intervalMs, listener) => {
      onChange = listener;
      return () => {
        onChange = null;
      };
    },
    writePending: (_dir: string, entries: readonly PendingEntry[]) => {
      if (h.fail !== null) throw h.fail;
      h.writes.push({ at: clock.now(), ids: entries.map((e) => e.id) });
    },
  });
  t.after(() => store.stop());
  return Object.assign(h, { store });
}

test('a device met first is written at once; more within 500 ms wait for the end of the interval, and their lines with them', (t) => {
  const h = harness(t);
  const t0 = h.clock.now();
  const said: string[] = [];
  assert.equal(
    h.store.notePending(ids[0]!, 'a', '10.0.0.2:5000', 'client-refused', (first) => said.push(`0:${first}`)),
    true,
  );
  assert.deepEqual(h.writes, [{ at: t0, ids: [ids[0]] }]);
  assert.deepEqual(said, ['0:true'], 'the line runs once the device is written');

  h.clock.advance(100);
  h.store.notePending(ids[1]!, 'b', '10.0.0.3:5000', 'server-seen', (first) => said.push(`1:${first}`));
  h.store.notePending(ids[0]!, 'a', '10.0.0.2:5001', 'client-refused', (first) => said.push(`0:${first}`));
  assert.equal(h.writes.length, 1, 'written again within 500 ms of the last write');
  assert.deepEqual(said, ['0:true'], 'a line ran before its device was written');
  h.clock.advance(399);
  assert.equal(h.writes.length, 1);
  h.clock.advance(1);
  assert.deepEqual(h.writes[1], { at: t0 + 500, ids: [ids[1], ids[0]] });
  assert.deepEqual(said, ['0:true', '1:true', '0:false']);
  assert.equal(h.store.pendingCount, 2);

  // A device this node trusts or disabled is not recorded, and its line runs at once.
  const trusted = new TrustStore(h.dir, true, pino({ level: 'silent' }), {
    clock: h.clock,
    watch: () => () => undefined,
    writePending: () => assert.fail('nothing to write for a trusted device'),
  });
  let line = '';
  assert.equal(
    trusted.notePending(ids[2]!, 'c', '10.0.0.4:5000', 'server-seen', (first) => {
      line = `2:${first}`;
    }),
    false,
  );
  assert.equal(line, '2:false');
  assert.equal(trusted.pendingCount, 0);
});

test('a change of devices.json seen by the watch emits change with the new allow list and drops what became trusted from pending', (t) => {
  const h = harness(t);
  h.store.start();
  assert.equal(h.watching(), true);
  h.store.notePending(ids[0]!, 'a', '10.0.0.2:5000', 'client-refused');
  h.store.notePending(ids[1]!, 'b', '10.0.0.3:5000', 'client-refused');
  h.clock.advance(500);
  assert.deepEqual(h.writes.at(-1)!.ids, [ids[0], ids[1]]);
  const changes: TrustSettings[] = [];
  h.store.on('change', (s: TrustSettings) => changes.push(s));

  h.touchDevices(); // nothing changed in the file: no event
  assert.deepEqual(changes, []);
  writeDevices(h.dir, [
    { id: ids[0]!, name: 'a', state: 'allowed', since: '2026-01-01T00:00:00.000Z' },
    { id: ids[3]!, name: 'd', state: 'disabled', since: '2026-01-01T00:00:00.000Z' },
  ]);
  h.touchDevices();
  assert.deepEqual(changes, [{ trustLan: false, allowed: [ids[0]], disabled: [ids[3]], weights: {} }]);
  assert.equal(h.store.trusts(ids[0]!), true);
  assert.equal(h.store.isDisabled(ids[3]!), true);
  assert.equal(h.store.pendingCount, 1, 'the allowed device is no longer pending');
  h.clock.advance(500);
  assert.deepEqual(h.writes.at(-1)!.ids, [ids[1]], 'and pending.json is written without it');

  // A broken devices.json keeps the last good list, says so, and changes nothing.
  writeFileSync(`${h.dir}/devices.json`, '{"version": 1, "devices": [');
  h.touchDevices();
  assert.equal(changes.length, 1);
  assert.equal(h.store.trusts(ids[0]!), true);
  assert.ok(
    h.lines.some(
      (l) =>
        l.level === 'error' && /ignoring devices\.json until it is fixed, keeping the previous allow list/.test(l.msg),
    ),
  );
  h.store.stop();
  assert.equal(h.watching(), false, 'stop() ends the watch');
});

test('a full data directory is warned about once, with the errno, while the store keeps noting devices; it says when it can write again', (t) => {
  const h = harness(t);
  h.fail = dirError(`${h.dir}/pending.json`, 'write', errno('ENOSPC'));
  for (const [i, id] of ids.slice(0, 3).entries()) {
    let said = false;
    assert.equal(
      h.store.notePending(id, `n${i}`, '10.0.0.2:5000', 'client-refused', () => {
        said = true;
      }),
      true,
    );
    h.clock.advance(500);
    assert.equal(said, true, 'the line still runs after a failed write');
  }
  const warns = (): Line[] => h.lines.filter((l) => l.level === 'warn');
  assert.equal(warns().length, 1, JSON.stringify(h.lines));
  assert.equal(warns()[0]!.code, 'OLN_DIR_UNWRITABLE');
  assert.equal(warns()[0]!.errno, 'ENOSPC');
  assert.match(
    warns()[0]!.msg,
    /the disk is full; .*The node keeps serving; the devices it meets are not saved for `ollana device pending` until it can write there \[OLN_DIR_UNWRITABLE\]$/,
  );
  assert.equal(h.store.pendingCount, 3);

  // Another cause is told once too.
  h.fail = dirError(`${h.dir}/pending.json`, 'write', errno('EROFS'));
  h.store.notePending(ids[3]!, 'n3', '10.0.0.2:5000', 'client-refused');
  h.clock.advance(500);
  h.store.notePending(ids[3]!, 'n3', '10.0.0.2:5000', 'client-refused');
  h.clock.advance(500);
  assert.deepEqual(
    warns().map((l) => l.errno),
    ['ENOSPC', 'EROFS'],
  );

  // A lock held by `ollana device` is no fault: no warning, written again 500 ms later.
  h.fail = new OllanaError('OLN_DATA_DIR_BUSY', 'busy');
  h.store.notePending(ids[4]!, 'n4', '10.0.0.2:5000', 'client-refused');
  h.clock.advance(500);
  assert.equal(warns().length, 2);
  h.fail = null;
  h.clock.advance(500);
  assert.deepEqual(h.writes.at(-1)!.ids, ids, 'everything noted meanwhile is written');
  assert.match(h.lines.at(-1)!.msg, /pending\.json can be written again/);
});
