/**
 * The daemon as a whole cycle, through the real CLI: `serve -d` returns once listening, refuses a
 * second copy, replaces a stale pid file, and `ollana stop` lets in-flight streams finish.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Ollama } from 'ollama';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { freePort, removeHome, runCli, runOllana, tempHome } from '../helpers/ollana-process.ts';

let emu: Emulator;
const homes: string[] = [];
const pids: number[] = [];

/**
 * Running: some thread of it is not a zombie. Not only the main thread: while a node's last threads
 * finish, its main thread is a zombie already, and its sockets are still open.
 */
function alive(pid: number): boolean {
  try {
    return readdirSync(`/proc/${pid}/task`).some((tid) => {
      try {
        return !/^\d+ \(.*\) [ZX]/.test(readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8'));
      } catch {
        return false;
      }
    });
  } catch {
    return false;
  }
}

/** Whether host:port can be listened on (exclusively) right now. */
async function portFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

/** A live process that is not ollana but whose arguments look like it (node -e ignores them). */
function lookalike(script: string): ChildProcess & { pid: number } {
  const child = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)', script], { stdio: 'ignore' });
  pids.push(child.pid!);
  return child as ChildProcess & { pid: number };
}

before(async () => {
  emu = await startEmulator({ tokens: 5, tokenIntervalMs: 5 });
});

after(async () => {
  for (const pid of pids) if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (const h of homes) removeHome(h);
  await emu?.close();
});

function home(): string {
  const h = tempHome('ollana-daemon-');
  homes.push(h);
  return h;
}

async function serveDaemon(
  h: string,
  port: number,
  extra: string[] = [],
): Promise<{ code: number | null; stdout: string; stderr: string; pid: number | null }> {
  const r = await runCli(
    [
      'serve',
      '-d',
      '--mode',
      'server',
      '--insecure-http',
      '--listen',
      `127.0.0.1:${port}`,
      '--ollama-url',
      emu.url,
      '--workers',
      '1',
      '--drain-timeout',
      '10s',
      ...extra,
    ],
    { home: h },
  );
  const m = /\(pid (\d+)\)/.exec(r.stdout);
  const pid = m ? Number(m[1]) : null;
  if (pid !== null) pids.push(pid);
  return { ...r, pid };
}

test('serve -d, a refused second copy, stop while a stream runs: the whole cycle', { timeout: 60_000 }, async () => {
  const h = home();
  const port = await freePort();
  const first = await serveDaemon(h, port);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, new RegExp(`listening on http://127\\.0\\.0\\.1:${port}`));
  assert.ok(first.pid !== null && alive(first.pid), 'the daemon runs after the parent returned');
  const pidFile = join(h, 'ollana.pid');
  assert.equal(readFileSync(pidFile, 'utf8').split('\n')[0], String(first.pid));

  // It serves at once: `serve -d` returned only after the node was listening.
  const ollama = new Ollama({ host: `http://127.0.0.1:${port}` });
  assert.equal((await ollama.list()).models.length, 2);

  const second = await serveDaemon(h, port);
  assert.equal(second.code, 6, 'OLN_ALREADY_RUNNING exit status');
  assert.match(second.stderr, new RegExp(`already running \\(pid ${first.pid}`));
  assert.match(second.stderr, /ollana stop/);

  // A 40-token stream (about 2 s) is in flight when stop is asked: it must finish whole.
  const stream = await ollama.generate({
    model: 'llama3.2',
    prompt: 'x',
    stream: true,
    options: { emulator_tokens: 40, emulator_interval_ms: 50 } as Record<string, number>,
  });
  const parts: { done: boolean }[] = [];
  let firstPart: () => void = () => undefined;
  const streaming = new Promise<void>((resolve) => {
    firstPart = resolve;
  });
  const consumed = (async () => {
    for await (const p of stream) {
      parts.push(p);
      firstPart();
    }
  })();
  await streaming;
  const stop = await runCli(['stop'], { home: h });
  await consumed;
  assert.equal(stop.code, 0, stop.stderr);
  assert.match(stop.stdout, new RegExp(`ollana \\(pid ${first.pid}\\) stopped`));
  assert.equal(parts.length, 41, 'the in-flight stream ran to its end');
  assert.equal(parts.at(-1)?.done, true);
  assert.equal(alive(first.pid!), false);
  assert.equal(existsSync(pidFile), false, 'the pid file is removed');

  const log = readFileSync(join(h, 'ollana.log'), 'utf8');
  assert.match(log, /listening on/);
  assert.match(log, /stopping \(SIGTERM\)/);
  assert.match(log, /"msg":"stopped"/);

  const again = await runCli(['stop'], { home: h });
  assert.equal(again.code, 7);
  assert.match(again.stderr, /no ollana is running/);
});

test('issue #14: `ollana stop` returns once the node has exited and its port is free', {
  timeout: 60_000,
}, async () => {
  const h = home();
  const port = await freePort();
  // Over TLS and with a live upstream, as users run it: such a node's last threads take longest to end.
  const r = await runCli(
    ['serve', '-d', '--mode', 'auto', '--listen', `127.0.0.1:${port}`, '--ollama-url', emu.url, '--workers', '1'],
    { home: h },
  );
  assert.equal(r.code, 0, r.stderr);
  const pid = Number(/\(pid (\d+)\)/.exec(r.stdout)?.[1]);
  pids.push(pid);
  assert.equal(await portFree(port), false, 'the node holds its port');
  const stop = await runCli(['stop'], { home: h });
  // Checked at once, as a script would: the pid is gone (not even a zombie: on this machine init reaps
  // only every second or so), and a new node can take the port.
  const running = alive(pid);
  let pidGone = false;
  try {
    process.kill(pid, 0);
  } catch (err) {
    pidGone = (err as NodeJS.ErrnoException).code === 'ESRCH';
  }
  const free = await portFree(port);
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal(stop.stdout, `ollana (pid ${pid}) stopped\n`);
  assert.equal(running, false, 'the process has exited when stop says stopped');
  assert.equal(pidGone, true, 'kill -0 finds no such process when stop says stopped');
  assert.equal(free, true, 'the port is free when stop says stopped');
});

test('issue #14: a stop whose drain deadline cut a stream says so, exit 14 [OLN_DRAIN_CUT]', {
  timeout: 60_000,
}, async () => {
  const h = home();
  const port = await freePort();
  const r = await serveDaemon(h, port, ['--drain-timeout', '300']);
  assert.equal(r.code, 0, r.stderr);
  const ollama = new Ollama({ host: `http://127.0.0.1:${port}` });
  // A stream of about 10 s against a 300 ms drain timeout.
  const stream = await ollama.generate({
    model: 'llama3.2',
    prompt: 'x',
    stream: true,
    options: { emulator_tokens: 200, emulator_interval_ms: 50 } as Record<string, number>,
  });
  const it = stream[Symbol.asyncIterator]();
  assert.equal((await it.next()).done, false, 'the stream has begun');
  const consumed = (async () => {
    try {
      while (!(await it.next()).done);
    } catch {
      /* cut: expected */
    }
  })();
  const stop = await runCli(['stop'], { home: h });
  await consumed;
  assert.equal(stop.code, 14, stop.stderr);
  assert.equal(stop.stdout, '');
  assert.equal(
    stop.stderr,
    `ollana: ollana (pid ${r.pid}) stopped, but its drain timeout (0.3 s) ran out first: 1 in-flight request was cut; ` +
      'start it with a longer --drain-timeout to let them finish [OLN_DRAIN_CUT]\n',
  );
  assert.equal(alive(r.pid!), false);
  assert.deepEqual(
    readdirSync(h).filter((f) => f.startsWith('ollana.pid')),
    [],
    'no pid file and no drain report left',
  );
});

test('issue #22 item 9: a pid file naming a live process that only looks like ollana: stop leaves it alone, serve starts', {
  timeout: 60_000,
}, async () => {
  const h = home();
  const pidFile = join(h, 'ollana.pid');
  // An old-style pid file (the pid alone), left an hour ago by an ollana that has gone since; its pid
  // now belongs to another program whose arguments end in dist/main.js.
  const other = lookalike('/srv/other-app/dist/main.js');
  await once(other, 'spawn');
  writeFileSync(pidFile, `${other.pid}\n`);
  const anHourAgo = new Date(Date.now() - 3_600_000);
  utimesSync(pidFile, anHourAgo, anHourAgo);
  const stop = await runCli(['stop'], { home: h });
  assert.equal(stop.code, 7, stop.stderr);
  assert.equal(
    stop.stderr,
    `ollana: no ollana is running: pid ${other.pid} from ${pidFile} is a different process now ` +
      '(not the ollana that wrote the file); left it alone and removed the stale pid file [OLN_NOT_RUNNING]\n',
  );
  assert.equal(alive(other.pid), true, 'the other program was not signalled');
  assert.equal(existsSync(pidFile), false);

  // A pid file of this version naming it, with another start time: serve replaces it and says why.
  writeFileSync(pidFile, `${other.pid}\nstart not-its-start\ntoken 00\n`);
  const r = await serveDaemon(h, await freePort());
  assert.equal(r.code, 0, r.stderr);
  assert.equal(alive(other.pid), true);
  assert.match(
    readFileSync(join(h, 'ollana.log'), 'utf8'),
    new RegExp(
      `replaced a stale pid file: its pid ${other.pid} is a different process now \\(not the ollana that wrote the file\\), left alone`,
    ),
  );
  assert.equal((await runCli(['stop'], { home: h })).code, 0);
  assert.equal(alive(other.pid), true);
  other.kill('SIGKILL');
});

test('a stale pid file is replaced', { timeout: 60_000 }, async () => {
  const h = home();
  const dead = spawnSync(process.execPath, ['-e', 'process.pid'], { stdio: 'ignore' }).pid!;
  writeFileSync(join(h, 'ollana.pid'), `${dead}\n`);
  const r = await serveDaemon(h, await freePort());
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(join(h, 'ollana.pid'), 'utf8').split('\n')[0], String(r.pid));
  assert.match(
    readFileSync(join(h, 'ollana.log'), 'utf8'),
    new RegExp(`replaced a stale pid file left by pid ${dead}`),
  );
  assert.equal((await runCli(['stop'], { home: h })).code, 0);
});

test('a daemon that cannot start says why and leaves no pid file', { timeout: 60_000 }, async () => {
  const h = home();
  const { createServer } = await import('node:net');
  const blocker = createServer();
  await new Promise<void>((resolve) => blocker.listen({ host: '127.0.0.1', port: 0, exclusive: true }, resolve));
  const port = (blocker.address() as { port: number }).port;
  try {
    const r = await serveDaemon(h, port);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, new RegExp(`port ${port} on 127\\.0\\.0\\.1 is already in use`));
    assert.equal(existsSync(join(h, 'ollana.pid')), false);
  } finally {
    blocker.close();
  }
});

test('a SIGTERM while the node is still starting is held, then drains: exit 0, pid file removed', {
  timeout: 60_000,
}, async () => {
  const h = home();
  const pidFile = join(h, 'starting.pid');
  const port = await freePort();
  const p = runOllana(
    [
      'serve',
      '--mode',
      'server',
      '--insecure-http',
      '--listen',
      `127.0.0.1:${port}`,
      '--ollama-url',
      emu.url,
      '--workers',
      '1',
      '--pid-file',
      pidFile,
    ],
    { home: h },
  );
  pids.push(p.proc.pid!);
  // The pid file is taken before the supervisor starts, so it appearing means the node is mid-start.
  // Bounded polling: no event tells a test when another process creates a file.
  for (let i = 0; !existsSync(pidFile); i++) {
    assert.ok(i < 2000 && p.proc.exitCode === null, `the node never wrote ${pidFile}; stderr: ${p.stderr.join('\n')}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  const listened = p.lines.some((l) => typeof l.msg === 'string' && l.msg.includes('listening on'));
  p.proc.kill('SIGTERM');
  const exit = await p.exited;
  assert.deepEqual(
    exit,
    { code: 0, signal: null },
    `a signal during start ended the node without a drain (listening already: ${listened})`,
  );
  assert.equal(existsSync(pidFile), false, 'the pid file was left behind');
  assert.ok(
    p.lines.some((l) => typeof l.msg === 'string' && /stopp/.test(l.msg)),
    'the node did not log its stop',
  );
});
