import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isOllanaProcess, readPid, takePidFile } from '../../src/daemon/pid-file.ts';
import { OllanaError } from '../../src/errors.ts';

function tempDir(t: TestContext): string {
  const dir = mkdtempSync(join(tmpdir(), 'ollana-pid-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** Pid of a process that has exited (and been reaped), so nothing lives under that number now. */
async function deadPid(): Promise<number> {
  const child = spawn(process.execPath, ['-e', ''], { stdio: 'ignore' });
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
  assert.ok(child.pid !== undefined);
  return child.pid;
}

/** A live child process; it is killed and awaited when the test ends. */
async function liveChild(t: TestContext, ...args: string[]): Promise<ChildProcess & { pid: number }> {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', ...args], { stdio: 'ignore' });
  t.after(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGKILL');
      await exited;
    }
  });
  await once(child, 'spawn');
  assert.ok(child.pid !== undefined);
  return child as ChildProcess & { pid: number };
}

test('takePidFile on a fresh path creates the directories and writes the pid', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'run', 'nested', 'ollana.pid');
  const taken = takePidFile(file, 4242);
  assert.equal(readFileSync(file, 'utf8'), '4242\n');
  assert.equal(taken.replacedStale, null);
  assert.equal(readPid(file), 4242);
  assert.deepEqual(readdirSync(join(dir, 'run', 'nested')), ['ollana.pid'], 'no temporary file left behind');
});

test('takePidFile defaults to this process id', (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  const taken = takePidFile(file);
  t.after(taken.release);
  assert.equal(readFileSync(file, 'utf8'), `${process.pid}\n`);
});

test('taking a pid file we already hold is not a stale replacement', (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  writeFileSync(file, `${process.pid}\n`);
  assert.equal(takePidFile(file).replacedStale, null);
  assert.equal(readPid(file), process.pid);
});

test('a pid file holding a dead pid is replaced and reported', async (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  const dead = await deadPid();
  writeFileSync(file, `${dead}\n`);
  assert.equal(isOllanaProcess(dead), false);
  const taken = takePidFile(file, 777);
  assert.equal(taken.replacedStale, dead);
  assert.equal(readFileSync(file, 'utf8'), '777\n');
});

test('a pid file holding a live process that is not ollana is replaced (the pid was reused)', async (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  // Run from a folder named ollana, as a fresh clone may be: still not ollana.
  const child = await liveChild(t, '/work/ollana-fresh/other/program.js');
  writeFileSync(file, `${child.pid}\n`);
  assert.equal(isOllanaProcess(child.pid), false);
  const taken = takePidFile(file, 778);
  assert.equal(taken.replacedStale, child.pid);
  assert.equal(readPid(file), 778);
});

test('a pid file holding garbage is replaced without a stale pid to report', (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  writeFileSync(file, 'not a pid\n');
  assert.equal(readPid(file), null);
  const taken = takePidFile(file, 779);
  assert.equal(taken.replacedStale, null);
  assert.equal(readPid(file), 779);
});

test('readPid: missing file is null; zero, negative and fractional pids are null', (t) => {
  const dir = tempDir(t);
  assert.equal(readPid(join(dir, 'missing.pid')), null);
  for (const text of ['0', '-5', '1.5', '', '12abc']) {
    writeFileSync(join(dir, 'p'), text);
    assert.equal(readPid(join(dir, 'p')), null, JSON.stringify(text));
  }
  writeFileSync(join(dir, 'p'), '  123 \n');
  assert.equal(readPid(join(dir, 'p')), 123);
});

test('a pid file holding a live ollana is OLN_ALREADY_RUNNING naming the pid', async (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  // A process whose script argument is ollana's entry point (node -e ignores it, /proc shows it).
  const child = await liveChild(t, '/opt/ollana/src/main.ts');
  writeFileSync(file, `${child.pid}\n`);
  assert.equal(isOllanaProcess(child.pid), true);
  assert.throws(() => takePidFile(file, 780), (err: unknown) => {
    assert.ok(err instanceof OllanaError);
    assert.equal(err.code, 'OLN_ALREADY_RUNNING');
    assert.equal(err.message, `ollana is already running (pid ${child.pid}, pid file ${file}); stop it with \`ollana stop\`, ` +
      'or give this one its own --pid-file and --listen');
    assert.deepEqual(err.details, { pid: child.pid, file });
    assert.equal(err.exitCode, 6);
    return true;
  });
  assert.equal(readPid(file), child.pid, 'the running ollana keeps its pid file');
});

test('each of ollana\'s entry points counts as a live ollana: the build, the sources, the launcher', async (t) => {
  for (const script of ['/opt/ollana/dist/main.js', '/opt/ollana/src/main.ts', '/opt/ollana/bin/ollana.mjs']) {
    const child = await liveChild(t, script);
    assert.equal(isOllanaProcess(child.pid), true, script);
  }
  // Not any main.js: another program's build folder is not ollana.
  const other = await liveChild(t, '/opt/ollana/other/main.js');
  assert.equal(isOllanaProcess(other.pid), false);
});

test('a pid file under a regular file is OLN_DIR_UNWRITABLE naming the file and what to do', (t) => {
  const dir = tempDir(t);
  const blocker = join(dir, 'not-a-dir');
  writeFileSync(blocker, 'x');
  const file = join(blocker, 'ollana.pid');
  assert.throws(() => takePidFile(file, 781), (err: unknown) => {
    assert.ok(err instanceof OllanaError);
    assert.equal(err.code, 'OLN_DIR_UNWRITABLE');
    assert.ok(err.message.includes(file), err.message);
    assert.match(err.message, /a part of the path is a file, not a directory/);
    assert.match(err.message, /choose another place with --pid-file$/);
    assert.deepEqual(err.details, { file });
    assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOTDIR');
    assert.equal(err.exitCode, 5);
    return true;
  });
  assert.equal(readFileSync(blocker, 'utf8'), 'x');
});

test('a pid file whose directory cannot be created is OLN_DIR_UNWRITABLE saying "write"', (t) => {
  // The directory is a dangling symlink: reading the pid file finds nothing (ENOENT), then mkdir fails.
  const dir = tempDir(t);
  symlinkSync(join(dir, 'nowhere', 'deeper'), join(dir, 'link'));
  const file = join(dir, 'link', 'ollana.pid');
  assert.throws(() => takePidFile(file, 782), (err: unknown) => {
    assert.ok(err instanceof OllanaError);
    assert.equal(err.code, 'OLN_DIR_UNWRITABLE');
    assert.ok(err.message.startsWith(`cannot write the pid file ${file}: `), err.message);
    assert.match(err.message, /choose another place with --pid-file$/);
    return true;
  });
});

test('a failed write still ends in OLN_DIR_UNWRITABLE when its clean-up fails too',
  (t) => {
    const dir = tempDir(t);
    const file = join(dir, 'ollana.pid');
    mkdirSync(`${file}.786.tmp`); // writeFileSync fails with EISDIR, and so does the clean-up
    assert.throws(() => takePidFile(file, 786), { name: 'OllanaError', code: 'OLN_DIR_UNWRITABLE' });
  });

test('release removes the pid file while it holds our pid', (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  const taken = takePidFile(file, 783);
  assert.equal(existsSync(file), true);
  taken.release();
  assert.equal(existsSync(file), false);
  taken.release(); // twice is harmless
  assert.equal(existsSync(file), false);
});

test('release leaves a pid file another process has since taken', (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  const taken = takePidFile(file, 784);
  writeFileSync(file, '785\n');
  taken.release();
  assert.equal(readFileSync(file, 'utf8'), '785\n');
});
