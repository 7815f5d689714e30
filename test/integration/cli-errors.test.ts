/**
 * The errors users meet, through the real CLI: each has a message that names the port, flag or file
 * and says what to do, and a distinct exit status.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { OPTION_SPECS } from '../../src/config/defaults.ts';
import { startEmulator } from '../../testkit/ollama-emulator.ts';
import { freePort, removeHome, runCli, tempHome, startServerNode } from '../helpers/ollana-process.ts';

const homes: string[] = [];
after(() => {
  for (const h of homes) removeHome(h);
});
function home(): string {
  const h = tempHome('ollana-cli-');
  homes.push(h);
  return h;
}

test('--help, serve --help and --version', async () => {
  const top = await runCli(['--help'], { home: home() });
  assert.equal(top.code, 0);
  assert.match(top.stdout, /serve/);
  assert.match(top.stdout, /stop/);
  const serve = await runCli(['serve', '--help'], { home: home() });
  assert.equal(serve.code, 0);
  for (const spec of OPTION_SPECS) assert.ok(serve.stdout.includes(spec.flag), `serve --help lists ${spec.flag}`);
  assert.match(serve.stdout, /--workers <value>[\s\S]*default:/);
  const version = await runCli(['--version'], { home: home() });
  assert.equal(version.code, 0);
  assert.match(version.stdout.trim(), /^\d+\.\d+\.\d+$/);
});

test('issue #14: an unknown command with --help is an unknown command (exit 2), as without it', async () => {
  for (const args of [['frobnicate'], ['frobnicate', '--help']]) {
    const r = await runCli(args, { home: home() });
    assert.equal(r.code, 2, args.join(' '));
    assert.equal(r.stdout, '');
    assert.equal(r.stderr, "ollana: unknown command 'frobnicate'; see `ollana --help` [OLN_USAGE]\n");
  }
});

test('port in use: exit 4, names the port and the flag', async () => {
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen({ host: '127.0.0.1', port: 0, exclusive: true }, resolve));
  const port = (blocker.address() as { port: number }).port;
  try {
    const r = await runCli(
      [
        'serve',
        '--mode',
        'server',
        '--insecure-http',
        '--listen',
        `127.0.0.1:${port}`,
        '--ollama-url',
        'http://127.0.0.1:1',
      ],
      { home: home() },
    );
    assert.equal(r.code, 4);
    assert.match(
      r.stderr,
      new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use.*--listen.*\\[OLN_PORT_IN_USE\\]`),
    );
  } finally {
    blocker.close();
  }
});

test('two ollana processes on one port: the second says another ollana holds it', async () => {
  const first = await startServerNode('http://127.0.0.1:1', { workers: 1 });
  try {
    const r = await runCli(
      [
        'serve',
        '--mode',
        'server',
        '--insecure-http',
        '--listen',
        `127.0.0.1:${first.port}`,
        '--ollama-url',
        'http://127.0.0.1:1',
      ],
      { home: home() },
    );
    assert.equal(r.code, 4);
    assert.match(
      r.stderr,
      new RegExp(
        `another ollana already serves on 127\\.0\\.0\\.1:${first.port}.*--listen and --pid-file \\[OLN_PORT_IN_USE\\]`,
      ),
    );
  } finally {
    await first.stop();
    removeHome(first.home);
  }
});

test('a client node refuses a port where an Ollama already listens', async () => {
  const emu = await startEmulator();
  try {
    const r = await runCli(['serve', '--mode', 'client', '--listen', `127.0.0.1:${emu.port}`], { home: home() });
    assert.equal(r.code, 4);
    assert.match(r.stderr, /an Ollama already listens on 127\.0\.0\.1:\d+.*\[OLN_OLLAMA_ON_PORT\]/);
  } finally {
    await emu.close();
  }
});

test('bad flag values: exit 2, name the flag and the expected form', async () => {
  const workers = await runCli(['serve', '--workers', 'lots'], { home: home() });
  assert.equal(workers.code, 2);
  assert.match(workers.stderr, /--workers \(flag\) must be a whole number from 1 to 1024; got "lots" \[OLN_BAD_FLAG\]/);
  const listen = await runCli(['serve', '--listen', 'nowhere'], { home: home() });
  assert.equal(listen.code, 2);
  assert.match(listen.stderr, /--listen \(flag\) must be host:port/);
  const unknown = await runCli(['serve', '--wrokers', '2'], { home: home() });
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /unknown option '--wrokers'.*\[OLN_USAGE\]/);
  const env = await runCli(['serve'], { home: home(), env: { OLLANA_WORKERS: '0' } });
  assert.equal(env.code, 3);
  assert.match(env.stderr, /OLLANA_WORKERS \(environment\) must be a whole number/);
  // Checked before the pid file is looked at: the flag is wrong whether or not a node runs.
  const timeout = await runCli(['stop', '--timeout', 'soon'], { home: home() });
  assert.equal(timeout.code, 2);
  assert.match(timeout.stderr, /--timeout \(flag\) must be a duration.*got "soon" \[OLN_BAD_FLAG\]/);
});

test('malformed Ollama URL: exit 3', async () => {
  const r = await runCli(['serve', '--ollama-url', 'ftp://gpu-box'], { home: home() });
  assert.equal(r.code, 3);
  assert.match(r.stderr, /--ollama-url \(flag\): .*"ftp".*http:\/\/127\.0\.0\.1:11434 \[OLN_BAD_OLLAMA_URL\]/);
});

test('unwritable data directory: exit 5, names it and what to do', async () => {
  const h = home();
  const file = join(h, 'not-a-dir');
  writeFileSync(file, 'x');
  const r = await runCli(['serve', '--data-dir', join(file, 'ollana')], { home: h });
  assert.equal(r.code, 5);
  assert.match(
    r.stderr,
    /cannot use the data directory .*not-a-dir\/ollana.*--data-dir or OLLANA_HOME \[OLN_DIR_UNWRITABLE\]/,
  );
});

// Mounting the tmpfs needs root: elsewhere the test is reported skipped with the reason (never in CI,
// which runs as root: there a failure to mount fails it).
const mountSkip = process.getuid?.() !== 0 && process.env.CI !== 'true' ? 'mounting a tmpfs needs root' : undefined;

test('a full disk for the pid file: exit 5, nothing left half-written', {
  timeout: 30_000,
  skip: mountSkip,
}, async (t) => {
  // A real full file system: a 16 KiB tmpfs filled to the brim (tests run as root, as CI does).
  const h = home();
  const mnt = join(h, 'full');
  mkdirSync(mnt);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16k', 'tmpfs', mnt]);
  t.after(() => {
    execFileSync('umount', ['-l', mnt]);
  });
  try {
    execFileSync('dd', ['if=/dev/zero', `of=${join(mnt, 'fill')}`, 'bs=4k', 'count=64'], { stdio: 'ignore' });
  } catch {
    // dd stops with ENOSPC once the file system is full: that is the point.
  }
  const r = await runCli(
    [
      'serve',
      '--mode',
      'server',
      '--insecure-http',
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--ollama-url',
      'http://127.0.0.1:1',
      '--pid-file',
      join(mnt, 'ollana.pid'),
    ],
    { home: h },
  );
  assert.equal(r.code, 5);
  assert.match(
    r.stderr,
    /cannot write the pid file .*full\/ollana\.pid: the disk is full; .*--pid-file \[OLN_DIR_UNWRITABLE\]/,
  );
});
