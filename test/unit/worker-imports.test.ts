/**
 * Every worker thread is a V8 isolate of its own, so each library its entry loads is paid once per
 * thread: zod (~12 MB, the supervisor's message schemas), pino-pretty (a terminal's log printer) and
 * undici (~7 MB for the Pool's files, ~10 MB more for its entry: fetch, WebSocket, mocks) must stay
 * out of the proxy, discovery and election threads; undici is loaded only where a pool is needed (a
 * client node's workers, the cluster view), and then its files alone, never its entry. Each is run in
 * a child process with a preload that reports every package file resolved, and by which thread.
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
  const run = spawnSync(process.execPath, ['--import', './test/fixtures/report-imports.ts', ...args], {
    cwd: ROOT,
    encoding: 'utf8',
    timeout: 60_000,
  });
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
  return (
    loadedByThread(
      ['--input-type=module', '-e', `await import(${JSON.stringify(entry)}); console.log('loaded');`],
      'loaded',
    ).get(0) ?? { packages: new Set(), files: new Set() }
  );
}

test('a proxy worker loads pino, not zod, pino-pretty or undici, until it needs a pool', { timeout: 90_000 }, () => {
  const { packages: proxy } = importedBy('./src/workers/proxy.worker.ts');
  assert.ok(
    proxy.has('pino') && proxy.has('@msgpack/msgpack'),
    `the preload saw nothing useful: ${[...proxy].join(', ')}`,
  );
  assert.ok(
    !proxy.has('zod'),
    'zod is loaded in every proxy worker; decode its messages with src/protocol/proxy-inbox.ts',
  );
  assert.ok(!proxy.has('pino-pretty'), 'pino-pretty is loaded in every proxy worker');
  assert.ok(
    !proxy.has('undici'),
    "undici is loaded in every proxy worker; a server node's workers relay without it (load it when a pool is needed)",
  );
  // The same preload does see zod and undici's entry where they belong, so the checks above can fail.
  assert.ok(importedBy('./src/protocol/codec.ts').packages.has('zod'));
  assert.ok(importedBy('undici').files.has('undici/index.js'));
});

test("where a pool is needed, undici's files come without its entry", { timeout: 90_000 }, () => {
  const { files } = importedBy('./src/net/undici.ts');
  assert.ok(
    files.has('undici/lib/dispatcher/pool.js') && files.has('undici/lib/dispatcher/agent.js'),
    `undici files: ${[...files].filter((f) => f.startsWith('undici/')).join(', ')}`,
  );
  const entryOnly = [...files].filter(
    (f) => f === 'undici/index.js' || f.startsWith('undici/lib/web/') || f.startsWith('undici/lib/mock/'),
  );
  assert.deepEqual(entryOnly, [], "undici's entry is loaded; take the Pool, Client and Agent from src/net/undici.ts");
});

test("a node's main thread (the serve command, the supervisor, the health checks) loads neither undici nor the other commands", {
  timeout: 90_000,
}, () => {
  const { packages, files } = importedBy('./src/cli/commands/serve.ts');
  assert.ok(packages.has('zod') && packages.has('pino'), `the preload saw nothing useful: ${[...packages].join(', ')}`);
  assert.ok(
    !packages.has('undici'),
    `undici is loaded in a node's main thread: ${[...files].filter((f) => f.startsWith('undici/')).join(', ')}`,
  );
  // main.ts loads a command's modules only when that command runs.
  assert.ok(!importedBy('./src/main.ts').packages.has('zod'), 'main.ts loads the commands before one runs');
});

test("the Pool, Client and Agent ollana uses are undici's own classes, with the API undici's entry gives them", {
  timeout: 90_000,
}, () => {
  assert.equal(Pool, UndiciPool);
  assert.equal(Client, UndiciClient);
  assert.equal(Agent, UndiciAgent);
  // Where the entry is not loaded (a proxy worker), the API methods must be there all the same.
  const api = ['request', 'stream', 'pipeline', 'upgrade', 'connect', 'dispatch', 'close', 'destroy'];
  const main = loadedByThread(
    [
      '--input-type=module',
      '-e',
      `
    const { Agent, Client, Pool } = await import('./src/net/undici.ts');
    const missing = [];
    for (const d of [new Pool('http://127.0.0.1:9'), new Client('http://127.0.0.1:9'), new Agent()]) {
      missing.push(...${JSON.stringify(api)}.filter((m) => typeof d[m] !== 'function'));
      await d.close();
    }
    console.log(missing.length === 0 ? 'complete' : 'missing ' + missing.join(', '));`,
    ],
    'complete',
  ).get(0);
  assert.ok(
    main?.files.has('undici/lib/dispatcher/pool.js') && !main.files.has('undici/index.js'),
    "the check ran with undici's entry loaded, so it proves nothing",
  );
});

for (const actor of ['discovery', 'election']) {
  test(`the ${actor} thread loads msgpack and pino, not zod or pino-pretty`, { timeout: 90_000 }, () => {
    const threads = loadedByThread(['test/fixtures/start-actor-thread.ts', actor], 'answered');
    const workers = [...threads.keys()].filter((id) => id !== 0);
    assert.equal(workers.length, 1, `one thread besides the main one: ${workers.join(', ')}`);
    const loaded = threads.get(workers[0]!)!.packages;
    assert.ok(
      loaded.has('@msgpack/msgpack') && loaded.has('pino'),
      `the preload saw nothing useful: ${[...loaded].join(', ')}`,
    );
    assert.ok(
      !loaded.has('zod'),
      `zod is loaded in the ${actor} thread; decode its messages with src/protocol/actor-inbox.ts`,
    );
    assert.ok(!loaded.has('pino-pretty'), `pino-pretty is loaded in the ${actor} thread`);
  });
}

test("no thread of a server node loads Node's own copy of undici (an ES import of node:http would)", {
  timeout: 90_000,
}, () => {
  const internal = (entry: string): boolean => {
    const run = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `await import(${JSON.stringify(entry)});
      console.log(process.moduleLoadList.some((m) => m.includes('internal/deps/undici/undici')) ? 'loaded' : 'absent');`,
      ],
      { cwd: ROOT, encoding: 'utf8', timeout: 60_000 },
    );
    assert.equal(run.status, 0, run.stderr);
    return run.stdout.trim() === 'loaded';
  };
  assert.equal(
    internal('./src/workers/proxy.worker.ts'),
    false,
    "a proxy worker loads Node's undici: take node:http from src/net/node-http.ts",
  );
  assert.equal(
    internal('./src/cli/commands/serve.ts'),
    false,
    "a node's main thread loads Node's undici: take node:http from src/net/node-http.ts",
  );
  // The check sees it where it is loaded, so the assertions above can fail.
  assert.equal(internal('node:http'), true);
});
