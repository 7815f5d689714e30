#!/usr/bin/env node
// Launcher. ollana needs Node.js >= 24 (worker threads sharing a port need reusePort, and the
// TypeScript sources run through Node's type stripping). `npm ci` brings Node 24 from the npm
// registry into node_modules (the "node" package); when an older Node runs this file, hand over to it.
import { spawn } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const MIN_MAJOR = 24;
const main = fileURLToPath(new URL('../src/main.ts', import.meta.url));

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
