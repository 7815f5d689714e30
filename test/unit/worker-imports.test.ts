/**
 * Every worker thread is a V8 isolate of its own, so each library its entry loads is paid once per
 * thread: zod (~12 MB, the supervisor's message schemas), pino-pretty (a terminal's log printer) and
 * undici's entry (~10 MB: fetch, WebSocket, mocks; a proxy worker needs the Pool alone) must stay out
 * of the proxy, discovery and election threads. Each is run in a child process with a preload that
 * reports every package file resolved, and by which thread.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Agent as UndiciAgent, Client as UndiciClient, Pool as UndiciPool } from 'undici';
import { Agent, Client, Pool } from '../../src/net/undici.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

interface Loaded {
  readonly packages: Set<string>;
  /** `<package>/<file in it>` */
  readonly files: Set<string>;
}

/** What each thread (by id, 0 = the main thread) resolved under node_modules while running `args`. */
function loadedByThread(args: readonly string[], done: string): Map<number, Loaded> {
  const run = spawnSync(process.execPath, ['--import', './test/fixtures/report-imports.ts', ...args],
    { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), done);
  const seen = new Map<number, Loaded>();
  for (const line of run.stderr.split('\n')) {
    const m = /^imported (\S+) thread (\d+) (\S+)$/.exec(line);
    if (m === null) continue;
    const thread = Number(m[2]);
    const loaded = seen.get(thread) ?? { packages: new Set<string>(), files: new Set<string>() };
    loaded.packages.add(m[1]!);
    loaded.files.add(`${m[1]}/${m[3]}`);
    seen.set(thread, loaded);
  }
  return seen;
}

function importedBy(entry: string): Loaded {
  return loadedByThread(['--input-type=module', '-e', `await import(${JSON.stringify(entry)}); console.log('loaded');`], 'loaded')
    .get(0) ?? { packages: new Set(), files: new Set() };
}

test('a proxy worker loads undici\'s Pool and pino, not zod, pino-pretty or the rest of undici', { timeout: 90_000 }, () => {
  const { packages: proxy, files } = importedBy('./src/workers/proxy.worker.ts');
  assert.ok(proxy.has('undici') && proxy.has('pino'), `the preload saw nothing useful: ${[...proxy].join(', ')}`);
  assert.ok(!proxy.has('zod'), 'zod is loaded in every proxy worker; decode its messages with src/protocol/proxy-inbox.ts');
  assert.ok(!proxy.has('pino-pretty'), 'pino-pretty is loaded in every proxy worker');
  assert.ok(files.has('undici/lib/dispatcher/pool.js'), `undici files: ${[...files].filter((f) => f.startsWith('undici/')).join(', ')}`);
  const entryOnly = [...files].filter((f) => f === 'undici/index.js' || f.startsWith('undici/lib/web/') || f.startsWith('undici/lib/mock/'));
  assert.deepEqual(entryOnly, [], 'undici\'s entry is loaded in every proxy worker; take the Pool from src/net/undici.ts');
  // The same preload does see zod and undici's entry where they belong, so the checks above can fail.
  assert.ok(importedBy('./src/protocol/codec.ts').packages.has('zod'));
  assert.ok(importedBy('undici').files.has('undici/index.js'));
});

test('the main thread (the CLI, the supervisor, the health checks, the cluster view) does not load undici\'s entry either', { timeout: 90_000 }, () => {
  const { files } = importedBy('./src/main.ts');
  assert.ok(files.has('undici/lib/dispatcher/agent.js'), `undici files: ${[...files].filter((f) => f.startsWith('undici/')).join(', ')}`);
  assert.ok(!files.has('undici/index.js'), 'undici\'s entry is loaded in the main thread; take what it needs from src/net/undici.ts');
});

test('the Pool, Client and Agent ollana uses are undici\'s own classes, with the API undici\'s entry gives them', { timeout: 90_000 }, () => {
  assert.equal(Pool, UndiciPool);
  assert.equal(Client, UndiciClient);
  assert.equal(Agent, UndiciAgent);
  // Where the entry is not loaded (a proxy worker), the API methods must be there all the same.
  const api = ['request', 'stream', 'pipeline', 'upgrade', 'connect', 'dispatch', 'close', 'destroy'];
  const main = loadedByThread(['--input-type=module', '-e', `
    const { Agent, Client, Pool } = await import('./src/net/undici.ts');
    const missing = [];
    for (const d of [new Pool('http://127.0.0.1:9'), new Client('http://127.0.0.1:9'), new Agent()]) {
      missing.push(...${JSON.stringify(api)}.filter((m) => typeof d[m] !== 'function'));
      await d.close();
    }
    console.log(missing.length === 0 ? 'complete' : 'missing ' + missing.join(', '));`], 'complete').get(0);
  assert.ok(main?.files.has('undici/lib/dispatcher/pool.js') && !main.files.has('undici/index.js'), 'the check ran with undici\'s entry loaded, so it proves nothing');
});

for (const actor of ['discovery', 'election']) {
  test(`the ${actor} thread loads msgpack and pino, not zod or pino-pretty`, { timeout: 90_000 }, () => {
    const threads = loadedByThread(['test/fixtures/start-actor-thread.ts', actor], 'answered');
    const workers = [...threads.keys()].filter((id) => id !== 0);
    assert.equal(workers.length, 1, `one thread besides the main one: ${workers.join(', ')}`);
    const loaded = threads.get(workers[0]!)!.packages;
    assert.ok(loaded.has('@msgpack/msgpack') && loaded.has('pino'), `the preload saw nothing useful: ${[...loaded].join(', ')}`);
    assert.ok(!loaded.has('zod'), `zod is loaded in the ${actor} thread; decode its messages with src/protocol/actor-inbox.ts`);
    assert.ok(!loaded.has('pino-pretty'), `pino-pretty is loaded in the ${actor} thread`);
  });
}
