import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CONFIG_FILE_NAME, loadConfig } from '../../src/config/load.ts';
import { DEFAULTS, OPTION_SPECS, type ConfigKey } from '../../src/config/defaults.ts';
import { parseListen } from '../../src/config/schema.ts';
import { OllanaError } from '../../src/errors.ts';

/** A fresh data directory, removed after the test. */
function dataDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'ollana-config-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function writeConfig(dir: string, content: unknown): string {
  const file = join(dir, CONFIG_FILE_NAME);
  writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content));
  return file;
}

function escapeRe(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Asserts `fn` throws an OllanaError with this code, and returns it for further checks. */
function catchOllana(fn: () => unknown, code: OllanaError['code']): OllanaError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof OllanaError, `expected an OllanaError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  return caught;
}

test('with no flags, env or file every value is the default, and says so', (t) => {
  const dir = dataDir(t);
  const loaded = loadConfig({}, { OLLANA_HOME: dir });
  assert.deepEqual(loaded.config, { ...DEFAULTS, dataDir: dir });
  assert.equal(loaded.file, null);
  assert.equal(loaded.dataDir, dir);
  for (const spec of OPTION_SPECS) {
    assert.equal(loaded.origins[spec.key], spec.key === 'dataDir' ? 'environment' : 'default', spec.key);
  }
  assert.ok(Object.isFrozen(loaded.config));
  assert.ok(Object.isFrozen(loaded.origins));
});

test('the data directory comes from --data-dir before OLLANA_HOME', (t) => {
  const fromFlag = dataDir(t);
  const fromEnv = dataDir(t);
  writeConfig(fromFlag, { workers: 3 });
  writeConfig(fromEnv, { workers: 5 });
  const loaded = loadConfig({ dataDir: fromFlag }, { OLLANA_HOME: fromEnv });
  assert.equal(loaded.dataDir, fromFlag);
  assert.equal(loaded.config.dataDir, fromFlag);
  assert.equal(loaded.origins.dataDir, 'flag');
  assert.equal(loaded.file, join(fromFlag, CONFIG_FILE_NAME));
  assert.equal(loaded.config.workers, 3);
});

test('without OLLANA_HOME the data directory is $XDG_CONFIG_HOME/ollana', (t) => {
  const xdg = dataDir(t);
  const dir = join(xdg, 'ollana');
  mkdirSync(dir);
  writeConfig(dir, { logLevel: 'warn' });
  const loaded = loadConfig({}, { XDG_CONFIG_HOME: xdg });
  assert.equal(loaded.dataDir, dir);
  assert.equal(loaded.config.logLevel, 'warn');
  assert.equal(loaded.origins.logLevel, 'config file');
  assert.equal(loaded.origins.dataDir, 'default');
});

test('precedence is flags > environment > config file > defaults, with origins', (t) => {
  const dir = dataDir(t);
  writeConfig(dir, { workers: 2, mode: 'client', drainTimeoutMs: '10s', logFile: '/from/file.log' });
  const env = { OLLANA_HOME: dir, OLLANA_WORKERS: '3', OLLANA_MODE: 'server' };

  const all = loadConfig({ workers: '4' }, env);
  assert.equal(all.config.workers, 4);
  assert.equal(all.origins.workers, 'flag');
  assert.equal(all.config.mode, 'server');
  assert.equal(all.origins.mode, 'environment');
  assert.equal(all.config.drainTimeoutMs, 10_000);
  assert.equal(all.origins.drainTimeoutMs, 'config file');
  assert.equal(all.config.logFile, '/from/file.log');
  assert.equal(all.origins.logFile, 'config file');
  assert.equal(all.config.probeTimeoutMs, DEFAULTS.probeTimeoutMs);
  assert.equal(all.origins.probeTimeoutMs, 'default');
  assert.equal(all.file, join(dir, CONFIG_FILE_NAME));

  const noFlag = loadConfig({}, env);
  assert.equal(noFlag.config.workers, 3);
  assert.equal(noFlag.origins.workers, 'environment');

  const fileOnly = loadConfig({}, { OLLANA_HOME: dir });
  assert.equal(fileOnly.config.workers, 2);
  assert.equal(fileOnly.origins.workers, 'config file');
  assert.equal(fileOnly.config.mode, 'client');
});

test('an empty environment variable is ignored', (t) => {
  const dir = dataDir(t);
  writeConfig(dir, { workers: 2 });
  const loaded = loadConfig({}, { OLLANA_HOME: dir, OLLANA_WORKERS: '' });
  assert.equal(loaded.config.workers, 2);
  assert.equal(loaded.origins.workers, 'config file');
});

test('OLLANA_LOG beats LOG_LEVEL, and LOG_LEVEL alone is used', (t) => {
  const dir = dataDir(t);
  const both = loadConfig({}, { OLLANA_HOME: dir, OLLANA_LOG: 'debug', LOG_LEVEL: 'error' });
  assert.equal(both.config.logLevel, 'debug');
  assert.equal(both.origins.logLevel, 'environment');
  assert.equal(loadConfig({}, { OLLANA_HOME: dir, LOG_LEVEL: 'error' }).config.logLevel, 'error');
  assert.equal(loadConfig({}, { OLLANA_HOME: dir, OLLANA_LOG: '', LOG_LEVEL: 'warn' }).config.logLevel, 'warn');
  assert.equal(loadConfig({}, { OLLANA_HOME: dir, OLLANA_LOG: ' TRACE ' }).config.logLevel, 'trace');
  assert.equal(loadConfig({ logLevel: 'warn' }, { OLLANA_HOME: dir, OLLANA_LOG: 'debug' }).config.logLevel, 'warn');
});

test('OLLANA_OLLAMA_URL beats OLLAMA_HOST; the value is kept as given', (t) => {
  const dir = dataDir(t);
  const both = loadConfig({}, { OLLANA_HOME: dir, OLLANA_OLLAMA_URL: 'http://10.0.0.1:1', OLLAMA_HOST: '10.0.0.2' });
  assert.equal(both.config.ollamaUrl, 'http://10.0.0.1:1');
  assert.equal(both.origins.ollamaUrl, 'environment');
  assert.equal(loadConfig({}, { OLLANA_HOME: dir, OLLAMA_HOST: '0.0.0.0' }).config.ollamaUrl, '0.0.0.0');
  assert.equal(
    loadConfig({ ollamaUrl: ':9999' }, { OLLANA_HOME: dir, OLLAMA_HOST: '10.0.0.2' }).config.ollamaUrl,
    ':9999',
  );
});

test('origins: OLLANA_ORIGINS beats OLLAMA_ORIGINS; a comma list is split and trimmed', (t) => {
  const dir = dataDir(t);
  const env = { OLLANA_HOME: dir, OLLANA_ORIGINS: ' chrome-extension://*, https://a.example ,,', OLLAMA_ORIGINS: 'x' };
  assert.deepEqual(loadConfig({}, env).config.origins, ['chrome-extension://*', 'https://a.example']);
  assert.deepEqual(loadConfig({}, { OLLANA_HOME: dir, OLLAMA_ORIGINS: 'x,y' }).config.origins, ['x', 'y']);
  writeConfig(dir, { origins: ['app://one'] });
  const file = loadConfig({}, { OLLANA_HOME: dir });
  assert.deepEqual(file.config.origins, ['app://one']);
  assert.equal(file.origins.origins, 'config file');
});

const DURATIONS: readonly (readonly [string | number, number])[] = [
  ['30s', 30_000],
  ['2m', 120_000],
  ['1500', 1_500],
  ['250ms', 250],
  ['1h', 3_600_000],
  ['1.5s', 1_500],
  [' 2m ', 120_000],
  ['0', 0],
  [1500, 1_500],
  [0, 0],
];
for (const [raw, ms] of DURATIONS) {
  test(`duration ${JSON.stringify(raw)} parses to ${ms} ms`, (t) => {
    const dir = dataDir(t);
    assert.equal(loadConfig({ drainTimeoutMs: raw }, { OLLANA_HOME: dir }).config.drainTimeoutMs, ms);
    assert.equal(loadConfig({}, { OLLANA_HOME: dir, OLLANA_BODY_TIMEOUT: String(raw) }).config.bodyTimeoutMs, ms);
    writeConfig(dir, { headersTimeoutMs: raw });
    assert.equal(loadConfig({}, { OLLANA_HOME: dir }).config.headersTimeoutMs, ms);
  });
}

for (const raw of ['-1', '5 min', '1d', 's', '', '1.5.2s', -5, 1.5]) {
  test(`duration ${JSON.stringify(raw)} is refused naming the flag`, (t) => {
    const dir = dataDir(t);
    const err = catchOllana(() => loadConfig({ drainTimeoutMs: raw }, { OLLANA_HOME: dir }), 'OLN_BAD_FLAG');
    assert.equal(
      err.message,
      '--drain-timeout (flag) must be a duration: milliseconds, or a number with ms, s, m ' +
        `or h (30s, 2m); got ${JSON.stringify(raw)}`,
    );
  });
}

test('listen forms are accepted and kept as given', (t) => {
  const dir = dataDir(t);
  for (const listen of [':11435', '0.0.0.0:11435', '127.0.0.1:0', '[::1]:11434', 'localhost:8080', 'my-host.lan:1']) {
    const loaded = loadConfig({ listen }, { OLLANA_HOME: dir });
    assert.equal(loaded.config.listen, listen);
    assert.equal(loaded.origins.listen, 'flag');
  }
  assert.equal(loadConfig({}, { OLLANA_HOME: dir, OLLANA_LISTEN: ':1' }).config.listen, ':1');
});

for (const listen of ['localhost', 'host:70000', '[::1]', 'a b:1', '1.2.3.4:', 'http://h:1']) {
  test(`listen ${JSON.stringify(listen)} is refused`, (t) => {
    const dir = dataDir(t);
    const err = catchOllana(() => loadConfig({ listen }, { OLLANA_HOME: dir }), 'OLN_BAD_FLAG');
    assert.equal(
      err.message,
      '--listen (flag) must be host:port, e.g. 0.0.0.0:11435, [::1]:11434 or :11435 ' +
        `(port 0 to 65535); got ${JSON.stringify(listen)}`,
    );
  });
}

test('parseListen splits host and port', () => {
  assert.deepEqual(parseListen(':11435'), { host: '0.0.0.0', port: 11435 });
  assert.deepEqual(parseListen('0.0.0.0:11435'), { host: '0.0.0.0', port: 11435 });
  assert.deepEqual(parseListen('127.0.0.1:0'), { host: '127.0.0.1', port: 0 });
  assert.deepEqual(parseListen('[::1]:11434'), { host: '::1', port: 11434 });
  assert.deepEqual(parseListen(' localhost:80 '), { host: 'localhost', port: 80 });
  assert.equal(parseListen('h:65536'), null);
  assert.equal(parseListen('localhost'), null);
});

test('parseListen reads a bare port as a port on every interface', () => {
  assert.deepEqual(parseListen('11435'), { host: '0.0.0.0', port: 11435 });
});

test('parseListen refuses a host without a port', (t) => {
  assert.equal(parseListen('1.2.3.4'), null);
  assert.equal(parseListen('localhost8080'), null);
  // ...so loadConfig lets `--listen 1.2.3.4` through instead of saying a port is missing.
  catchOllana(() => loadConfig({ listen: '1.2.3.4' }, { OLLANA_HOME: dataDir(t) }), 'OLN_BAD_FLAG');
});

test('booleans, modes and paths', (t) => {
  const dir = dataDir(t);
  assert.equal(loadConfig({ daemon: true }, { OLLANA_HOME: dir }).config.daemon, true);
  assert.equal(loadConfig({ daemon: 'yes' }, { OLLANA_HOME: dir }).config.daemon, true);
  assert.equal(loadConfig({ daemon: 'off' }, { OLLANA_HOME: dir }).config.daemon, false);
  assert.equal(loadConfig({ mode: 'client' }, { OLLANA_HOME: dir }).config.mode, 'client');
  assert.equal(loadConfig({}, { OLLANA_HOME: dir, OLLANA_PID_FILE: ' /run/x.pid ' }).config.pidFile, '/run/x.pid');
  const err = catchOllana(() => loadConfig({ mode: 'master' }, { OLLANA_HOME: dir }), 'OLN_BAD_FLAG');
  assert.equal(err.message, '--mode (flag) must be one of auto, server, client; got "master"');
  const daemon = catchOllana(() => loadConfig({ daemon: 'maybe' }, { OLLANA_HOME: dir }), 'OLN_BAD_FLAG');
  assert.equal(daemon.message, '--daemon (flag) must be true or false; got "maybe"');
  const path = catchOllana(() => loadConfig({ logFile: '  ' }, { OLLANA_HOME: dir }), 'OLN_BAD_FLAG');
  assert.equal(path.message, '--log-file (flag) must be a file or directory path; got "  "');
});

test('bad flag value: --workers abc is OLN_BAD_FLAG naming the flag and the expected form', (t) => {
  const dir = dataDir(t);
  const err = catchOllana(() => loadConfig({ workers: 'abc' }, { OLLANA_HOME: dir }), 'OLN_BAD_FLAG');
  assert.equal(err.message, '--workers (flag) must be a whole number from 1 to 1024; got "abc"');
  assert.deepEqual(err.details, { key: 'workers', origin: 'flag' });
  assert.equal(err.exitCode, 2);
});

for (const workers of ['0', '1025', '2.5', '-1', '']) {
  test(`--workers ${JSON.stringify(workers)} is refused`, (t) => {
    const dir = dataDir(t);
    const err = catchOllana(() => loadConfig({ workers }, { OLLANA_HOME: dir }), 'OLN_BAD_FLAG');
    assert.equal(err.message, `--workers (flag) must be a whole number from 1 to 1024; got ${JSON.stringify(workers)}`);
  });
}

test('--workers accepts the bounds 1 and 1024', (t) => {
  const dir = dataDir(t);
  assert.equal(loadConfig({ workers: '1' }, { OLLANA_HOME: dir }).config.workers, 1);
  assert.equal(loadConfig({ workers: '1024' }, { OLLANA_HOME: dir }).config.workers, 1024);
});

test('--max-connections takes 0 (no limit) to 1000000; --request-headers-timeout a duration', (t) => {
  const dir = dataDir(t);
  assert.equal(loadConfig({ maxConnections: '0' }, { OLLANA_HOME: dir }).config.maxConnections, 0);
  assert.equal(
    loadConfig({}, { OLLANA_HOME: dir, OLLANA_MAX_CONNECTIONS: '1000000' }).config.maxConnections,
    1_000_000,
  );
  for (const bad of ['1000001', '-1', '2.5', 'lots']) {
    const err = catchOllana(() => loadConfig({ maxConnections: bad }, { OLLANA_HOME: dir }), 'OLN_BAD_FLAG');
    assert.equal(
      err.message,
      `--max-connections (flag) must be a whole number from 0 (no limit) to 1000000; got ${JSON.stringify(bad)}`,
    );
  }
  assert.equal(
    loadConfig({ requestHeadersTimeoutMs: '3s' }, { OLLANA_HOME: dir }).config.requestHeadersTimeoutMs,
    3_000,
  );
  const env = catchOllana(
    () => loadConfig({}, { OLLANA_HOME: dir, OLLANA_REQUEST_HEADERS_TIMEOUT: 'soon' }),
    'OLN_BAD_CONFIG',
  );
  assert.match(env.message, /^OLLANA_REQUEST_HEADERS_TIMEOUT \(environment\) must be a duration/);
});

test('bad environment value is OLN_BAD_CONFIG naming the variable that was read', (t) => {
  const dir = dataDir(t);
  const workers = catchOllana(() => loadConfig({}, { OLLANA_HOME: dir, OLLANA_WORKERS: 'many' }), 'OLN_BAD_CONFIG');
  assert.equal(workers.message, 'OLLANA_WORKERS (environment) must be a whole number from 1 to 1024; got "many"');
  assert.deepEqual(workers.details, { key: 'workers', origin: 'environment' });
  const level = catchOllana(() => loadConfig({}, { OLLANA_HOME: dir, LOG_LEVEL: 'loud' }), 'OLN_BAD_CONFIG');
  assert.equal(level.message, 'LOG_LEVEL (environment) must be one of error, warn, info, debug, trace; got "loud"');
});

test('a bad environment value is reported even when a flag overrides it', (t) => {
  // Every layer is validated, so a typo in the environment is reported even when a flag wins.
  const dir = dataDir(t);
  catchOllana(() => loadConfig({ workers: '2' }, { OLLANA_HOME: dir, OLLANA_WORKERS: 'many' }), 'OLN_BAD_CONFIG');
});

test('bad value in the config file names the key and the file layer', (t) => {
  const dir = dataDir(t);
  writeConfig(dir, { workers: 'lots' });
  const err = catchOllana(() => loadConfig({}, { OLLANA_HOME: dir }), 'OLN_BAD_CONFIG');
  assert.equal(err.message, '"workers" (config file) must be a whole number from 1 to 1024; got "lots"');
  assert.deepEqual(err.details, { key: 'workers', origin: 'config file' });
});

test('an unknown key in the config file is OLN_BAD_CONFIG listing the settings', (t) => {
  const dir = dataDir(t);
  const file = writeConfig(dir, { workers: 2, colour: 'blue' });
  const err = catchOllana(() => loadConfig({}, { OLLANA_HOME: dir }), 'OLN_BAD_CONFIG');
  assert.equal(err.details.key, 'colour');
  const known = String(err.details.known).split(',');
  // every setting a config file may hold is named, and none it may not
  assert.ok(known.includes('workers') && known.includes('trustLan') && known.includes('origins'), String(known));
  assert.ok(!known.includes('dataDir') && !known.includes('daemon'), String(known));
  assert.equal(new Set(known).size, known.length);
  assert.ok(err.message.startsWith(file), 'the message names the file');
});

for (const key of ['dataDir', 'daemon'] as const satisfies readonly ConfigKey[]) {
  test(`"${key}" is not a config file setting`, (t) => {
    const dir = dataDir(t);
    const file = writeConfig(dir, { [key]: key === 'daemon' ? true : '/elsewhere' });
    const err = catchOllana(() => loadConfig({}, { OLLANA_HOME: dir }), 'OLN_BAD_CONFIG');
    assert.ok(err.message.startsWith(`${file}: unknown setting "${key}"; the settings are `), err.message);
  });
}

test('a config file that is not JSON is OLN_BAD_CONFIG naming the file', (t) => {
  const dir = dataDir(t);
  const file = writeConfig(dir, '{ workers: 2, }');
  const err = catchOllana(() => loadConfig({}, { OLLANA_HOME: dir }), 'OLN_BAD_CONFIG');
  assert.match(
    err.message,
    new RegExp(`^the config file ${escapeRe(file)} is not valid JSON \\(.+\\); fix it or move it away$`),
  );
  assert.ok(err.cause instanceof SyntaxError);
});

for (const [what, content] of [
  ['an array', '[{"workers":2}]'],
  ['null', 'null'],
  ['a number', '42'],
  ['a string', '"x"'],
] as const) {
  test(`a config file holding ${what} is OLN_BAD_CONFIG`, (t) => {
    const dir = dataDir(t);
    const file = writeConfig(dir, content);
    const err = catchOllana(() => loadConfig({}, { OLLANA_HOME: dir }), 'OLN_BAD_CONFIG');
    assert.equal(err.message, `the config file ${file} must hold a JSON object of settings`);
  });
}

test('an unreadable config file (a directory) is OLN_BAD_CONFIG naming it', (t) => {
  const dir = dataDir(t);
  const file = join(dir, CONFIG_FILE_NAME);
  mkdirSync(file);
  const err = catchOllana(() => loadConfig({}, { OLLANA_HOME: dir }), 'OLN_BAD_CONFIG');
  assert.ok(err.message.startsWith(`cannot read the config file ${file}: `), err.message);
});

test('an empty --data-dir is OLN_BAD_FLAG', (t) => {
  const err = catchOllana(() => loadConfig({ dataDir: '' }, { OLLANA_HOME: dataDir(t) }), 'OLN_BAD_FLAG');
  assert.equal(err.message, '--data-dir (flag) must be a file or directory path; got ""');
});

test('a bad Ollama address via flag is OLN_BAD_OLLAMA_URL naming the flag and the value', (t) => {
  const dir = dataDir(t);
  const err = catchOllana(() => loadConfig({ ollamaUrl: 'ftp://x' }, { OLLANA_HOME: dir }), 'OLN_BAD_OLLAMA_URL');
  assert.ok(err.message.startsWith('--ollama-url (flag): '), err.message);
  assert.match(
    err.message,
    /"ftp:\/\/x" uses the scheme "ftp"; Ollama speaks http or https, e\.g\. http:\/\/127\.0\.0\.1:11434$/,
  );
  assert.equal(err.exitCode, 3);
});

test('a bad Ollama address via environment is OLN_BAD_OLLAMA_URL naming the variable', (t) => {
  const dir = dataDir(t);
  const err = catchOllana(
    () => loadConfig({}, { OLLANA_HOME: dir, OLLANA_OLLAMA_URL: 'exa mple' }),
    'OLN_BAD_OLLAMA_URL',
  );
  assert.ok(err.message.startsWith('OLLANA_OLLAMA_URL (environment): '), err.message);
  assert.match(err.message, /"exa mple" is not a host name or IP address/);
});

test('a bad Ollama address names only the layer it came from', (t) => {
  const dir = dataDir(t);
  const err = catchOllana(() => loadConfig({ ollamaUrl: 'ftp://x' }, { OLLANA_HOME: dir }), 'OLN_BAD_OLLAMA_URL');
  assert.doesNotMatch(err.message, /OLLAMA_HOST/);
});
