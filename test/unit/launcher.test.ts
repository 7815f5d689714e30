/**
 * bin/ollana.mjs runs the build in dist/ when it is current and the TypeScript sources otherwise, so a
 * developer who edits src/ never runs stale code. Driven through a copy of the real launcher in a
 * scratch tree whose two entry points say which one ran.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';

const LAUNCHER = fileURLToPath(new URL('../../bin/ollana.mjs', import.meta.url));

function tree(t: TestContext): string {
  const root = mkdtempSync(join(tmpdir(), 'ollana-launcher-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'bin'));
  copyFileSync(LAUNCHER, join(root, 'bin', 'ollana.mjs'));
  writeFileSync(join(root, 'package.json'), '{"type":"module"}\n');
  mkdirSync(join(root, 'src', 'cli'), { recursive: true });
  const entry = (which: string): string =>
    `export function runAndExit(argv) { process.stdout.write('${which} ' + argv.join(' ') + '\\n'); }\n`;
  writeFileSync(join(root, 'src', 'main.ts'), entry('sources'));
  writeFileSync(join(root, 'src', 'cli', 'args.ts'), 'export {};\n');
  mkdirSync(join(root, 'dist'));
  writeFileSync(join(root, 'dist', 'main.js'), entry('build'));
  return root;
}

function run(root: string): string {
  const r = spawnSync(process.execPath, [join(root, 'bin', 'ollana.mjs'), 'serve', '--workers', '2'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

const at = (path: string, seconds: number): void => utimesSync(path, seconds, seconds);

test('the launcher runs the build when it is newer than every source file, with the arguments', (t) => {
  const root = tree(t);
  at(join(root, 'src', 'main.ts'), 1_000);
  at(join(root, 'src', 'cli', 'args.ts'), 1_000);
  at(join(root, 'dist', 'main.js'), 2_000);
  assert.equal(run(root), 'build serve --workers 2');
});

test('the launcher runs the sources when any file in src/ changed after the build, however deep', (t) => {
  const root = tree(t);
  at(join(root, 'src', 'main.ts'), 1_000);
  at(join(root, 'dist', 'main.js'), 2_000);
  at(join(root, 'src', 'cli', 'args.ts'), 3_000);
  assert.equal(run(root), 'sources serve --workers 2');
});

test('the launcher runs the sources when there is no build', (t) => {
  const root = tree(t);
  rmSync(join(root, 'dist'), { recursive: true });
  assert.equal(run(root), 'sources serve --workers 2');
});
