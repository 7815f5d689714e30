/**
 * Every worker thread is a V8 isolate of its own, so each library its entry loads is paid once per
 * thread: zod (~12 MB, the supervisor's message schemas) and pino-pretty (a terminal's log printer)
 * must stay out of the proxy, discovery and election threads. Each is run in a child process with a
 * preload that reports every package resolved, and by which thread.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** Packages resolved per thread id (0 = the main thread) while running `args` under the preload. */
function packagesByThread(args: readonly string[], done: string): Map<number, Set<string>> {
  const run = spawnSync(process.execPath, ['--import', './test/fixtures/report-imports.ts', ...args],
    { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), done);
  const seen = new Map<number, Set<string>>();
  for (const line of run.stderr.split('\n')) {
    const m = /^imported (\S+) thread (\d+)$/.exec(line);
    if (m === null) continue;
    const set = seen.get(Number(m[2])) ?? new Set<string>();
    set.add(m[1]!);
    seen.set(Number(m[2]), set);
  }
  return seen;
}

function importedBy(entry: string): Set<string> {
  return packagesByThread(['--input-type=module', '-e', `await import(${JSON.stringify(entry)}); console.log('loaded');`], 'loaded')
    .get(0) ?? new Set();
}

test('a proxy worker loads undici and pino, not zod or pino-pretty', { timeout: 90_000 }, () => {
  const proxy = importedBy('./src/workers/proxy.worker.ts');
  assert.ok(proxy.has('undici') && proxy.has('pino'), `the preload saw nothing useful: ${[...proxy].join(', ')}`);
  assert.ok(!proxy.has('zod'), 'zod is loaded in every proxy worker; decode its messages with src/protocol/proxy-inbox.ts');
  assert.ok(!proxy.has('pino-pretty'), 'pino-pretty is loaded in every proxy worker');
  // The same preload does see zod where it belongs, so the check above can fail.
  assert.ok(importedBy('./src/protocol/codec.ts').has('zod'));
});

for (const actor of ['discovery', 'election']) {
  test(`the ${actor} thread loads msgpack and pino, not zod or pino-pretty`, { timeout: 90_000 }, () => {
    const threads = packagesByThread(['test/fixtures/start-actor-thread.ts', actor], 'answered');
    const workers = [...threads.keys()].filter((id) => id !== 0);
    assert.equal(workers.length, 1, `one thread besides the main one: ${workers.join(', ')}`);
    const loaded = threads.get(workers[0]!)!;
    assert.ok(loaded.has('@msgpack/msgpack') && loaded.has('pino'), `the preload saw nothing useful: ${[...loaded].join(', ')}`);
    assert.ok(!loaded.has('zod'), `zod is loaded in the ${actor} thread; decode its messages with src/protocol/actor-inbox.ts`);
    assert.ok(!loaded.has('pino-pretty'), `pino-pretty is loaded in the ${actor} thread`);
  });
}
