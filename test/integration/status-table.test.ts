/**
 * `ollana status` for people through the real CLI against a real server node: aligned tables first
 * (server nodes with health, leader, requests in flight and models), `--watch` redraws in place until
 * Ctrl-C and ends with status 0, and a bad interval is OLN_BAD_FLAG.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { request } from 'undici';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { MAIN, freePort, removeHome, runCli, startOllana, type Started } from '../helpers/ollana-process.ts';

const CLEAR = '\x1b[H\x1b[2J';
let emu: Emulator;
let node: Started;
let listen: string[];

before(async () => {
  // Slow tokens: a generation stays in flight while status is asked.
  emu = await startEmulator({ tokens: 400, tokenIntervalMs: 25, ttftMs: 0 });
  const port = await freePort();
  listen = ['--listen', `127.0.0.1:${port}`];
  node = await startOllana([
    '--mode',
    'server',
    '--insecure-http',
    ...listen,
    '--ollama-url',
    emu.url,
    '--workers',
    '1',
  ]);
});

after(async () => {
  await node?.stop();
  if (node) removeHome(node.home);
  await emu?.close();
});

test('status starts with an aligned table of the server nodes, with what is in flight', async () => {
  const ac = new AbortController();
  const gen = request(`${node.url}/api/generate`, {
    method: 'POST',
    body: JSON.stringify({ model: 'llama3.2', prompt: 'a long story' }),
    signal: ac.signal,
  });
  try {
    const res = await gen;
    // The first token has arrived: the request is in flight until its last.
    await new Promise((resolve) => res.body.once('data', resolve));
    const out = await runCli(['status', ...listen], { home: node.home });
    assert.equal(out.code, 0, out.stderr);
    const lines = out.stdout.split('\n');
    const head = lines[0]!;
    assert.match(head, /^SERVER NODE +ADDRESS +HEALTH +LEADER +IN FLIGHT +MODELS$/);
    const row = lines[1]!;
    assert.match(row, /\(this node\)/);
    // Aligned: every value starts under its heading.
    const at = (heading: string): number => head.indexOf(heading);
    assert.equal(row.slice(at('ADDRESS')).split(/ {2,}/)[0], `127.0.0.1:${node.port}`);
    assert.equal(row.slice(at('HEALTH')).split(/ {2,}/)[0], 'healthy');
    assert.equal(row.slice(at('LEADER')).split(/ {2,}/)[0], 'leader');
    assert.equal(row.slice(at('IN FLIGHT')).split(/ {2,}/)[0], '1');
    assert.match(row.slice(at('MODELS')), /llama3\.2/);
    // The details follow the tables.
    assert.match(out.stdout, /\n\nollana \S+ \(pid \d+\)/);
  } finally {
    ac.abort();
    await gen.then((r) => r.body.destroy()).catch(() => undefined);
  }
});

test('status --watch redraws in place until Ctrl-C, then exits 0', async () => {
  const proc = spawn(process.execPath, [MAIN, 'status', '--watch', '500ms', ...listen], {
    env: { ...process.env, OLLANA_HOME: node.home, OLLANA_DISCOVERY: 'off' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.once('close', (c) => resolve(c)));
  const killer = setTimeout(() => proc.kill('SIGKILL'), 60_000);
  try {
    await new Promise<void>((resolve, reject) => {
      proc.stdout.on('data', (d: Buffer) => {
        stdout += d.toString();
        if (stdout.split(CLEAR).length > 3) resolve();
      });
      exited.then((code) => reject(new Error(`status --watch exited (${code}) before drawing three times: ${stderr}`)));
    });
    const draws = stdout.split(CLEAR).slice(1);
    for (const d of draws.slice(0, 3)) assert.match(d, /every 500 ms, Ctrl-C to stop\n\nSERVER NODE +ADDRESS/);
    proc.kill('SIGINT');
    assert.equal(await exited, 0, stderr);
  } finally {
    clearTimeout(killer);
    proc.kill('SIGKILL');
  }
});

test('status --watch with an interval out of range is OLN_BAD_FLAG', async () => {
  const out = await runCli(['status', '--watch', '10ms', ...listen], { home: node.home });
  assert.equal(out.code, 2);
  assert.match(out.stderr, /OLN_BAD_FLAG/);
});
