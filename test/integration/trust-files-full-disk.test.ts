/**
 * Issue #22 / #14 red team: a server node whose data directory (a small tmpfs; root) fills up, then
 * turns read-only, while it runs. It keeps serving its allowed device, says once per cause what it
 * cannot save (the file, the errno in words that fit it, what to do, the code), and refuses unknown
 * devices as before.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { Client, request } from 'undici';
import { pinnedConnector, type TlsIdentity } from '../../src/net/tls.ts';
import { startEmulator } from '../../testkit/ollama-emulator.ts';
import {
  removeHome,
  runCli,
  tempHome,
  type LogLine,
  type Started,
  startServerNode,
} from '../helpers/ollana-process.ts';

const homes: string[] = [];
after(() => {
  for (const h of homes) removeHome(h);
});

async function identity(home: string): Promise<TlsIdentity> {
  const r = await runCli(['device', 'show', '--json'], { home });
  assert.equal(r.code, 0, r.stderr);
  return {
    id: (JSON.parse(r.stdout) as { id: string }).id,
    certPem: readFileSync(join(home, 'cert.pem'), 'utf8'),
    keyPem: readFileSync(join(home, 'key.pem'), 'utf8'),
  };
}

async function asDevice(server: Started, serverId: string, self: TlsIdentity): Promise<number> {
  const dispatcher = new Client(server.url, {
    connect: pinnedConnector({ self, expectedId: serverId, timeoutMs: 5_000 }),
  });
  try {
    const res = await request(`${server.url}/api/tags`, { dispatcher });
    await res.body.text();
    return res.statusCode;
  } finally {
    await dispatcher.close().catch(() => undefined);
  }
}

const unsaved = (l: LogLine): boolean => l.level === 'warn' && l.code === 'OLN_DIR_UNWRITABLE';

test('a full, then read-only data directory under a running node: it keeps serving and says once per cause what it cannot save', {
  timeout: 120_000,
}, async (t) => {
  const base = tempHome('ollana-full-');
  homes.push(base);
  const data = join(base, 'data');
  mkdirSync(data);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0700', 'tmpfs', data]);
  t.after(() => {
    execFileSync('umount', ['-l', data]);
  });
  const friendHome = tempHome('ollana-full-friend-');
  homes.push(friendHome);
  const server = await identity(data);
  const friend = await identity(friendHome);
  assert.equal((await runCli(['device', 'allow', friend.id], { home: data })).code, 0);
  const strangers: TlsIdentity[] = [];
  for (let i = 0; i < 3; i++) {
    const h = tempHome('ollana-full-stranger-');
    homes.push(h);
    strangers.push(await identity(h));
  }

  const emu = await startEmulator({ port: 0, tokenIntervalMs: 0 });
  t.after(() => emu.close());
  const node = await startServerNode(emu.url, {
    workers: 1,
    tls: true,
    args: ['--pid-file', join(base, 'ollana.pid')],
    home: data,
  });
  t.after(() => node.stop());
  assert.equal(await asDevice(node, server.id, friend), 200);

  try {
    execFileSync('dd', ['if=/dev/zero', `of=${join(data, 'fill')}`, 'bs=4k', 'count=64'], { stdio: 'ignore' });
  } catch {
    /* dd ends with ENOSPC: the disk is full, as wanted */
  }
  for (const s of strangers.slice(0, 2)) {
    assert.equal(await asDevice(node, server.id, s), 403);
    await node.waitFor((l) => l.msg.startsWith(`refused device ${s.id}`), 10_000, `the refusal of ${s.id}`);
  }
  assert.equal(await asDevice(node, server.id, friend), 200, 'the allowed device is still served');
  const full = node.lines.filter(unsaved);
  assert.equal(full.length, 1, JSON.stringify(full));
  assert.equal(full[0]!.errno, 'ENOSPC');
  assert.match(
    full[0]!.msg,
    new RegExp(
      `^cannot write ${data}/pending\\.json: the disk is full; free some space there, or choose another data ` +
        'directory with --data-dir or OLLANA_HOME\\. The node keeps serving; the devices it meets are not saved for `ollana device pending` ' +
        'until it can write there \\[OLN_DIR_UNWRITABLE\\]$',
    ),
  );

  execFileSync('mount', ['-o', 'remount,ro', data]);
  assert.equal(await asDevice(node, server.id, strangers[2]!), 403);
  await node.waitFor((l) => l.msg.startsWith(`refused device ${strangers[2]!.id}`), 10_000, 'the third refusal');
  assert.equal(await asDevice(node, server.id, friend), 200, 'still served on a read-only data directory');
  const ro = node.lines.filter(unsaved).slice(1);
  assert.equal(ro.length, 1, JSON.stringify(ro));
  assert.equal(ro[0]!.errno, 'EROFS');
  assert.match(ro[0]!.msg, /: the file system is read-only; remount it read-write, or choose another data directory/);
  assert.ok(
    node.lines.every((l) => l.level !== 'error' && l.level !== 'fatal'),
    'nothing worse than a warning',
  );
});
