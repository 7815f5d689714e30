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
  const r = parseCli(
    [
      'serve',
      '--workers',
      '4',
      '--listen',
      ':1234',
      '--ollama-url=http://h:1',
      '--drain-timeout',
      '5s',
      '--origins',
      'a,b',
      '--upstream-keep-alive',
      '1m',
      '--log-level',
      'DEBUG',
    ],
    VERSION,
  );
  assert.deepEqual(r, {
    command: 'serve',
    flags: {
      workers: '4',
      listen: ':1234',
      ollamaUrl: 'http://h:1',
      drainTimeoutMs: '5s',
      origins: 'a,b',
      upstreamKeepAliveMs: '1m',
      logLevel: 'DEBUG',
    },
  });
});

test('every serve flag maps to its config key', () => {
  for (const spec of OPTION_SPECS) {
    const argv = spec.kind === 'bool' ? ['serve', spec.flag] : ['serve', spec.flag, 'v'];
    assert.deepEqual(
      parseCli(argv, VERSION),
      { command: 'serve', flags: { [spec.key]: spec.kind === 'bool' ? true : 'v' } },
      spec.flag,
    );
  }
});

test('-d and --daemon set daemon', () => {
  assert.deepEqual(parseCli(['serve', '-d'], VERSION), { command: 'serve', flags: { daemon: true } });
  assert.deepEqual(parseCli(['serve', '--daemon', '--workers', '2'], VERSION), {
    command: 'serve',
    flags: { daemon: true, workers: '2' },
  });
});

test('a repeated flag keeps the last value', () => {
  assert.deepEqual(parseCli(['serve', '--workers', '2', '--workers', '3'], VERSION), {
    command: 'serve',
    flags: { workers: '3' },
  });
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
  assert.deepEqual(parseCli(['stop', '--pid-file', '/run/o.pid'], VERSION), {
    command: 'stop',
    flags: { pidFile: '/run/o.pid' },
    timeoutMs: null,
  });
});

test('status --json --url http://x', () => {
  assert.deepEqual(parseCli(['status', '--json', '--url', 'http://x'], VERSION), {
    command: 'status',
    flags: {},
    url: 'http://x',
    json: true,
  });
  assert.deepEqual(parseCli(['status', '--listen', ':1', '--data-dir', '/d'], VERSION), {
    command: 'status',
    flags: { listen: ':1', dataDir: '/d' },
    url: null,
    json: false,
  });
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

test('issue #14: an unknown command is OLN_USAGE with --help too, at every level and through `help`', () => {
  for (const argv of [
    ['frobnicate', '--help'],
    ['frobnicate', '-h'],
    ['--help', 'frobnicate'],
    ['help', 'frobnicate'],
    ['-v', 'frobnicate'],
  ]) {
    const err = usageError(argv, 'OLN_USAGE');
    assert.equal(err.message, "unknown command 'frobnicate'; see `ollana --help`", argv.join(' '));
  }
  for (const argv of [
    ['device', 'forget', '--help'],
    ['device', 'help', 'forget'],
    ['help', 'device', 'forget'],
  ]) {
    assert.match(usageError(argv, 'OLN_USAGE').message, /^unknown command 'forget'/, argv.join(' '));
  }
  // Known commands keep their help, whatever follows them.
  assert.equal(printed(['help', 'serve']), printed(['serve', '--help']));
  assert.equal(printed(['help', 'device']), printed(['device', '--help']));
  assert.equal(printed(['serve', '--listen', 'frobnicate', '--help']), printed(['serve', '--help']));
  assert.equal(printed(['device', 'allow', 'SOMEID', '--help']), printed(['device', 'allow', '--help']));
  assert.equal(printed(['help']), printed(['--help']));
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

test('device subcommands: verb, id, --name, --json and --data-dir', () => {
  assert.deepEqual(parseCli(['device', 'show'], VERSION), {
    command: 'device',
    verb: 'show',
    flags: {},
    id: null,
    name: null,
    weight: null,
    json: false,
  });
  assert.deepEqual(parseCli(['device', 'list', '--json', '--data-dir', '/tmp/d'], VERSION), {
    command: 'device',
    verb: 'list',
    flags: { dataDir: '/tmp/d' },
    id: null,
    name: null,
    weight: null,
    json: true,
  });
  assert.deepEqual(parseCli(['device', 'allow', 'abcd-efg', '--name', ' gpu box '], VERSION), {
    command: 'device',
    verb: 'allow',
    flags: {},
    id: 'abcd-efg',
    name: 'gpu box',
    weight: null,
    json: false,
  });
  assert.deepEqual(parseCli(['device', 'disable', 'ABCD', '--json'], VERSION), {
    command: 'device',
    verb: 'disable',
    flags: {},
    id: 'ABCD',
    name: null,
    weight: null,
    json: true,
  });
  assert.equal((parseCli(['device', 'pending'], VERSION) as { verb: string }).verb, 'pending');
  assert.equal((parseCli(['device', 'allow', 'ABCD', '--weight', '3'], VERSION) as { weight: number }).weight, 3);
  for (const bad of ['0', '101', '1.5', 'two', '-1']) {
    assert.throws(
      () => parseCli(['device', 'allow', 'ABCD', '--weight', bad], VERSION),
      (err: { code?: string }) => err.code === 'OLN_BAD_FLAG',
      bad,
    );
  }
});

test('device --help lists every subcommand; a bare `device` prints the same', () => {
  const help = flat(printed(['device', '--help']));
  for (const verb of ['show', 'list', 'pending', 'allow [options] <id>', 'disable [options] <id>'])
    assert.ok(help.includes(verb), verb);
  assert.match(help, /Pairing: run `ollana device show` on one machine, then `ollana device allow <ID>` on the other/);
  assert.equal(printed(['device']), printed(['device', '--help']));
  assert.match(flat(printed(['device', 'allow', '--help'])), /--data-dir <value>.*--name <name>.*--json/);
  assert.match(flat(printed(['--help'])), /device this machine's device id/);
});

test('device usage errors: missing id, extra argument, unknown verb, bad --name', () => {
  assert.match(usageError(['device', 'allow'], 'OLN_USAGE').message, /missing required argument 'id'/);
  assert.match(usageError(['device', 'disable', 'ABCD', 'EFGH'], 'OLN_USAGE').message, /too many arguments/);
  assert.match(usageError(['device', 'forget', 'ABCD'], 'OLN_USAGE').message, /unknown command 'forget'/);
  assert.match(usageError(['device', 'show', 'ABCD'], 'OLN_USAGE').message, /too many arguments/);
  assert.throws(
    () => parseCli(['device', 'allow', 'ABCD', '--name', 'a\u001b[31m'], VERSION),
    (err: unknown) =>
      err instanceof OllanaError &&
      err.code === 'OLN_BAD_FLAG' &&
      /--name \(flag\) must be 1 to 64 printable/.test(err.message),
  );
  assert.throws(
    () => parseCli(['device', 'allow', 'ABCD', '--name', '  '], VERSION),
    (err: unknown) => err instanceof OllanaError && err.code === 'OLN_BAD_FLAG',
  );
});
