/**
 * How ollana starts: bin/ollana (Linux, macOS) replaces itself with Node 24, bin/ollana.mjs runs the
 * build in dist/ when it is current and the TypeScript sources otherwise, and hands over to Node 24
 * in the same process where it can (Node 24 itself; process.execve) and through a child process
 * where it cannot (Windows; an older Node without execve). Driven through copies of the real bin/
 * files in a scratch tree whose two entry points report which one ran, in which process and Node.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type SpawnOptions } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  realpathSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { test, type TestContext } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { bundledNode, handOverMethod } from '../../bin/launcher.mjs';

const BIN = fileURLToPath(new URL('../../bin/', import.meta.url));
/** Node 24 as `npm ci` installs it (the npm package "node"). */
const NODE24 = realpathSync(fileURLToPath(new URL('../../node_modules/node/bin/node', import.meta.url)));
/** PATH without node_modules/.bin: `node` is the system's, as for someone who types the README's command. */
const SYSTEM_PATH = (process.env.PATH ?? '')
  .split(delimiter)
  .filter((d) => !/node_modules[\\/]\.bin$/.test(d) && !/node-gyp-bin$/.test(d))
  .join(delimiter);
const systemNode = spawnSync('node', ['-p', 'process.versions.node'], {
  env: { ...process.env, PATH: SYSTEM_PATH },
  encoding: 'utf8',
});
const SYSTEM_NODE_MAJOR = systemNode.status === 0 ? Number(systemNode.stdout.split('.')[0]) : null;

/**
 * The fake entry: as a module (runAndExit) or as the main script, it prints one JSON line saying
 * which entry ran, in which process and Node, with which arguments, writes to stderr, and exits 7.
 * With `wait-signals` it reports `ready`, counts SIGINTs (`sigint N`) and exits 10 + that count on
 * SIGTERM: a signal delivered twice shows. With `die` it kills itself with SIGTERM.
 */
const entry = (which: string): string => `
function run(argv) {
  if (argv[0] === 'die') process.kill(process.pid, 'SIGTERM');
  if (argv[0] === 'wait-signals') {
    let ints = 0;
    process.on('SIGINT', () => { ints++; process.stdout.write('sigint ' + ints + '\\n'); });
    process.on('SIGTERM', () => process.exit(10 + ints));
    setInterval(() => {}, 1000);
    process.stdout.write('ready\\n');
    return;
  }
  process.stdout.write(JSON.stringify({ which: '${which}', pid: process.pid, ppid: process.ppid, execPath: process.execPath, argv }) + '\\n');
  process.stderr.write('to stderr\\n');
  process.exitCode = 7;
}
export function runAndExit(argv) { run(argv); }
if (import.meta.main) run(process.argv.slice(2));
`;

interface Report {
  readonly which: string;
  readonly pid: number;
  readonly ppid: number;
  readonly execPath: string;
  readonly argv: readonly string[];
}

function scratch(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'ollana-launcher-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A checkout at `root`: bin/ copied, fake entries in src/ and dist/ (build current), and optionally Node 24 in node_modules. */
function checkout(root: string, opts: { node24: boolean }): string {
  mkdirSync(join(root, 'bin'), { recursive: true });
  for (const f of ['ollana', 'ollana.mjs', 'launcher.mjs']) copyFileSync(join(BIN, f), join(root, 'bin', f));
  writeFileSync(join(root, 'package.json'), '{"type":"module"}\n');
  mkdirSync(join(root, 'src', 'cli'), { recursive: true });
  writeFileSync(join(root, 'src', 'main.ts'), entry('sources'));
  writeFileSync(join(root, 'src', 'cli', 'args.ts'), 'export {};\n');
  mkdirSync(join(root, 'dist'));
  writeFileSync(join(root, 'dist', 'main.js'), entry('build'));
  at(join(root, 'src', 'main.ts'), 1_000);
  at(join(root, 'src', 'cli', 'args.ts'), 1_000);
  at(join(root, 'dist', 'main.js'), 2_000);
  if (opts.node24) withNode24(root);
  return root;
}

/** node_modules/node/bin/node in `dir`, as `npm ci` leaves it (a link to the real Node 24 here). */
function withNode24(dir: string): void {
  mkdirSync(join(dir, 'node_modules', 'node', 'bin'), { recursive: true });
  writeFileSync(join(dir, 'node_modules', 'node', 'package.json'), '{"name":"node","version":"24.0.0"}\n');
  symlinkSync(NODE24, join(dir, 'node_modules', 'node', 'bin', 'node'));
}

const at = (path: string, seconds: number): void => utimesSync(path, seconds, seconds);

interface Ran {
  readonly pid: number;
  readonly status: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to its end; `pid` is the process this test spawned. */
function run(command: string, args: readonly string[], opts: SpawnOptions = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ pid: child.pid!, status, signal, stdout, stderr });
    });
  });
}

const report = (r: Ran): Report => {
  const line = r.stdout.split('\n').find((l) => l.startsWith('{'));
  assert.ok(line !== undefined, `no report; stdout: ${r.stdout} stderr: ${r.stderr}`);
  return JSON.parse(line) as Report;
};

/** Runs bin/launcher.mjs's launch() of the tree at `root` in Node 24, with the platform facts given. */
function launchIn(root: string, options: string, args: readonly string[], opts: SpawnOptions = {}): Promise<Ran> {
  const url = pathToFileURL(join(root, 'bin', 'launcher.mjs')).href;
  const code = `import { launch } from ${JSON.stringify(url)}; await launch(process.argv.slice(1), ${options});`;
  return run(NODE24, ['--input-type=module', '-e', code, ...args], opts);
}

test('the hand-over per platform: in-process on Node 24, exec where the OS and Node allow it, else a child process', () => {
  assert.equal(handOverMethod({ major: 24, platform: 'linux', hasExecve: true }), 'in-process');
  assert.equal(handOverMethod({ major: 25, platform: 'win32', hasExecve: false }), 'in-process');
  assert.equal(handOverMethod({ major: 22, platform: 'linux', hasExecve: true }), 'exec');
  assert.equal(handOverMethod({ major: 23, platform: 'darwin', hasExecve: true }), 'exec');
  assert.equal(handOverMethod({ major: 20, platform: 'linux', hasExecve: false }), 'child');
  assert.equal(handOverMethod({ major: 20, platform: 'darwin', hasExecve: false }), 'child');
  assert.equal(handOverMethod({ major: 22, platform: 'win32', hasExecve: true }), 'child');
  assert.equal(handOverMethod({ major: 20, platform: 'win32', hasExecve: false }), 'child');
});

test('Node 24 from npm is node_modules/node/bin/node, and bin/node.exe on Windows (bin/node is a placeholder there)', (t) => {
  const root = scratch(t);
  withNode24(root);
  const from = pathToFileURL(join(root, 'bin', 'launcher.mjs')).href;
  assert.equal(bundledNode('linux', from), join(root, 'node_modules', 'node', 'bin', 'node'));
  assert.equal(bundledNode('darwin', from), join(root, 'node_modules', 'node', 'bin', 'node'));
  assert.equal(bundledNode('win32', from), join(root, 'node_modules', 'node', 'bin', 'node.exe'));
  assert.equal(bundledNode('linux', pathToFileURL(join(scratch(t), 'bin', 'launcher.mjs')).href), null);
});

test('the launcher runs the build when it is newer than every source file, with the arguments', async (t) => {
  const root = checkout(scratch(t), { node24: false });
  const r = report(await run(process.execPath, [join(root, 'bin', 'ollana.mjs'), 'serve', '--workers', '2']));
  assert.deepEqual([r.which, r.argv], ['build', ['serve', '--workers', '2']]);
});

test('the launcher runs the sources when any file in src/ changed after the build, however deep', async (t) => {
  const root = checkout(scratch(t), { node24: false });
  at(join(root, 'src', 'cli', 'args.ts'), 3_000);
  const r = report(await run(process.execPath, [join(root, 'bin', 'ollana.mjs'), 'serve', '--workers', '2']));
  assert.deepEqual([r.which, r.argv], ['sources', ['serve', '--workers', '2']]);
});

test('the launcher runs the sources when there is no build', async (t) => {
  const root = checkout(scratch(t), { node24: false });
  rmSync(join(root, 'dist'), { recursive: true });
  const r = report(await run(process.execPath, [join(root, 'bin', 'ollana.mjs'), 'serve', '--workers', '2']));
  assert.deepEqual([r.which, r.argv], ['sources', ['serve', '--workers', '2']]);
});

test('bin/ollana under the system Node replaces itself with Node 24: the process spawned is the program, with its arguments, stdio and exit status', async (t) => {
  const root = checkout(scratch(t), { node24: true });
  const ran = await run(join(root, 'bin', 'ollana'), ['serve', '--listen', '127.0.0.1:1 with space'], {
    env: { ...process.env, PATH: SYSTEM_PATH },
  });
  const r = report(ran);
  assert.equal(r.pid, ran.pid, 'the program runs in the process that was started: no launcher stays as its parent');
  assert.equal(r.ppid, process.pid);
  assert.equal(realpathSync(r.execPath), NODE24);
  assert.deepEqual([r.which, r.argv], ['build', ['serve', '--listen', '127.0.0.1:1 with space']]);
  assert.equal(ran.status, 7);
  assert.equal(ran.stderr, 'to stderr\n');
});

test('bin/ollana reached through npm-link style symlinks finds its checkout and a Node 24 that npm hoisted to a parent node_modules', async (t) => {
  const dir = scratch(t);
  const root = checkout(join(dir, 'project', 'node_modules', 'ollana'), { node24: false });
  withNode24(join(dir, 'project'));
  mkdirSync(join(dir, 'global', 'lib'), { recursive: true });
  symlinkSync(root, join(dir, 'global', 'lib', 'ollana'));
  mkdirSync(join(dir, 'global', 'bin'));
  symlinkSync('../lib/ollana/bin/ollana', join(dir, 'global', 'bin', 'ollana'));
  const ran = await run(join(dir, 'global', 'bin', 'ollana'), ['status'], {
    env: { ...process.env, PATH: SYSTEM_PATH },
  });
  const r = report(ran);
  assert.equal(r.pid, ran.pid);
  assert.equal(realpathSync(r.execPath), NODE24);
  assert.deepEqual([r.which, r.argv], ['build', ['status']]);
});

test('bin/ollana without Node 24 from npm and with an older system Node says what to do [OLN_USAGE]', async (t) => {
  if (SYSTEM_NODE_MAJOR === null || SYSTEM_NODE_MAJOR >= 24) {
    t.skip(`the system Node is ${SYSTEM_NODE_MAJOR ?? 'missing'}, not older than 24`);
    return;
  }
  const root = checkout(scratch(t), { node24: false });
  const ran = await run(join(root, 'bin', 'ollana'), ['serve'], { env: { ...process.env, PATH: SYSTEM_PATH } });
  assert.equal(ran.status, 2);
  assert.match(ran.stderr, /needs Node\.js 24 or newer.*npm ci.*\[OLN_USAGE\]/s);
  assert.equal(ran.stdout, '');
});

test('bin/ollana with no Node.js at all says what to do [OLN_USAGE]', async (t) => {
  const dir = scratch(t);
  const root = checkout(join(dir, 'co'), { node24: false });
  // A PATH with the tools the script uses, and no node.
  mkdirSync(join(dir, 'tools'));
  for (const tool of ['dirname', 'readlink']) {
    const found = spawnSync('sh', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim();
    symlinkSync(found, join(dir, 'tools', tool));
  }
  const ran = await run(join(root, 'bin', 'ollana'), ['serve'], { env: { PATH: join(dir, 'tools') } });
  assert.equal(ran.status, 2);
  assert.match(ran.stderr, /needs Node\.js 24 or newer and finds no Node\.js.*npm ci.*\[OLN_USAGE\]/s);
});

test('a Node older than 24 that has process.execve replaces itself with Node 24 (exec): one process', async (t) => {
  const root = checkout(scratch(t), { node24: true });
  const ran = await launchIn(root, `{ major: 22 }`, ['serve', '-d']);
  const r = report(ran);
  assert.equal(r.pid, ran.pid);
  assert.equal(realpathSync(r.execPath), NODE24);
  assert.deepEqual([r.which, r.argv], ['build', ['serve', '-d']]);
  assert.equal(ran.status, 7);
  assert.equal(ran.stderr, 'to stderr\n');
});

test('a Node 24 from npm that is there by name but does not run says what to do [OLN_USAGE], by exec and as a child', async (t) => {
  const root = checkout(scratch(t), { node24: true });
  rmSync(join(root, 'node_modules', 'node', 'bin', 'node'));
  for (const facts of [`{ major: 22 }`, `{ major: 20, execve: null }`]) {
    const ran = await launchIn(root, facts, ['serve']);
    assert.equal(ran.status, 2, `${facts}: ${ran.stderr}`);
    assert.match(
      ran.stderr,
      /^ollana: cannot start Node\.js 24 \(.*node_modules\/node\/bin\/node\): .*ENOENT.*npm ci.*\[OLN_USAGE\]\n$/s,
      facts,
    );
  }
});

test('on Windows (no exec) Node 24 runs as a child: its output and exit status come through', async (t) => {
  const root = checkout(scratch(t), { node24: true });
  const ran = await launchIn(
    root,
    `{ major: 20, platform: 'win32', execve: null, nodeBin: ${JSON.stringify(NODE24)} }`,
    ['serve'],
  );
  const r = report(ran);
  assert.notEqual(r.pid, ran.pid);
  assert.equal(r.ppid, ran.pid);
  assert.deepEqual([r.which, r.argv], ['build', ['serve']]);
  assert.equal(ran.status, 7);
  assert.equal(ran.stderr, 'to stderr\n');
});

test('the child fallback dies of the signal that killed Node 24, on Linux and macOS as on Windows', async (t) => {
  const root = checkout(scratch(t), { node24: true });
  const posix = await launchIn(root, `{ major: 20, execve: null }`, ['die']);
  assert.deepEqual([posix.status, posix.signal], [null, 'SIGTERM']);
  const windows = await launchIn(
    root,
    `{ major: 20, platform: 'win32', execve: null, nodeBin: ${JSON.stringify(NODE24)} }`,
    ['die'],
  );
  assert.deepEqual([windows.status, windows.signal], [null, 'SIGTERM']);
});

/**
 * Starts `command` in its own process group (as a shell starts a foreground job), waits for the fake's
 * `ready`, sends SIGINT to the whole group (what Ctrl-C in a terminal does), waits for the program to
 * count it, then SIGTERMs the process started; resolves with the exit status (10 + SIGINTs counted).
 */
async function ctrlCThenTerm(command: string, args: readonly string[], env: NodeJS.ProcessEnv): Promise<number | null> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'inherit'], detached: true, env });
  const lines = createInterface({ input: child.stdout! });
  const closed = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const timer = setTimeout(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, 20_000);
  try {
    for await (const line of lines) {
      if (line === 'ready') process.kill(-child.pid!, 'SIGINT');
      if (line === 'sigint 1') {
        child.kill('SIGTERM');
        break;
      }
    }
    return await closed;
  } finally {
    clearTimeout(timer);
  }
}

test('a Node older than 24 without execve (the child fallback, POSIX): Ctrl-C reaches Node 24 once, SIGTERM is passed on', async (t) => {
  const root = checkout(scratch(t), { node24: true });
  const url = pathToFileURL(join(root, 'bin', 'launcher.mjs')).href;
  const code = `import { launch } from ${JSON.stringify(url)}; await launch(process.argv.slice(1), { major: 20, execve: null });`;
  assert.equal(await ctrlCThenTerm(NODE24, ['--input-type=module', '-e', code, 'wait-signals'], process.env), 11);
});

test('bin/ollana.mjs run by the system Node (the command of earlier READMEs): Ctrl-C reaches Node 24 once', async (t) => {
  if (SYSTEM_NODE_MAJOR === null) {
    t.skip('no system Node');
    return;
  }
  const root = checkout(scratch(t), { node24: true });
  assert.equal(
    await ctrlCThenTerm(join(root, 'bin', 'ollana.mjs'), ['wait-signals'], { ...process.env, PATH: SYSTEM_PATH }),
    11,
  );
});

test('bin/ollana: Ctrl-C reaches Node 24 once', async (t) => {
  const root = checkout(scratch(t), { node24: true });
  assert.equal(
    await ctrlCThenTerm(join(root, 'bin', 'ollana'), ['wait-signals'], { ...process.env, PATH: SYSTEM_PATH }),
    11,
  );
});
