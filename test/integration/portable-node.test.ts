/**
 * A real node under the rules of an OS without signals or SO_REUSEPORT, through the CLI: `ollana stop`
 * over the control endpoint (OLLANA_NO_SIGNALS=1), its token check, and a node started with macOS's
 * rules injected (OLLANA_DEBUG_HOOKS=1 OLLANA_TEST_PLATFORM=darwin): one proxy worker, said once, and
 * --workers above 1 refused.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { Ollama } from 'ollama';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { freePort, removeHome, runCli, startOllana, tempHome, type Started } from '../helpers/ollana-process.ts';

let emu: Emulator;
const homes: string[] = [];
const pids: number[] = [];
const nodes: Started[] = [];
const NO_SIGNALS = { OLLANA_NO_SIGNALS: '1' };
const AS_MACOS = { OLLANA_DEBUG_HOOKS: '1', OLLANA_TEST_PLATFORM: 'darwin' };

function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function portFree(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', () => resolve(false));
    server.listen({ host: '127.0.0.1', port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

before(async () => {
  emu = await startEmulator({ tokens: 3, tokenIntervalMs: 5 });
});

after(async () => {
  for (const n of nodes) await n.stop();
  for (const pid of pids) if (running(pid)) process.kill(pid, 'SIGKILL');
  for (const h of homes) removeHome(h);
  await emu?.close();
});

function home(): string {
  const h = tempHome('ollana-portable-');
  homes.push(h);
  return h;
}

async function daemon(h: string, port: number, extra: string[] = []): Promise<number> {
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
      ...extra,
    ],
    { home: h },
  );
  assert.equal(r.code, 0, r.stderr);
  const pid = Number(/\(pid (\d+)\)/.exec(r.stdout)?.[1]);
  pids.push(pid);
  return pid;
}

test('without signals, `ollana stop` stops the node through its control endpoint: exited, port free, token gone', {
  timeout: 90_000,
}, async () => {
  const h = home();
  const port = await freePort();
  const pid = await daemon(h, port);
  const token = join(h, 'control.token');
  assert.equal(readFileSync(token, 'utf8').trim().length, 64);
  assert.equal(statSync(token).mode & 0o777, 0o600);
  assert.equal(existsSync(join(h, 'ollana.control.sock')), true);

  const stop = await runCli(['stop'], { home: h, env: NO_SIGNALS });
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal(stop.stdout, `ollana (pid ${pid}) stopped\n`);
  assert.equal(running(pid), false, 'the process has exited when stop says stopped');
  assert.equal(await portFree(port), true, 'the port is free when stop says stopped');
  assert.equal(existsSync(token), false, 'the token goes with the node');
  assert.equal(existsSync(join(h, 'ollana.control.sock')), false, 'and so does the socket');
  // The node was asked through the endpoint, not signalled: its log says so.
  assert.match(readFileSync(join(h, 'ollana.log'), 'utf8'), /stop requested through the control endpoint/);
});

test('a wrong control token is refused [OLN_CONTROL_REFUSED] and the node keeps running', {
  timeout: 90_000,
}, async () => {
  const h = home();
  const port = await freePort();
  const pid = await daemon(h, port);
  const token = join(h, 'control.token');
  const right = readFileSync(token, 'utf8');
  writeFileSync(token, 'f'.repeat(64));
  const refused = await runCli(['stop'], { home: h, env: NO_SIGNALS });
  assert.equal(refused.code, 16, refused.stderr);
  assert.match(refused.stderr, /\[OLN_CONTROL_REFUSED\]\n$/);
  assert.equal(running(pid), true);
  writeFileSync(token, right);
  const stop = await runCli(['stop'], { home: h, env: NO_SIGNALS });
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal(running(pid), false);
});

test('without signals, a stop whose drain cut a stream says so: exit 14 [OLN_DRAIN_CUT], as with SIGTERM', {
  timeout: 90_000,
}, async () => {
  const h = home();
  const port = await freePort();
  const pid = await daemon(h, port, ['--drain-timeout', '300']);
  const stream = await new Ollama({ host: `http://127.0.0.1:${port}` }).generate({
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
  const stop = await runCli(['stop'], { home: h, env: NO_SIGNALS });
  await consumed;
  assert.equal(stop.code, 14, stop.stderr);
  assert.match(stop.stderr, /1 in-flight request was cut.*\[OLN_DRAIN_CUT\]\n$/);
  assert.equal(running(pid), false);
});

test("under macOS's rules a node runs one proxy worker without SO_REUSEPORT, says so once, and serves", {
  timeout: 90_000,
}, async () => {
  const port = await freePort();
  const node = await startOllana(
    ['--mode', 'server', '--insecure-http', '--listen', `127.0.0.1:${port}`, '--ollama-url', emu.url],
    { home: home(), env: AS_MACOS },
  );
  nodes.push(node);
  const notes = node.lines.filter((l) => /SO_REUSEPORT/.test(l.msg));
  assert.equal(notes.length, 1, JSON.stringify(notes));
  assert.equal(notes[0]!.level, 'info');
  const listening = await node.waitFor((l) => l.msg.includes('listening on'));
  assert.equal(listening.workers, 1);
  const reply = await new Ollama({ host: node.url }).generate({ model: 'llama3.2', prompt: 'hi' });
  assert.equal(typeof reply.response, 'string');
  assert.equal(await node.stop(), 0);
});

test("under macOS's rules --workers 4 is refused with the reason [OLN_WORKERS_UNSUPPORTED]", {
  timeout: 60_000,
}, async () => {
  const port = await freePort();
  const r = await runCli(['serve', '--listen', `127.0.0.1:${port}`, '--workers', '4'], { home: home(), env: AS_MACOS });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /SO_REUSEPORT/);
  assert.match(r.stderr, /\[OLN_WORKERS_UNSUPPORTED\]\n$/);
});
