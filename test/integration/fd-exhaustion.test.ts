/**
 * Out of file descriptors (EMFILE): every socket, thread and file read takes one, and a flood of
 * connections can use them all. The node must say once what happened and what to do, neither crash
 * nor give up on a thread that cannot start meanwhile, and carry on when descriptors are free again.
 * The processes run under a low `ulimit -n`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';

interface Line { readonly event?: string; readonly level?: string; readonly msg?: string; readonly [k: string]: unknown }

/** Runs `node <script> ...args` under `ulimit -n <limit>`; resolves with its JSON lines once it exits (killed after deadlineMs). */
function runLimited(limit: number, script: string, args: readonly string[], deadlineMs: number): Promise<{ code: number | null; lines: Line[]; stderr: string }> {
  const proc = spawn('bash', ['-c', `ulimit -n ${limit} && exec "$0" "$@"`, process.execPath, script, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: Line[] = [];
  let stderr = '';
  createInterface({ input: proc.stdout }).on('line', (text) => {
    try { lines.push(JSON.parse(text) as Line); } catch { lines.push({ msg: text }); }
  });
  proc.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const timer = setTimeout(() => proc.kill('SIGKILL'), deadlineMs);
  return new Promise((resolve) => proc.once('close', (code) => { clearTimeout(timer); resolve({ code, lines, stderr }); }));
}

test('an actor thread that dies while the process is out of descriptors is restarted once they are free, without a crash loop', { timeout: 60_000 }, async () => {
  const HOLD_MS = 8_000;
  const script = fileURLToPath(new URL('../fixtures/fd-exhaustion/actor-child.ts', import.meta.url));
  const { code, lines, stderr } = await runLimited(128, script, [String(HOLD_MS)], 45_000);
  const show = `${lines.map((l) => JSON.stringify(l)).join('\n')}\n${stderr}`;
  const at = (event: string): number => lines.findIndex((l) => l.event === event);
  assert.ok(at('exhausted') >= 0 && lines[at('exhausted')]!.code === 'EMFILE', `the child used up its descriptors: ${show}`);
  assert.equal(at('fatal'), -1, `the thread was not given up on: ${show}`);
  assert.equal(code, 0, show);
  // While out of descriptors: one clear error, whatever the number of attempts (the other error line
  // is the thread's own death, before the first attempt).
  const during = lines.slice(at('exhausted'), at('freed'));
  const errors = during.filter((l) => l.level === 'error' && /file descriptors/.test(String(l.msg)));
  assert.equal(errors.length, 1, `one error line while out of descriptors: ${show}`);
  assert.equal(during.filter((l) => l.level === 'error').length, 2, `and no line per attempt: ${show}`);
  assert.match(String(errors[0]!.msg), /^the test actor cannot start: this process is out of file descriptors \(the limit is 128\); raise the open-file limit \(ulimit -n/);
  assert.ok(lines.slice(0, at('exhausted')).some((l) => l.event === 'message'), `the thread ran before: ${show}`);
  assert.ok(during.every((l) => l.event !== 'message'), `no run in between: ${show}`);
  // Once they are free, it runs again and says so.
  const after = lines.slice(at('freed'));
  assert.ok(after.some((l) => l.event === 'message'), `the thread ran again: ${show}`);
  assert.ok(after.some((l) => l.level === 'info' && /^the test actor runs again: file descriptors are available again$/.test(String(l.msg))), show);
});
