import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import {
  drainReportFile,
  formatPidRecord,
  inspectPidFile,
  parsePidRecord,
  takeDrainReport,
  takePidFile,
  type PidRecord,
} from '../../src/daemon/pid-file.ts';
import { processRuns, processStart } from '../../src/daemon/process-info.ts';
import { OllanaError } from '../../src/errors.ts';

const PID_FILE_MODULE = fileURLToPath(new URL('../../src/daemon/pid-file.ts', import.meta.url));

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

const record = (pid: number, over: Partial<PidRecord> = {}): PidRecord => ({
  pid,
  start: null,
  token: null,
  drainTimeoutMs: null,
  listen: null,
  ...over,
});

/** A pid file's text as the previous versions wrote it (the pid alone), dated an hour back. */
function legacyPidFile(file: string, pid: number, ageMs = 3_600_000): void {
  writeFileSync(file, `${pid}\n`);
  const then = new Date(Date.now() - ageMs);
  utimesSync(file, then, then);
}

test('takePidFile on a fresh path creates the directories and writes pid, start time, token and drain timeout', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'run', 'nested', 'ollana.pid');
  const taken = takePidFile(file, { drainTimeoutMs: 1234 });
  const text = readFileSync(file, 'utf8');
  assert.equal(text.split('\n')[0], String(process.pid), 'the first line is the pid alone, as other tools read it');
  assert.deepEqual(parsePidRecord(text), {
    pid: process.pid,
    start: processStart(process.pid),
    token: taken.record.token,
    drainTimeoutMs: 1234,
    listen: null,
  });
  assert.match(taken.record.token ?? '', /^[0-9a-f]{32}$/);
  assert.deepEqual(taken.notes, []);
  assert.deepEqual(readdirSync(join(dir, 'run', 'nested')), ['ollana.pid'], 'no temporary file left behind');
  assert.equal(inspectPidFile(file).kind, 'running');
  taken.setListen('127.0.0.1:11434');
  assert.equal(parsePidRecord(readFileSync(file, 'utf8'))?.listen, '127.0.0.1:11434');
  taken.release();
  assert.equal(existsSync(file), false);
});

test("the start time is this process's own, and differs between processes", async (t) => {
  const child = await liveChild(t);
  const own = processStart(process.pid);
  assert.ok(own !== null && own.length > 0);
  assert.equal(processStart(process.pid), own, 'stable');
  assert.notEqual(processStart(child.pid), own);
  assert.equal(processStart(await deadPid()), null);
});

test('taking a pid file we already hold is not a stale replacement', (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  const first = takePidFile(file, { drainTimeoutMs: 1 });
  const again = takePidFile(file, { drainTimeoutMs: 1 });
  assert.deepEqual(again.notes, []);
  first.release(); // the file is the second take's now
  assert.equal(existsSync(file), true);
  again.release();
  assert.equal(existsSync(file), false);
});

test('a pid file holding a dead pid is replaced and reported', async (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  const dead = await deadPid();
  writeFileSync(file, formatPidRecord(record(dead, { start: 'x/1', token: 'ab' })));
  assert.equal(inspectPidFile(file).kind, 'gone');
  const taken = takePidFile(file, { drainTimeoutMs: 1, self: { pid: 777, start: 'y/2' } });
  assert.deepEqual(taken.notes, [`replaced a stale pid file left by pid ${dead}, which is not running`]);
  assert.equal(parsePidRecord(readFileSync(file, 'utf8'))?.pid, 777);
});

test('issue #22 item 9: a pid file naming a live process with another start time is not that ollana, whatever its arguments', async (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  const other = await liveChild(t, '/opt/other-app/dist/main.js');
  writeFileSync(file, formatPidRecord(record(other.pid, { start: 'not-its-start', token: 'ab' })));
  assert.equal(inspectPidFile(file).kind, 'other');
  const taken = takePidFile(file, { drainTimeoutMs: 1, self: { pid: 778, start: 'y/2' } });
  assert.deepEqual(taken.notes, [
    `replaced a stale pid file: its pid ${other.pid} is a different process now (not the ollana that wrote the file), left alone`,
  ]);
  assert.equal(parsePidRecord(readFileSync(file, 'utf8'))?.pid, 778);
  assert.equal(processRuns(other.pid), true);
});

test('a pid file naming a live process with its own start time is that ollana: OLN_ALREADY_RUNNING naming the pid', async (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  const child = await liveChild(t);
  const start = processStart(child.pid);
  writeFileSync(file, formatPidRecord(record(child.pid, { start, token: 'ab' })));
  assert.equal(inspectPidFile(file).kind, 'running');
  assert.throws(
    () => takePidFile(file, { drainTimeoutMs: 1 }),
    (err: unknown) => {
      assert.ok(err instanceof OllanaError);
      assert.equal(err.code, 'OLN_ALREADY_RUNNING');
      assert.equal(
        err.message,
        `ollana is already running (pid ${child.pid}, pid file ${file}); stop it with \`ollana stop\`, ` +
          'or give this one its own --pid-file and --listen',
      );
      assert.deepEqual(err.details, { pid: child.pid, file });
      assert.equal(err.exitCode, 6);
      return true;
    },
  );
  assert.equal(parsePidRecord(readFileSync(file, 'utf8'))?.pid, child.pid, 'the running ollana keeps its pid file');
});

test('a pid file of an older ollana (the pid alone): its writer ran ollana and had started before the file was written', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'ollana.pid');
  for (const script of ['/opt/ollana/dist/main.js', '/opt/ollana/src/main.ts', '/opt/ollana/bin/ollana.mjs']) {
    const child = await liveChild(t, script);
    // Written after the process started: that ollana (an update while it ran must still stop it).
    legacyPidFile(file, child.pid, -60_000);
    assert.equal(inspectPidFile(file).kind, 'running', script);
    // Written an hour before the process started: the pid was given out again since.
    legacyPidFile(file, child.pid);
    assert.equal(inspectPidFile(file).kind, 'other', script);
  }
  // Not any main.js, and not a program run from a folder named ollana.
  for (const script of ['/opt/ollana/other/main.js', '/work/ollana-fresh/other/program.js']) {
    const other = await liveChild(t, script);
    legacyPidFile(file, other.pid, -60_000);
    assert.equal(inspectPidFile(file).kind, 'other', script);
  }
});

test('a pid file holding garbage is replaced, saying what it held', (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  writeFileSync(file, 'not a pid\n');
  assert.deepEqual(inspectPidFile(file), { kind: 'unreadable', text: 'not a pid\n' });
  const taken = takePidFile(file, { drainTimeoutMs: 1, self: { pid: 779, start: 'y/2' } });
  assert.deepEqual(taken.notes, [`replaced ${file}, which held no pid (it began "not a pid\\n")`]);
  assert.equal(parsePidRecord(readFileSync(file, 'utf8'))?.pid, 779);
});

test('parsePidRecord: the first line must be a positive pid; unknown keys are ignored', () => {
  for (const text of ['0', '-5', '1.5', '', '12abc', 'start x\n12', '99999999999999999999']) {
    assert.equal(parsePidRecord(text), null, JSON.stringify(text));
  }
  assert.deepEqual(parsePidRecord('  123 \n'), record(123));
  assert.deepEqual(
    parsePidRecord('123\nstart b/9\ntoken ff\ndrain-timeout-ms 5\nlisten [::1]:7\nfuture yes\n'),
    record(123, { start: 'b/9', token: 'ff', drainTimeoutMs: 5, listen: '[::1]:7' }),
  );
  const r = record(5, { start: 'Mon Dec 7 22:24:09 2026', token: 'aa', drainTimeoutMs: 0, listen: '0.0.0.0:11435' });
  assert.deepEqual(parsePidRecord(formatPidRecord(r)), r, 'a start time with spaces (ps) survives');
});

test('a pid file under a regular file is OLN_DIR_UNWRITABLE naming the file and what to do', (t) => {
  const dir = tempDir(t);
  const blocker = join(dir, 'not-a-dir');
  writeFileSync(blocker, 'x');
  const file = join(blocker, 'ollana.pid');
  assert.throws(
    () => takePidFile(file, { drainTimeoutMs: 1 }),
    (err: unknown) => {
      assert.ok(err instanceof OllanaError);
      assert.equal(err.code, 'OLN_DIR_UNWRITABLE');
      assert.ok(err.message.includes(file), err.message);
      assert.match(err.message, /a part of the path is a file, not a directory/);
      assert.match(err.message, /choose another place with --pid-file$/);
      assert.deepEqual(err.details, { file });
      assert.equal((err.cause as NodeJS.ErrnoException).code, 'ENOTDIR');
      assert.equal(err.exitCode, 5);
      return true;
    },
  );
  assert.equal(readFileSync(blocker, 'utf8'), 'x');
});

test('a pid file whose directory cannot be created is OLN_DIR_UNWRITABLE saying "write"', (t) => {
  // The directory is a dangling symlink: reading the pid file finds nothing (ENOENT), then mkdir fails.
  const dir = tempDir(t);
  symlinkSync(join(dir, 'nowhere', 'deeper'), join(dir, 'link'));
  const file = join(dir, 'link', 'ollana.pid');
  assert.throws(
    () => takePidFile(file, { drainTimeoutMs: 1 }),
    (err: unknown) => {
      assert.ok(err instanceof OllanaError);
      assert.equal(err.code, 'OLN_DIR_UNWRITABLE');
      assert.ok(err.message.startsWith(`cannot write the pid file ${file}: `), err.message);
      assert.match(err.message, /choose another place with --pid-file$/);
      return true;
    },
  );
});

test('a failed write still ends in OLN_DIR_UNWRITABLE when its clean-up fails too', (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'ollana.pid');
  mkdirSync(`${file}.786.tmp`); // opening it for writing fails with EISDIR, and so does the clean-up
  assert.throws(() => takePidFile(file, { drainTimeoutMs: 1, self: { pid: 786, start: 'y/2' } }), {
    name: 'OllanaError',
    code: 'OLN_DIR_UNWRITABLE',
  });
});

test('release leaves a pid file another node has since taken', (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  const taken = takePidFile(file, { drainTimeoutMs: 1 });
  writeFileSync(file, formatPidRecord(record(785, { start: 'z/3', token: 'another' })));
  taken.release();
  taken.setListen('127.0.0.1:1'); // nor rewrites it
  assert.deepEqual(parsePidRecord(readFileSync(file, 'utf8')), record(785, { start: 'z/3', token: 'another' }));
});

test('the drain report is read once, and only by the stop of the node that wrote it', (t) => {
  const file = join(tempDir(t), 'ollana.pid');
  const taken = takePidFile(file, { drainTimeoutMs: 1 });
  assert.equal(takeDrainReport(file, taken.record.token), null, 'no report: nothing was cut');
  taken.reportCut(3);
  assert.equal(takeDrainReport(file, 'another token'), null);
  assert.equal(takeDrainReport(file, taken.record.token), 3);
  assert.equal(existsSync(drainReportFile(file)), false);
  assert.equal(takeDrainReport(file, taken.record.token), null);
});

test('a drain report a killed node was still writing is removed at the next start, and said so', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'ollana.pid');
  const dead = await deadPid();
  writeFileSync(`${file}.cut.${dead}.tmp`, 'token a');
  const taken = takePidFile(file, { drainTimeoutMs: 1 });
  assert.deepEqual(taken.notes, [
    `removed ${file}.cut.${dead}.tmp, a pid file that pid ${dead} was still writing when it ended`,
  ]);
  assert.deepEqual(readdirSync(dir), ['ollana.pid']);
  taken.release();
});

test('issue #14: a writer killed at any point of the write leaves the old file or the new one, and the next start says what it found', async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'ollana.pid');
  const dead = await deadPid();
  const old = formatPidRecord(record(dead, { start: 'b/1', token: 'aa', drainTimeoutMs: 1 }));
  const written = formatPidRecord(
    record(dead, { start: 'b/2', token: 'bb', drainTimeoutMs: 1, listen: '127.0.0.1:1' }),
  );
  // Every state a kill can leave: the temporary file holding each prefix of what was being written
  // (the write is one temporary file renamed over the pid file), beside the old pid file or none.
  for (const before of [old, null]) {
    for (let n = 0; n <= written.length; n++) {
      rmSync(file, { force: true });
      if (before !== null) writeFileSync(file, before);
      writeFileSync(`${file}.${dead}.tmp`, written.slice(0, n));
      const taken = takePidFile(file, { drainTimeoutMs: 1 });
      const expected = [`removed ${file}.${dead}.tmp, a pid file that pid ${dead} was still writing when it ended`];
      if (before !== null) expected.push(`replaced a stale pid file left by pid ${dead}, which is not running`);
      assert.deepEqual(taken.notes, expected, `${n} bytes written`);
      assert.deepEqual(readdirSync(dir), ['ollana.pid']);
      assert.equal(parsePidRecord(readFileSync(file, 'utf8'))?.token, taken.record.token);
      taken.release();
    }
  }
});

test('issue #14: real writers SIGKILLed while they rewrite the pid file never leave it damaged', {
  timeout: 60_000,
}, async (t) => {
  const dir = tempDir(t);
  const file = join(dir, 'ollana.pid');
  // The child takes the pid file, then rewrites it (as a node does when it adds its port) in a loop.
  const script = `import { takePidFile } from ${JSON.stringify(PID_FILE_MODULE)};
    const p = takePidFile(${JSON.stringify(file)}, { drainTimeoutMs: 1 });
    console.log('taken');
    for (let i = 0; ; i++) p.setListen('127.0.0.1:' + (i % 65535));`;
  for (let round = 0; round < 12; round++) {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    const exited = once(child, 'exit');
    t.after(() => {
      child.kill('SIGKILL');
    });
    const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
    assert.equal(line, 'taken');
    // Killed somewhere in its loop of writes; where exactly is left to chance, every place must do.
    await new Promise<void>((resolve) => setImmediate(resolve));
    child.kill('SIGKILL');
    await exited;
    const found = inspectPidFile(file);
    assert.equal(found.kind, 'gone', `round ${round}: the file names the killed writer, whole`);
    const taken = takePidFile(file, { drainTimeoutMs: 1 });
    for (const note of taken.notes) {
      assert.match(
        note,
        new RegExp(
          `^(removed ${file}\\.${child.pid}\\.tmp, a pid file that pid ${child.pid} was still writing when it ended` +
            `|replaced a stale pid file left by pid ${child.pid}, which is not running)$`,
        ),
      );
    }
    assert.ok(
      taken.notes.some((n) => n.startsWith('replaced a stale pid file')),
      'the next start says what it found',
    );
    assert.deepEqual(readdirSync(dir), ['ollana.pid']);
    taken.release();
  }
});
