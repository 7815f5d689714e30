/**
 * The daemon as a whole cycle, through the real CLI: `serve -d` returns once listening, refuses a
 * second copy, replaces a stale pid file, and `ollana stop` lets in-flight streams finish.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Ollama } from 'ollama';
import { startEmulator, type Emulator } from '../fixtures/ollama-emulator.ts';
import { freePort, removeHome, runCli, tempHome } from '../helpers/ollana-process.ts';

let emu: Emulator;
const homes: string[] = [];
const pids: number[] = [];

/** Running, not merely a zombie: the daemon's parent exits, so whoever adopts it may reap it late. */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
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

async function serveDaemon(h: string, port: number, extra: string[] = []): Promise<{ code: number | null; stdout: string; stderr: string; pid: number | null }> {
  const r = await runCli(['serve', '-d', '--mode', 'server', '--insecure-http', '--listen', `127.0.0.1:${port}`, '--ollama-url', emu.url,
    '--workers', '1', '--drain-timeout', '10s', ...extra], { home: h });
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
  assert.equal(readFileSync(pidFile, 'utf8').trim(), String(first.pid));

  // It serves at once: `serve -d` returned only after the node was listening.
  const ollama = new Ollama({ host: `http://127.0.0.1:${port}` });
  assert.equal((await ollama.list()).models.length, 2);

  const second = await serveDaemon(h, port);
  assert.equal(second.code, 6, 'OLN_ALREADY_RUNNING exit status');
  assert.match(second.stderr, new RegExp(`already running \\(pid ${first.pid}`));
  assert.match(second.stderr, /ollana stop/);

  // A 40-token stream (about 2 s) is in flight when stop is asked: it must finish whole.
  const stream = await ollama.generate({ model: 'llama3.2', prompt: 'x', stream: true,
    options: { emulator_tokens: 40, emulator_interval_ms: 50 } as Record<string, number> });
  const parts: { done: boolean }[] = [];
  const consumed = (async () => { for await (const p of stream) parts.push(p); })();
  await new Promise((r) => setTimeout(r, 200));
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

test('a stale pid file is replaced', { timeout: 60_000 }, async () => {
  const h = home();
  const dead = spawnSync(process.execPath, ['-e', 'process.pid'], { stdio: 'ignore' }).pid!;
  writeFileSync(join(h, 'ollana.pid'), `${dead}\n`);
  const r = await serveDaemon(h, await freePort());
  assert.equal(r.code, 0, r.stderr);
  assert.equal(readFileSync(join(h, 'ollana.pid'), 'utf8').trim(), String(r.pid));
  assert.match(readFileSync(join(h, 'ollana.log'), 'utf8'), new RegExp(`replaced a stale pid file left by pid ${dead}`));
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
