/**
 * `npm run dev` (issue #19 part 7) in a temporary copy of the sources: it runs a node from src/ with
 * discovery off on a loopback port, and an edit to a watched file restarts the node (a new process
 * answers on the same port). The copy keeps the edit out of the real tree.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, copyFileSync, cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort } from '../helpers/ollana-process.ts';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
let copy: string | null = null;
let dev: ChildProcess | null = null;

after(async () => {
  // npm, node --watch and the node form one process group (detached below): end it whole.
  if (dev?.pid !== undefined && dev.exitCode === null && dev.signalCode === null) {
    try {
      process.kill(-dev.pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  if (copy !== null) rmSync(copy, { recursive: true, force: true });
});

async function statusPid(port: number): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}/ollana/v1/status`);
  assert.equal(res.status, 200);
  return ((await res.json()) as { ollana: { pid: number } }).ollana.pid;
}

test('npm run dev: a node from the sources, discovery off; an edit in src/ restarts it', {
  timeout: 150_000,
}, async () => {
  copy = mkdtempSync(join(tmpdir(), 'ollana-dev-'));
  cpSync(join(ROOT, 'src'), join(copy, 'src'), { recursive: true });
  copyFileSync(join(ROOT, 'package.json'), join(copy, 'package.json'));
  symlinkSync(join(ROOT, 'node_modules'), join(copy, 'node_modules'), 'dir');
  const port = await freePort();

  dev = spawn('npm', ['run', 'dev', '--', '--listen', `127.0.0.1:${port}`, '--mode', 'client'], {
    cwd: copy,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, OLLANA_LOG: 'info' },
  });
  const lines: string[] = [];
  const waiters: { pred: (l: string) => boolean; resolve: () => void }[] = [];
  const take = (l: string): void => {
    lines.push(l);
    for (const w of waiters.splice(0))
      if (w.pred(l)) w.resolve();
      else waiters.push(w);
  };
  createInterface({ input: dev.stdout! }).on('line', take);
  createInterface({ input: dev.stderr! }).on('line', take);
  const exited = new Promise<void>((resolve) => dev!.once('exit', () => resolve()));
  /** Resolves once `count` lines match; rejects after 60 s or if dev exits first. */
  const seen = (pred: (l: string) => boolean, count: number, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within 60 s:\n${lines.join('\n')}`)), 60_000);
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      let n = lines.filter(pred).length;
      if (n >= count) return done();
      waiters.push({
        pred: (l) => pred(l) && ++n >= count,
        resolve: done,
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`npm run dev exited before ${what}:\n${lines.join('\n')}`));
      });
    });
  const listening = (l: string): boolean => l.includes('"msg":"ollana client node listening on');

  await seen(listening, 1, 'a node listening');
  assert.ok(
    lines.some((l) => l.includes('discovery is off')),
    'discovery is off by default',
  );
  const first = await statusPid(port);

  appendFileSync(join(copy, 'src', 'clock.ts'), '\n// edited by the dev-loop test\n');
  await seen(listening, 2, 'the node listening again after the edit');
  const second = await statusPid(port);
  assert.notEqual(second, first, 'a new node process answers after the restart');
  assert.ok(
    lines.some((l) => l.includes('"msg":"stopped"')),
    'the old node stopped in order (SIGTERM and drain) before the new one started',
  );

  process.kill(-dev.pid!, 'SIGTERM');
  await exited;
});
