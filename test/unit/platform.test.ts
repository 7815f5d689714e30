/**
 * Every OS branch of src/platform/ run on Linux with the OS injected: the data, log and pid places,
 * the proxy worker count where SO_REUSEPORT is missing, whether stop can signal, and where the
 * control endpoint listens.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULTS } from '../../src/config/defaults.ts';
import { addressFits, controlAddress, controlTokenFile } from '../../src/daemon/control.ts';
import { OllanaError } from '../../src/errors.ts';
import { platformDirs } from '../../src/platform/dirs.ts';
import { hasReusePort, hasSignals, hostPlatform, type Platform } from '../../src/platform/platform.ts';
import { planWorkers } from '../../src/platform/workers.ts';

const on = (os: NodeJS.Platform, env: Record<string, string> = {}, home = '/home/ann'): Platform => ({ os, env, home });

test('Linux: XDG places, the pid file in $XDG_RUNTIME_DIR when there is one', () => {
  assert.deepEqual(platformDirs(on('linux')), {
    data: '/home/ann/.config/ollana',
    logFile: '/home/ann/.local/state/ollana/ollana.log',
    pidFile: '/home/ann/.config/ollana/ollana.pid',
  });
  assert.deepEqual(
    platformDirs(on('linux', { XDG_CONFIG_HOME: '/c', XDG_STATE_HOME: '/s', XDG_RUNTIME_DIR: '/run/user/1000' })),
    { data: '/c/ollana', logFile: '/s/ollana/ollana.log', pidFile: '/run/user/1000/ollana/ollana.pid' },
  );
  // --data-dir moves the data, not the XDG runtime place.
  assert.equal(platformDirs(on('linux', { XDG_RUNTIME_DIR: '/r' }), '/d').pidFile, '/r/ollana/ollana.pid');
  assert.equal(platformDirs(on('linux'), '/d').pidFile, '/d/ollana.pid');
});

test('macOS: ~/Library/Application Support for data and the pid file, ~/Library/Logs for the log; XDG ignored', () => {
  assert.deepEqual(platformDirs(on('darwin', { XDG_CONFIG_HOME: '/c', XDG_RUNTIME_DIR: '/r' }, '/Users/ann')), {
    data: '/Users/ann/Library/Application Support/ollana',
    logFile: '/Users/ann/Library/Logs/ollana/ollana.log',
    pidFile: '/Users/ann/Library/Application Support/ollana/ollana.pid',
  });
});

test('Windows: %APPDATA% for data, %LOCALAPPDATA% for the log and pid file, with backslashes', () => {
  const env = { APPDATA: 'C:\\Users\\ann\\AppData\\Roaming', LOCALAPPDATA: 'C:\\Users\\ann\\AppData\\Local' };
  assert.deepEqual(platformDirs(on('win32', env, 'C:\\Users\\ann')), {
    data: 'C:\\Users\\ann\\AppData\\Roaming\\ollana',
    logFile: 'C:\\Users\\ann\\AppData\\Local\\ollana\\logs\\ollana.log',
    pidFile: 'C:\\Users\\ann\\AppData\\Local\\ollana\\ollana.pid',
  });
  // Without the variables (a service account's bare environment): under the profile.
  assert.deepEqual(platformDirs(on('win32', {}, 'C:\\Users\\ann')), {
    data: 'C:\\Users\\ann\\AppData\\Roaming\\ollana',
    logFile: 'C:\\Users\\ann\\AppData\\Local\\ollana\\logs\\ollana.log',
    pidFile: 'C:\\Users\\ann\\AppData\\Local\\ollana\\ollana.pid',
  });
});

test('OLLANA_HOME holds everything on every OS', () => {
  for (const [os, sep] of [
    ['linux', '/'],
    ['darwin', '/'],
    ['win32', '\\'],
  ] as const) {
    const home = os === 'win32' ? 'D:\\ollana' : '/srv/ollana';
    assert.deepEqual(platformDirs(on(os, { OLLANA_HOME: home, XDG_RUNTIME_DIR: '/r', APPDATA: 'X' })), {
      data: home,
      logFile: `${home}${sep}ollana.log`,
      pidFile: `${home}${sep}ollana.pid`,
    });
  }
});

test('SO_REUSEPORT: Linux, FreeBSD, Solaris and AIX have it; macOS and Windows do not', () => {
  assert.deepEqual((['linux', 'freebsd', 'sunos', 'aix', 'darwin', 'win32', 'openbsd'] as const).map(hasReusePort), [
    true,
    true,
    true,
    true,
    false,
    false,
    false,
  ]);
});

test('workers: the count as configured where SO_REUSEPORT exists', () => {
  const config = { ...DEFAULTS, workers: 6 };
  assert.deepEqual(planWorkers(config, 'flag', 'linux'), { workers: 6, reusePort: true, note: null });
});

test('workers: macOS and Windows run one worker without SO_REUSEPORT and say why', () => {
  for (const os of ['darwin', 'win32'] as const) {
    const plan = planWorkers({ ...DEFAULTS, workers: 8 }, 'default', os);
    assert.equal(plan.workers, 1);
    assert.equal(plan.reusePort, false);
    assert.match(plan.note ?? '', /SO_REUSEPORT/);
    // A count of 1 the user gave is what the OS allows anyway.
    assert.equal(planWorkers({ ...DEFAULTS, workers: 1 }, 'flag', os).workers, 1);
  }
});

test('workers: a count above 1 set by flag, environment or config file is refused there [OLN_WORKERS_UNSUPPORTED]', () => {
  for (const origin of ['flag', 'environment', 'config file'] as const) {
    assert.throws(
      () => planWorkers({ ...DEFAULTS, workers: 4 }, origin, 'darwin'),
      (err: unknown) => err instanceof OllanaError && err.code === 'OLN_WORKERS_UNSUPPORTED' && err.exitCode === 2,
    );
  }
});

test('signals: everywhere but Windows, unless OLLANA_NO_SIGNALS=1', () => {
  assert.equal(hasSignals(on('linux')), true);
  assert.equal(hasSignals(on('darwin')), true);
  assert.equal(hasSignals(on('win32')), false);
  assert.equal(hasSignals(on('linux', { OLLANA_NO_SIGNALS: '1' })), false);
});

test('the OS can be injected into a process only with the debug hooks on', () => {
  assert.equal(hostPlatform({ OLLANA_TEST_PLATFORM: 'win32' }).os, process.platform);
  assert.equal(hostPlatform({ OLLANA_DEBUG_HOOKS: '1', OLLANA_TEST_PLATFORM: 'win32' }).os, 'win32');
  assert.equal(hostPlatform({ OLLANA_DEBUG_HOOKS: '1', OLLANA_TEST_PLATFORM: 'plan9' }).os, process.platform);
});

test('control endpoint: a socket beside the pid file on Unix, a named pipe per pid file on Windows', () => {
  assert.equal(
    controlAddress('/run/user/1000/ollana/ollana.pid', 'linux'),
    '/run/user/1000/ollana/ollana.control.sock',
  );
  assert.equal(controlAddress('/tmp/node-a.pid', 'darwin'), '/tmp/node-a.control.sock');
  const pipe = controlAddress('C:\\Users\\ann\\AppData\\Local\\ollana\\ollana.pid', 'win32');
  assert.match(pipe, /^\\\\\.\\pipe\\ollana-[0-9a-f]{24}$/);
  // Windows paths are case-insensitive: the same file names the same pipe; another file another pipe.
  assert.equal(controlAddress('c:\\users\\ann\\appdata\\local\\ollana\\OLLANA.PID', 'win32'), pipe);
  assert.notEqual(controlAddress('C:\\other.pid', 'win32'), pipe);
  assert.equal(controlTokenFile('C:\\data', 'win32'), 'C:\\data\\control.token');
  assert.equal(controlTokenFile('/data', 'linux'), '/data/control.token');
  // A Unix socket path has a length limit (104 bytes on macOS, 108 on Linux); a pipe has none.
  const long = `/${'x'.repeat(104)}`;
  assert.equal(addressFits(long, 'linux'), true);
  assert.equal(addressFits(long, 'darwin'), false);
  assert.equal(addressFits(`/${'x'.repeat(110)}`, 'linux'), false);
  assert.equal(addressFits(`\\\\.\\pipe\\${'x'.repeat(300)}`, 'win32'), true);
});
