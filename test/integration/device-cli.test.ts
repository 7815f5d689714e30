/**
 * `ollana device ...` through the real CLI: the identity it shows, pairing by the full id (a prefix
 * only for devices already in the allow list, never for ids met on the LAN), disabling, listing, and
 * the errors (typos, unknown or ambiguous ids, broken files) with their messages and exit statuses.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { deviceIdFromDer } from '../../src/identity/device-id.ts';
import { readDevices, writePending, type PendingEntry } from '../../src/identity/devices.ts';
import { removeHome, runCli, tempHome } from '../helpers/ollana-process.ts';

const homes: string[] = [];
after(() => {
  for (const h of homes) removeHome(h);
});
function home(): string {
  const h = tempHome('ollana-device-');
  homes.push(h);
  return h;
}

async function ok(args: string[], h: string): Promise<string> {
  const r = await runCli(args, { home: h });
  assert.equal(r.code, 0, `ollana ${args.join(' ')} failed: ${r.stderr}`);
  assert.equal(r.stderr, '');
  return r.stdout;
}

async function json<T>(args: string[], h: string): Promise<T> {
  return JSON.parse(await ok([...args, '--json'], h)) as T;
}

async function fails(args: string[], h: string, exit: number, pattern: RegExp): Promise<void> {
  const r = await runCli(args, { home: h });
  assert.equal(r.code, exit, `ollana ${args.join(' ')}: stdout ${r.stdout} stderr ${r.stderr}`);
  assert.match(r.stderr, pattern);
  assert.equal(r.stdout, '');
}

interface Shown {
  id: string;
  name: string;
  fingerprint: string;
  certFile: string;
  keyFile: string;
  created: boolean;
}
interface Changed {
  device: { id: string; name: string; state: string; since: string };
  previous: string | null;
  changed: boolean;
}

test('device show: makes the identity once (0700 dir, 0600 key), prints the id node:crypto derives, and the pairing hint', async () => {
  const h = home();
  const first = await json<Shown>(['device', 'show'], h);
  assert.equal(first.created, true);
  assert.equal(first.certFile, join(h, 'cert.pem'));
  assert.equal(deviceIdFromDer(new X509Certificate(readFileSync(first.certFile)).raw), first.id);
  assert.match(first.fingerprint, /^[0-9a-f]{64}$/);
  assert.equal(statSync(h).mode & 0o777, 0o700);
  assert.equal(statSync(first.keyFile).mode & 0o777, 0o600);

  const text = await ok(['device', 'show'], h);
  assert.doesNotMatch(text, /made a new identity/);
  assert.match(text, new RegExp(`^device id: +${first.id}$`, 'm'));
  assert.match(text, new RegExp(`^fingerprint: sha256 ${first.fingerprint}$`, 'm'));
  assert.match(text, new RegExp(`^certificate: ${first.certFile}$`, 'm'));
  assert.match(text, new RegExp(`on the other machine run: ollana device allow ${first.id}\\n$`));
  const again = await json<Shown>(['device', 'show'], h);
  assert.deepEqual(again, { ...first, created: false });

  const other = home();
  const viaFlag = await json<Shown>(['device', 'show', '--data-dir', join(other, 'elsewhere')], h);
  assert.equal(viaFlag.certFile, join(other, 'elsewhere', 'cert.pem'));
  assert.notEqual(viaFlag.id, first.id);
});

test('three `device show` at once on a fresh data dir agree on one identity', async () => {
  const h = home();
  const all = await Promise.all([1, 2, 3].map(() => json<Shown>(['device', 'show'], h)));
  assert.equal(new Set(all.map((s) => s.id)).size, 1);
  assert.equal(all.filter((s) => s.created).length, 1);
});

const T0 = '2026-03-01T10:00:00.000Z';
const T1 = '2026-03-01T10:05:00.000Z';
function pendingEntry(id: string, name: string, kind: PendingEntry['kind'], addr: string): PendingEntry {
  return { id, name, addr, kind, firstSeen: T0, lastSeen: T1, count: 4 };
}

test('pairing flow: pending explains each device, allow by the full id, then disable and allow by a prefix, list', async () => {
  const h = home();
  const server = deviceIdFromDer(Buffer.from('server cert'));
  const client = deviceIdFromDer(Buffer.from('client cert'));
  writePending(h, [
    pendingEntry(server, 'gpu-box', 'server-seen', '192.168.1.20:11435'),
    pendingEntry(client, 'laptop\u001b[2J', 'client-refused', '192.168.1.31:50112'),
  ]);
  assert.match(
    await ok(['device', 'list'], h),
    /no devices allowed yet: run `ollana device show` on the other machine/,
  );
  const waiting = await ok(['device', 'pending'], h);
  assert.match(
    waiting,
    new RegExp(
      `${server}  gpu-box  192\\.168\\.1\\.20:11435\\n  a server node this machine saw on the LAN; ` +
        `it is not allowed here.*\\n  seen 4 time\\(s\\), first ${T0}, last ${T1}\\n  if \`ollana device show\` on that machine prints this id, allow it: ollana device allow ${server}\\n`,
    ),
  );
  assert.match(
    waiting,
    new RegExp(`${client}  laptop\\?\\[2J .*\\n  a client node this server refused; it is not allowed here\\n`),
  );
  assert.doesNotMatch(waiting, /\u001b/, 'no terminal escapes from names other machines chose');

  await fails(
    ['device', 'allow', server.slice(0, 5).toLowerCase()],
    h,
    2,
    /matches only a device this machine met on the LAN.*type the full id/,
  );
  const allowed = await json<Changed>(['device', 'allow', server.toLowerCase().replace(/-/g, '')], h);
  assert.deepEqual({ ...allowed.device, since: '' }, { id: server, name: 'gpu-box', state: 'allowed', since: '' });
  assert.equal(allowed.previous, null);
  assert.equal(allowed.changed, true);
  assert.ok(Math.abs(Date.parse(allowed.device.since) - Date.now()) < 120_000);
  assert.deepEqual(readDevices(h), [allowed.device]);
  assert.equal(statSync(join(h, 'devices.json')).mode & 0o777, 0o600);

  assert.match(await ok(['device', 'allow', server.slice(0, 9)], h), /is already allowed; nothing changed/);
  const pendingNow = await json<{ pending: PendingEntry[] }>(['device', 'pending'], h);
  assert.deepEqual(
    pendingNow.pending.map((p) => p.id),
    [client],
    'an allowed device is no longer pending',
  );

  const disabled = await ok(['device', 'disable', server.slice(0, 8).replace('-', '')], h);
  assert.equal(
    disabled,
    `disabled ${server} (gpu-box): it is refused from now on\n` +
      'a running ollana node applies this within a second, without a restart\n',
  );
  assert.match(await ok(['device', 'disable', server], h), /is already disabled; nothing changed/);
  const listed = await json<{ devices: Changed['device'][] }>(['device', 'list'], h);
  assert.deepEqual(
    listed.devices.map((d) => [d.id, d.state, d.name]),
    [[server, 'disabled', 'gpu-box']],
  );

  const human = await ok(['device', 'allow', server.toLowerCase().replace(/-/g, ' '), '--name', 'big GPU'], h);
  assert.equal(
    human,
    `allowed ${server} (big GPU), which was disabled\n` +
      'a running ollana node applies this within a second, without a restart\n',
  );
  assert.match(await ok(['device', 'list'], h), new RegExp(`^allowed   ${server}  big GPU  since \\S+$`, 'm'));
});

test('a full id typed from another machine is allowed without being pending; disable needs a known device', async () => {
  const h = home();
  const elsewhere = home();
  const other = await json<Shown>(['device', 'show'], elsewhere);
  const r = await json<Changed>(['device', 'allow', other.id], h);
  assert.deepEqual([r.device.id, r.device.name, r.device.state, r.changed], [other.id, '', 'allowed', true]);
  assert.match(await ok(['device', 'list'], h), new RegExp(`allowed   ${other.id}  -  since`));
  const stranger = deviceIdFromDer(Buffer.from('never seen'));
  await fails(
    ['device', 'disable', stranger],
    h,
    2,
    new RegExp(`${stranger} is not a device this machine knows.*\\[OLN_BAD_DEVICE_ID\\]`),
  );
  assert.equal(readDevices(h).length, 1);
});

/** Two valid ids whose first 4 characters agree: found by counting up, so always the same pair. */
function twoSharingAPrefix(): [string, string] {
  const seen = new Map<string, string>();
  for (let i = 0; ; i++) {
    const id = deviceIdFromDer(Buffer.from(`device ${i}`));
    const twin = seen.get(id.slice(0, 4));
    if (twin !== undefined) return [twin, id];
    seen.set(id.slice(0, 4), id);
  }
}

test('issue #22: a prefix of a server met on the LAN is refused, even when a forged twin pushed the real one out of pending', async () => {
  const h = home();
  // The attacker's id shares the real server's first 4 characters (found by grinding certificates);
  // forged announcements filled pending.json, so only the twin is there.
  const [real, twin] = twoSharingAPrefix();
  writePending(h, [pendingEntry(twin, 'gpu-box', 'server-seen', '10.0.0.66:11435')]);
  for (const typed of [real.slice(0, 4), real.slice(0, 4).toLowerCase()]) {
    await fails(
      ['device', 'allow', typed],
      h,
      2,
      new RegExp(
        `device id prefix "${typed}" matches only a device this machine met on the LAN, ` +
          'and an id met on the LAN is not proof of anything: .*; type the full id \\(56 characters, or 63 with dashes\\) as ' +
          '`ollana device show` on that machine prints it \\[OLN_BAD_DEVICE_ID\\]',
      ),
    );
  }
  await fails(
    ['device', 'allow', real.slice(0, 20)],
    h,
    2,
    /no device in the allow list has an id starting with .*; type the full id/,
  );
  assert.deepEqual(readDevices(h), [], 'the twin was not allowed');
  const r = await json<Changed>(['device', 'allow', real], h);
  assert.equal(r.device.id, real);
  assert.deepEqual(
    readDevices(h).map((d) => d.id),
    [real],
  );
});

test('issue #22: 100 `device allow` / `device disable` run 10 at a time lose no update', {
  timeout: 170_000,
}, async (t) => {
  const h = home();
  const ids = Array.from({ length: 60 }, (_, i) => deviceIdFromDer(Buffer.from(`concurrent ${i}`)));
  const allowed = new Set<string>();
  const disabled = new Set<string>();
  let lost = 0;
  let next = 0;
  const failed: string[] = [];
  for (let round = 0; round < 10; round++) {
    // Each round: 6 new devices allowed and 4 of the ones allowed before disabled, all at once.
    const toAllow = ids.slice(next, next + 6);
    next += 6;
    const inFile = new Map(readDevices(h).map((d) => [d.id, d.state]));
    const toDisable = [...allowed].filter((id) => inFile.get(id) === 'allowed').slice(0, round === 0 ? 0 : 4);
    const runs = [...toAllow.map((id) => ['allow', id]), ...toDisable.map((id) => ['disable', id])];
    while (runs.length < 10) runs.push(['list']);
    const results = await Promise.all(runs.map((args) => runCli(['device', ...args], { home: h })));
    results.forEach((r, i) => {
      if (r.code !== 0) failed.push(`ollana device ${runs[i]!.join(' ')}: ${r.stderr}`);
    });
    for (const id of toAllow) allowed.add(id);
    for (const id of toDisable) {
      allowed.delete(id);
      disabled.add(id);
    }
  }
  const state = new Map(readDevices(h).map((d) => [d.id, d.state]));
  for (const id of allowed) if (state.get(id) !== 'allowed') lost++;
  for (const id of disabled) if (state.get(id) !== 'disabled') lost++;
  t.diagnostic(
    `devices not in the state their command reported, of ${allowed.size + disabled.size}: ${lost}; failed commands: ${failed.length}`,
  );
  assert.deepEqual(failed, []);
  assert.equal(lost, 0, 'every command that said "allowed" or "disabled" is in devices.json');
  assert.equal(readDevices(h).length, 60);
});

test("bad ids: typos, too short, unknown, ambiguous, this machine's own; exit 2 with what to do", async () => {
  const h = home();
  const me = await json<Shown>(['device', 'show'], h);
  const [a, b] = twoSharingAPrefix();
  writePending(h, [
    pendingEntry(a, 'a', 'server-seen', '10.0.0.1:11435'),
    pendingEntry(b, 'b', 'client-refused', '10.0.0.2:5000'),
  ]);
  const typo = a.slice(0, 20) + (a[20] === 'A' ? 'B' : 'A') + a.slice(21);
  await fails(
    ['device', 'allow', typo],
    h,
    2,
    /check characters do not match in characters 15-28 \(a typo\?\).*\[OLN_BAD_DEVICE_ID\]/,
  );
  await fails(['device', 'allow', 'ab'], h, 2, /"ab" is too short/);
  await fails(['device', 'allow', 'P56I0'], h, 2, /contains "0": ids use only the letters A-Z and the digits 2-7/);
  const unknown = a.startsWith('ZZZZ') ? 'YYYY' : 'ZZZZ';
  await fails(
    ['device', 'disable', unknown],
    h,
    2,
    new RegExp(
      `no device in the allow list has an id starting with "${unknown}"; type the full id .*as \`ollana device show\` on that machine prints it`,
    ),
  );
  await fails(['device', 'allow', a.slice(0, 4)], h, 2, /matches only a device this machine met on the LAN/);
  await fails(
    ['device', 'allow', me.id.slice(0, 6)],
    h,
    2,
    /is this machine's own device id; run `ollana device show` on the other machine/,
  );
  assert.deepEqual(readDevices(h), [], 'nothing was written');
  await ok(['device', 'allow', a], h);
  await ok(['device', 'allow', b], h);
  await fails(
    ['device', 'disable', a.slice(0, 4)],
    h,
    2,
    new RegExp(`matches 2 devices: (${a}, ${b}|${b}, ${a}); type more of the id`),
  );
});

test('broken files and an unusable data dir: exit 3 / 5 naming the file', async () => {
  const h = home();
  writeFileSync(join(h, 'devices.json'), '{"version":1,"devices":[{"id":"nope"}]}');
  await fails(
    ['device', 'list'],
    h,
    3,
    new RegExp(
      `${join(h, 'devices.json')} is not valid at devices\\.0\\.id: .*; repair it, or move it away .*\\[OLN_BAD_DEVICES_FILE\\]`,
    ),
  );
  await fails(['device', 'allow', deviceIdFromDer(Buffer.from('x'))], h, 3, /devices\.json is not valid/);
  writeFileSync(join(h, 'devices.json'), '{"version":1,"devices":[]}');
  // pending.json is advisory: garbage in it, or a malformed entry, costs a warning, not the command.
  writeFileSync(join(h, 'pending.json'), 'garbage');
  const p = await runCli(['device', 'pending'], { home: h });
  assert.equal(p.code, 0, p.stderr);
  assert.match(p.stdout, /^no devices waiting/);
  assert.match(
    p.stderr,
    /^ollana: warning: .*pending\.json: not valid JSON .*, ignored; the running node writes it again as it meets devices \[OLN_BAD_DEVICES_FILE\]\n$/,
  );
  const good = deviceIdFromDer(Buffer.from('good'));
  writeFileSync(
    join(h, 'pending.json'),
    JSON.stringify({
      version: 1,
      pending: [
        { ...pendingEntry(good, 'ok', 'server-seen', '10.0.0.1:11435') },
        { ...pendingEntry(good, 'bad', 'server-seen', '10.0.0.2:11435'), id: 'CGOB' },
      ],
    }),
  );
  const q = await runCli(['device', 'pending', '--json'], { home: h });
  assert.equal(q.code, 0, q.stderr);
  assert.deepEqual(
    (JSON.parse(q.stdout) as { pending: PendingEntry[] }).pending.map((e) => e.id),
    [good],
  );
  assert.match(q.stderr, /skipped 1 malformed entry \(pending\.1\.id: not a device id/);
  const a = await runCli(['device', 'allow', good], { home: h });
  assert.equal(a.code, 0, a.stderr);
  assert.match(a.stdout, /^allowed .* \(ok\)/);

  const k = home();
  const shown = await json<Shown>(['device', 'show'], k);
  writeFileSync(shown.keyFile, 'not a key\n');
  await fails(
    ['device', 'show'],
    k,
    12,
    /key\.pem is not a PEM private key.*move both away to make a new identity.*\[OLN_IDENTITY_BAD\]/,
  );

  writeFileSync(join(h, 'a-file'), '');
  await fails(
    ['device', 'show', '--data-dir', join(h, 'a-file', 'data')],
    h,
    5,
    /cannot use the data directory .*a-file\/data: .*--data-dir or OLLANA_HOME \[OLN_DIR_UNWRITABLE\]/,
  );
});

test('issue #22: `device allow` on a full, then read-only data dir: exit 5 with the cause and fix that fit (not "permissions")', {
  timeout: 60_000,
}, async (t) => {
  const h = home();
  const data = join(h, 'data');
  mkdirSync(data);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', data]);
  t.after(() => {
    execFileSync('umount', ['-l', data]);
  });
  await ok(['device', 'show'], data);
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${join(data, 'fill')}`, 'bs=4k', 'count=64'], { stdio: 'ignore' });
  } catch {
    /* dd ends with ENOSPC: the disk is full, as wanted */
  }
  const id = deviceIdFromDer(Buffer.from('full disk'));
  const full = await runCli(['device', 'allow', id], { home: data });
  assert.equal(full.code, 5, full.stderr);
  assert.match(
    full.stderr,
    /cannot write .*data\/devices\.json: the disk is full; free some space there, or choose another data directory with --data-dir or OLLANA_HOME \[OLN_DIR_UNWRITABLE\]/,
  );
  assert.doesNotMatch(full.stderr, /permission/);
  execFileSync('mount', ['-o', 'remount,ro', data]);
  const ro = await runCli(['device', 'allow', id], { home: data });
  assert.equal(ro.code, 5, ro.stderr);
  assert.match(ro.stderr, /the file system is read-only; remount it read-write, or choose another data directory/);
  assert.deepEqual(readDevices(data), []);
});

test('`ollana device --help` lists the subcommands', async () => {
  const help = await ok(['device', '--help'], home());
  for (const verb of ['show', 'list', 'pending', 'allow', 'disable'])
    assert.match(help, new RegExp(`^  ${verb} `, 'm'));
});
