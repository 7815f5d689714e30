/**
 * Every proxy worker is a V8 isolate of its own, so each library its entry loads is paid once per
 * worker: zod (~12 MB, the supervisor's message schemas) and pino-pretty (a terminal's log printer)
 * must stay out of it. The entry is imported in a child process with a preload that reports every
 * package resolved.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

function packagesImportedBy(entry: string): Set<string> {
  const run = spawnSync(process.execPath, ['--import', './test/fixtures/report-imports.ts', '--input-type=module',
    '-e', `await import(${JSON.stringify(entry)}); console.log('loaded');`], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), 'loaded');
  return new Set(run.stderr.split('\n').flatMap((l) => (l.startsWith('imported ') ? [l.slice('imported '.length)] : [])));
}

test('a proxy worker loads undici and pino, not zod or pino-pretty', { timeout: 90_000 }, () => {
  const proxy = packagesImportedBy('./src/workers/proxy.worker.ts');
  assert.ok(proxy.has('undici') && proxy.has('pino'), `the preload saw nothing useful: ${[...proxy].join(', ')}`);
  assert.ok(!proxy.has('zod'), 'zod is loaded in every proxy worker; decode its messages with src/protocol/proxy-inbox.ts');
  assert.ok(!proxy.has('pino-pretty'), 'pino-pretty is loaded in every proxy worker');
  // The same preload does see zod where it belongs, so the check above can fail.
  assert.ok(packagesImportedBy('./src/protocol/codec.ts').has('zod'));
});
