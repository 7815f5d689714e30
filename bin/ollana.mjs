#!/usr/bin/env node
// Launcher. ollana needs Node.js >= 24 (worker threads sharing a port need reusePort). `npm ci` brings
// Node 24 from the npm registry into node_modules (the "node" package) and builds the TypeScript in
// src/ into JavaScript in dist/ (its "prepare" script); when an older Node runs this file, hand over to
// that Node 24. The build is what runs: every thread then loads plain JavaScript instead of setting up
// Node's type stripper, which costs ~10 MB per thread. When src/ has changed since the last build (a
// developer editing), the sources run directly through type stripping, so nothing stale ever runs.
import { spawn } from 'node:child_process';
import { readdirSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const MIN_MAJOR = 24;
const root = fileURLToPath(new URL('..', import.meta.url));
const main = builtIsCurrent() ? join(root, 'dist', 'main.js') : join(root, 'src', 'main.ts');

/** Whether dist/main.js was built after every file in src/ last changed. */
function builtIsCurrent() {
  let built;
  try {
    built = statSync(join(root, 'dist', 'main.js')).mtimeMs;
  } catch {
    return false;
  }
  const newer = (dir) => readdirSync(dir, { withFileTypes: true }).some((e) => {
    const p = join(dir, e.name);
    return e.isDirectory() ? newer(p) : statSync(p).mtimeMs > built;
  });
  try {
    return !newer(join(root, 'src'));
  } catch {
    return false;
  }
}

if (Number(process.versions.node.split('.')[0]) >= MIN_MAJOR) {
  process.argv[1] = main;
  const { runAndExit } = await import(main);
  runAndExit(process.argv.slice(2), process.env);
} else {
  let nodeBin;
  try {
    nodeBin = createRequire(import.meta.url).resolve('node/bin/node');
  } catch {
    process.stderr.write(`ollana: needs Node.js ${MIN_MAJOR} or newer, and this is ${process.version}; ` +
      'run `npm ci` in the ollana folder (it fetches Node 24 from the npm registry) or install Node 24 [OLN_USAGE]\n');
    process.exit(2);
  }
  const child = spawn(nodeBin, [main, ...process.argv.slice(2)], { stdio: 'inherit' });
  for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => child.kill(sig));
  child.on('exit', (code, signal) => {
    if (signal) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
}
