import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCli, type CliCommand } from '../../src/cli/args.ts';
import { DEFAULTS, OPTION_SPECS } from '../../src/config/defaults.ts';
import { OllanaError } from '../../src/errors.ts';

const VERSION = '9.8.7-test';

function printed(argv: readonly string[]): string {
  const r = parseCli(argv, VERSION);
  assert.equal(r.command, 'print');
  return (r as Extract<CliCommand, { command: 'print' }>).text;
}

/** Help text with its line wrapping undone, so a phrase split across lines still matches. */
function flat(text: string): string {
  return text.replace(/\s+/g, ' ');
}

function expectedDefault(key: (typeof OPTION_SPECS)[number]['key'], defaultText: string | undefined): string {
  if (defaultText !== undefined) return defaultText;
  const value = DEFAULTS[key];
  if (Array.isArray(value)) return value.length === 0 ? 'none' : value.join(',');
  return value === null ? 'none' : String(value);
}

function usageError(argv: readonly string[], code: OllanaError['code']): OllanaError {
  let caught: unknown;
  try {
    parseCli(argv, VERSION);
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof OllanaError, `expected an OllanaError for ${argv.join(' ')}, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  assert.ok(caught.message.endsWith('; see `ollana --help`'), caught.message);
  return caught;
}

test('serve with no flags returns no flags at all', () => {
  assert.deepEqual(parseCli(['serve'], VERSION), { command: 'serve', flags: {} });
});

test('serve returns raw string values only for the flags given', () => {
  const r = parseCli(['serve', '--workers', '4', '--listen', ':1234', '--ollama-url=http://h:1', '--drain-timeout', '5s',
    '--origins', 'a,b', '--upstream-keep-alive', '1m', '--log-level', 'DEBUG'], VERSION);
  assert.deepEqual(r, {
    command: 'serve',
    flags: {
      workers: '4', listen: ':1234', ollamaUrl: 'http://h:1', drainTimeoutMs: '5s', origins: 'a,b',
      upstreamKeepAliveMs: '1m', logLevel: 'DEBUG',
    },
  });
});

test('every serve flag maps to its config key', () => {
  for (const spec of OPTION_SPECS) {
    const argv = spec.kind === 'bool' ? ['serve', spec.flag] : ['serve', spec.flag, 'v'];
    assert.deepEqual(parseCli(argv, VERSION), { command: 'serve', flags: { [spec.key]: spec.kind === 'bool' ? true : 'v' } },
      spec.flag);
  }
});

test('-d and --daemon set daemon', () => {
  assert.deepEqual(parseCli(['serve', '-d'], VERSION), { command: 'serve', flags: { daemon: true } });
  assert.deepEqual(parseCli(['serve', '--daemon', '--workers', '2'], VERSION),
    { command: 'serve', flags: { daemon: true, workers: '2' } });
});

test('a repeated flag keeps the last value', () => {
  assert.deepEqual(parseCli(['serve', '--workers', '2', '--workers', '3'], VERSION), { command: 'serve', flags: { workers: '3' } });
});

test('serve --help lists every flag with its default and environment variables', () => {
  const text = printed(['serve', '--help']);
  const oneLine = flat(text);
  assert.match(text, /^Usage: ollana serve \[options\]/);
  for (const spec of OPTION_SPECS) {
    const flagText = `${spec.short ? `${spec.short}, ` : ''}${spec.flag}${spec.kind === 'bool' ? '' : ' <value>'}`;
    assert.ok(oneLine.includes(` ${flagText} `), `help lacks ${flagText}`);
    const env = spec.env.length > 0 ? `; env ${spec.env.join(', ')}` : '';
    const tail = flat(`(default: ${expectedDefault(spec.key, spec.defaultText)}${env})`);
    assert.ok(oneLine.includes(tail), `help lacks "${tail}" for ${spec.flag}`);
  }
});

test('help serve prints the same as serve --help', () => {
  assert.equal(printed(['help', 'serve']), printed(['serve', '--help']));
});

test('--help prints the overview of commands, pointing at serve --help', () => {
  for (const argv of [['--help'], ['-h'], []]) {
    const text = flat(printed(argv));
    assert.match(text, /^Usage: ollana \[options\] \[command\]/, argv.join(' '));
    for (const cmd of ['serve [options]', 'stop [options]', 'status [options]', '-v, --version']) {
      assert.ok(text.includes(cmd), `${argv.join(' ') || '(no args)'} help lacks ${cmd}`);
    }
    assert.ok(text.includes('Each command has its own help: ollana serve --help'));
  }
});

test('stop --help and status --help list their own options', () => {
  const stop = flat(printed(['stop', '--help']));
  for (const f of ['--pid-file <value>', '--data-dir <value>', '--timeout <value>']) assert.ok(stop.includes(f), f);
  assert.ok(!stop.includes('--workers'));
  const status = flat(printed(['status', '--help']));
  for (const f of ['--listen <value>', '--data-dir <value>', '--url <url>', '--json']) assert.ok(status.includes(f), f);
});

test('--version and -v print the version', () => {
  assert.deepEqual(parseCli(['--version'], VERSION), { command: 'print', text: `${VERSION}\n` });
  assert.deepEqual(parseCli(['-v'], VERSION), { command: 'print', text: `${VERSION}\n` });
});

test('stop --timeout 5s', () => {
  assert.deepEqual(parseCli(['stop', '--timeout', '5s'], VERSION), { command: 'stop', flags: {}, timeoutMs: '5s' });
  assert.deepEqual(parseCli(['stop', '--pid-file', '/run/o.pid'], VERSION),
    { command: 'stop', flags: { pidFile: '/run/o.pid' }, timeoutMs: null });
});

test('status --json --url http://x', () => {
  assert.deepEqual(parseCli(['status', '--json', '--url', 'http://x'], VERSION),
    { command: 'status', flags: {}, url: 'http://x', json: true });
  assert.deepEqual(parseCli(['status', '--listen', ':1', '--data-dir', '/d'], VERSION),
    { command: 'status', flags: { listen: ':1', dataDir: '/d' }, url: null, json: false });
});

test('an unknown flag is OLN_USAGE naming it', () => {
  const err = usageError(['serve', '--bogus'], 'OLN_USAGE');
  assert.equal(err.message, "unknown option '--bogus'; see `ollana --help`");
  assert.equal(err.exitCode, 2);
  usageError(['stop', '--workers', '2'], 'OLN_USAGE'); // a serve flag is not a stop flag
});

test('an unknown command is OLN_USAGE naming it', () => {
  const err = usageError(['frobnicate'], 'OLN_USAGE');
  assert.equal(err.message, "unknown command 'frobnicate'; see `ollana --help`");
});

test('a stray argument is OLN_USAGE', () => {
  const err = usageError(['serve', 'extra'], 'OLN_USAGE');
  assert.match(err.message, /too many arguments for 'serve'/);
});

test('a flag without its value is OLN_BAD_FLAG', () => {
  const err = usageError(['serve', '--workers'], 'OLN_BAD_FLAG');
  assert.equal(err.message, "option '--workers <value>' argument missing; see `ollana --help`");
  usageError(['stop', '--timeout'], 'OLN_BAD_FLAG');
});

test('parseCli has no side effects on its input', () => {
  const argv = Object.freeze(['serve', '--workers', '2']);
  parseCli(argv, VERSION);
  assert.deepEqual(argv, ['serve', '--workers', '2']);
});
