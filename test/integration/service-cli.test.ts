/**
 * `ollana service install|status|uninstall` through the CLI, always under --root or OLLANA_SERVICE_ROOT
 * (a temp dir: the real /etc/systemd and systemctl are never touched). The systemd units it writes
 * are checked by `systemd-analyze verify` (Debian's systemd, installed by test/helpers/install-test-tools.ts);
 * the launchd plist (macOS's rules injected) is parsed as a property list; Windows' rules give the
 * Task Scheduler command and OLN_SERVICE_UNSUPPORTED.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parsePlist } from '../helpers/plist.ts';
import { removeHome, runCli, tempHome } from '../helpers/ollana-process.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) removeHome(d);
});

function dir(): string {
  const d = tempHome('ollana-service-');
  dirs.push(d);
  return d;
}

/** systemd-analyze verify's complaints about `file` (its lines about other units are not ours). */
function verify(file: string, user: boolean): string[] {
  const runtime = dir();
  const r = spawnSync('systemd-analyze', [...(user ? ['--user'] : []), 'verify', file], {
    encoding: 'utf8',
    env: { ...process.env, XDG_RUNTIME_DIR: runtime, SYSTEMD_LOG_LEVEL: 'warning' },
  });
  assert.equal(
    r.error,
    undefined,
    "systemd-analyze runs (npm test installs Debian's systemd: node test/helpers/install-test-tools.ts)",
  );
  const ours = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => l.includes('ollana'));
  assert.equal(r.status, 0, `systemd-analyze verify failed:\n${r.stderr}`);
  return ours;
}

test('Linux, system scope: install writes a unit systemd-analyze accepts; status; uninstall removes it', {
  timeout: 60_000,
}, async () => {
  const root = dir();
  const install = await runCli(['service', 'install', '--system', '--root', root]);
  assert.equal(install.code, 0, install.stderr);
  const file = join(root, 'etc/systemd/system/ollana.service');
  assert.match(
    install.stdout,
    /not enabled \(then: systemctl daemon-reload && systemctl enable --now ollana\.service\)/,
  );
  const unit = readFileSync(file, 'utf8');
  assert.match(
    unit,
    new RegExp(
      `^ExecStart=${process.execPath.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} \\S+/bin/ollana\\.mjs serve$`,
      'm',
    ),
  );
  assert.match(unit, /^WantedBy=multi-user\.target$/m);
  assert.match(unit, /^Environment=OLLANA_HOME=\/var\/lib\/ollana$/m);
  assert.deepEqual(verify(file, false), []);
  // The entry it runs is this installation's and exists.
  assert.ok(existsSync(/ExecStart=\S+ (\S+) serve/.exec(unit)![1]!));

  const status = await runCli(['service', 'status', '--system', '--root', root]);
  assert.equal(status.code, 0, status.stderr);
  assert.equal(status.stdout, `installed: ${file}\n`);
  const uninstall = await runCli(['service', 'uninstall', '--system', '--root', root]);
  assert.equal(uninstall.code, 0, uninstall.stderr);
  assert.equal(existsSync(file), false);
  const after = await runCli(['service', 'status', '--system', '--root', root]);
  assert.match(after.stdout, /^not installed/);
});

test('Linux, user scope (OLLANA_SERVICE_ROOT): the unit goes to $XDG_CONFIG_HOME/systemd/user, wanted by default.target', {
  timeout: 60_000,
}, async () => {
  const root = dir();
  const env = { OLLANA_SERVICE_ROOT: root, XDG_CONFIG_HOME: '/home/ann/.config' };
  const install = await runCli(['service', 'install', '--user'], { env });
  assert.equal(install.code, 0, install.stderr);
  const file = join(root, 'home/ann/.config/systemd/user/ollana.service');
  const unit = readFileSync(file, 'utf8');
  assert.match(unit, /^WantedBy=default\.target$/m);
  assert.doesNotMatch(unit, /OLLANA_HOME|network-online/);
  assert.deepEqual(verify(file, true), []);
  // An edited unit is told apart from the one this ollana writes.
  writeFileSync(file, `${unit}# edited\n`);
  const status = await runCli(['service', 'status', '--user'], { env });
  assert.match(status.stdout, /edited: `ollana service install` rewrites it/);
});

test("macOS's rules: a LaunchAgent plist that parses, runs `serve` at load, logs to ~/Library/Logs/ollana", {
  timeout: 60_000,
}, async () => {
  const root = dir();
  const env = { OLLANA_DEBUG_HOOKS: '1', OLLANA_TEST_PLATFORM: 'darwin', OLLANA_SERVICE_ROOT: root };
  const install = await runCli(['service', 'install', '--user'], { env });
  assert.equal(install.code, 0, install.stderr);
  const file = join(root, homedir(), 'Library/LaunchAgents/io.github.ollana.plist');
  assert.match(install.stdout, /launchctl bootstrap gui\/\d+ /);
  const plist = parsePlist(readFileSync(file, 'utf8')) as Record<string, unknown>;
  assert.equal(plist.Label, 'io.github.ollana');
  const args = plist.ProgramArguments as string[];
  assert.equal(args[0], process.execPath);
  assert.match(args[1]!, /\/bin\/ollana\.mjs$/);
  assert.equal(args[2], 'serve');
  assert.equal(plist.RunAtLoad, true);
  assert.deepEqual(plist.KeepAlive, { SuccessfulExit: false });
  assert.equal(plist.StandardOutPath, join(homedir(), 'Library/Logs/ollana/ollana.log'));
  assert.equal(plist.EnvironmentVariables, undefined, "an agent uses the user's own data directory");

  const system = await runCli(['service', 'install', '--system'], { env });
  assert.equal(system.code, 0, system.stderr);
  const daemon = parsePlist(readFileSync(join(root, 'Library/LaunchDaemons/io.github.ollana.plist'), 'utf8')) as Record<
    string,
    unknown
  >;
  assert.deepEqual(daemon.EnvironmentVariables, { OLLANA_HOME: '/Library/Application Support/ollana' });
  assert.equal(daemon.StandardOutPath, '/Library/Logs/ollana/ollana.log');
});

test("Windows' rules: no service manager to drive; the Task Scheduler command and [OLN_SERVICE_UNSUPPORTED]", {
  timeout: 60_000,
}, async () => {
  const root = dir();
  mkdirSync(join(root, 'x'));
  const r = await runCli(['service', 'install'], {
    env: { OLLANA_DEBUG_HOOKS: '1', OLLANA_TEST_PLATFORM: 'win32', OLLANA_SERVICE_ROOT: root },
  });
  assert.equal(r.code, 17);
  assert.match(r.stderr, /schtasks \/Create \/TN ollana \/SC ONLOGON/);
  assert.match(r.stderr, /\[OLN_SERVICE_UNSUPPORTED\]\n$/);
});

test('--user and --system together are refused [OLN_USAGE]', { timeout: 30_000 }, async () => {
  const r = await runCli(['service', 'install', '--user', '--system', '--root', dir()]);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /\[OLN_USAGE\]\n$/);
});
