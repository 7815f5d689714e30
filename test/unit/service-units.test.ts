/** The service definitions' text (src/service/units.ts): quoting of odd paths, and each OS's places. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { launchdPlist, serviceFile, systemdUnit, windowsTaskCommand } from '../../src/service/units.ts';
import { parsePlist } from '../helpers/plist.ts';

const prog = { node: '/opt/my node/bin/node', entry: '/opt/a&b <x>/100%/bin/ollana.mjs' };

test('systemd: a path with a space, a % or a quote is one word of ExecStart=', () => {
  const unit = systemdUnit(prog, 'user');
  assert.match(unit, /^ExecStart="\/opt\/my node\/bin\/node" "\/opt\/a&b <x>\/100%%\/bin\/ollana\.mjs" serve$/m);
  assert.match(
    systemdUnit({ node: '/usr/bin/node', entry: '/srv/o"l/bin/ollana.mjs' }, 'system'),
    /"\/srv\/o\\"l\/bin\/ollana\.mjs"/,
  );
});

test('launchd: paths with &, < and > are escaped and parse back as written', () => {
  const plist = parsePlist(launchdPlist(prog, { os: 'darwin', env: {}, home: '/Users/ann' }, 'user')) as Record<
    string,
    unknown
  >;
  assert.deepEqual(plist.ProgramArguments, [prog.node, prog.entry, 'serve']);
});

test('the plist reader refuses what is not a property list', () => {
  const good = launchdPlist(prog, { os: 'darwin', env: {}, home: '/Users/ann' }, 'user');
  assert.throws(() => parsePlist(good.replace('</array>', '')), /expected|unexpected|unknown/);
  assert.throws(() => parsePlist(good.replace('<true/>', '<yes/>')), /unexpected <yes\/>/);
  assert.throws(() => parsePlist(good.replace('<?xml', '<?xmm')), /XML declaration/);
});

test("places: systemd's system and user directories, launchd's agents and daemons", () => {
  assert.equal(
    serviceFile({ os: 'linux', env: {}, home: '/home/ann' }, 'system'),
    '/etc/systemd/system/ollana.service',
  );
  assert.equal(
    serviceFile({ os: 'linux', env: {}, home: '/home/ann' }, 'user'),
    '/home/ann/.config/systemd/user/ollana.service',
  );
  assert.equal(
    serviceFile({ os: 'darwin', env: {}, home: '/Users/ann' }, 'user'),
    '/Users/ann/Library/LaunchAgents/io.github.ollana.plist',
  );
  assert.equal(
    serviceFile({ os: 'darwin', env: {}, home: '/Users/ann' }, 'system'),
    '/Library/LaunchDaemons/io.github.ollana.plist',
  );
});

test('Windows: a Task Scheduler command that starts the node at logon, paths quoted', () => {
  assert.equal(
    windowsTaskCommand({ node: 'C:\\Program Files\\nodejs\\node.exe', entry: 'C:\\ollana\\bin\\ollana.mjs' }),
    'schtasks /Create /TN ollana /SC ONLOGON /RL LIMITED /TR "\\"C:\\Program Files\\nodejs\\node.exe\\" \\"C:\\ollana\\bin\\ollana.mjs\\" serve"',
  );
});
