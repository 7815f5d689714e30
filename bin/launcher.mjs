// How ollana gets from the Node that started it to Node.js >= 24 (worker threads sharing a port need
// reusePort), and which entry it runs. Every platform difference of starting ollana is in this file;
// it is plain JavaScript because any Node may load it (a Node 20 of the system, say).
//
// `npm ci` brings Node 24 from the npm registry into node_modules (the package "node") and builds the
// TypeScript in src/ into JavaScript in dist/ ("prepare"). The hand-over, best first:
//   in-process  this Node is 24 or newer: import the entry here;
//   exec        an older Node that has process.execve (>= 22.15 or 23.11, not on Windows): replace
//               this process with Node 24, keeping its pid, stdio, signals and exit status;
//   child       Windows, or an older Node without execve: run Node 24 as a child and stay as its
//               parent, passing on its exit status (and on Linux and macOS, the signals sent to us).
// On Linux and macOS, bin/ollana (a shell script) execs Node 24 on this file before any Node starts,
// so the child case is only reached by running `node bin/ollana.mjs` with an old Node, or on Windows.
import { spawn } from 'node:child_process';
import { accessSync, constants, readdirSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const MIN_MAJOR = 24;
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const PASSED_ON = /** @type {const} */ (['SIGTERM', 'SIGINT', 'SIGHUP']);

/**
 * The entry to run: the build (dist/main.js) when it was built after every file in src/ last
 * changed, else the sources (a developer editing: nothing stale ever runs). The build is what
 * normally runs: every thread then loads plain JavaScript instead of setting up Node's type
 * stripper, which costs ~10 MB per thread.
 * @param {string} root
 * @returns {string}
 */
export function mainScript(root) {
  return builtIsCurrent(root) ? join(root, 'dist', 'main.js') : join(root, 'src', 'main.ts');
}

/** @param {string} root */
function builtIsCurrent(root) {
  let built;
  try {
    built = statSync(join(root, 'dist', 'main.js')).mtimeMs;
  } catch {
    return false;
  }
  /** @param {string} dir @returns {boolean} */
  const newer = (dir) =>
    readdirSync(dir, { withFileTypes: true }).some((e) => {
      const p = join(dir, e.name);
      return e.isDirectory() ? newer(p) : statSync(p).mtimeMs > built;
    });
  try {
    return !newer(join(root, 'src'));
  } catch {
    return false;
  }
}

/**
 * How this Node hands over to Node 24.
 * @param {{ major: number, platform: string, hasExecve: boolean }} node
 * @returns {'in-process' | 'exec' | 'child'}
 */
export function handOverMethod({ major, platform, hasExecve }) {
  if (major >= MIN_MAJOR) return 'in-process';
  // Node has no execve on Windows (nor does Windows have exec: a new process gets a new pid).
  if (platform !== 'win32' && hasExecve) return 'exec';
  return 'child';
}

/**
 * Node 24's program from the npm package "node", found like any dependency (in node_modules here
 * or in a parent's, where npm hoists it); null when it is not installed.
 * @param {string} platform
 * @param {string} [from] the module the lookup starts from
 * @returns {string | null}
 */
export function bundledNode(platform, from = import.meta.url) {
  let pkg;
  try {
    pkg = createRequire(from).resolve('node/package.json');
  } catch {
    return null;
  }
  // On Windows the package's bin/node is a placeholder text file; the program is bin/node.exe.
  return join(dirname(pkg), 'bin', platform === 'win32' ? 'node.exe' : 'node');
}

/**
 * Runs ollana with `argv`. The options stand in for facts of the running Node, for tests.
 * @param {readonly string[]} argv
 * @param {{ root?: string, platform?: string, major?: number,
 *   execve?: ((file: string, args: readonly string[], env: NodeJS.ProcessEnv) => never) | null,
 *   nodeBin?: string | null }} [o]
 * @returns {Promise<void>}
 */
export async function launch(argv, o = {}) {
  const root = o.root ?? ROOT;
  const platform = o.platform ?? process.platform;
  const major = o.major ?? Number(process.versions.node.split('.')[0]);
  const execve = o.execve === undefined ? process.execve : o.execve;
  const main = mainScript(root);
  const how = handOverMethod({ major, platform, hasExecve: typeof execve === 'function' });

  if (how === 'in-process') {
    process.argv[1] = main;
    /** @type {{ runAndExit: (argv: readonly string[], env: NodeJS.ProcessEnv) => void }} */
    const entry = await import(pathToFileURL(main).href);
    entry.runAndExit(argv, process.env);
    return;
  }
  const nodeBin = o.nodeBin !== undefined ? o.nodeBin : bundledNode(platform);
  if (nodeBin === null || isThisOldNode(nodeBin)) {
    process.stderr.write(
      `ollana: needs Node.js ${MIN_MAJOR} or newer, and this is ${process.version}; ` +
        'run `npm ci` in the ollana folder (it fetches Node 24 from the npm registry) or install Node 24 [OLN_USAGE]\n',
    );
    process.exit(2);
  }
  // Checked first: a failed process.execve ends Node at once, with no error to catch.
  try {
    accessSync(nodeBin, constants.X_OK);
  } catch (err) {
    cannotStart(nodeBin, err);
  }
  if (how === 'exec' && typeof execve === 'function') execve(nodeBin, [nodeBin, main, ...argv], process.env);
  else runChild(nodeBin, [main, ...argv], platform);
}

/**
 * Node 24's program is there by name but does not run (a broken or half-done install): say so, exit 2.
 * @param {string} nodeBin
 * @param {unknown} err
 * @returns {never}
 */
function cannotStart(nodeBin, err) {
  process.stderr.write(
    `ollana: cannot start Node.js ${MIN_MAJOR} (${nodeBin}): ${err instanceof Error ? err.message : String(err)}; ` +
      'run `npm ci` in the ollana folder (it fetches Node 24 from the npm registry) [OLN_USAGE]\n',
  );
  process.exit(2);
}

/**
 * Whether `file` is the Node running now and that is older than 24: an old Node in
 * node_modules/node would hand over to itself forever.
 * @param {string} file
 */
function isThisOldNode(file) {
  if (Number(process.versions.node.split('.')[0]) >= MIN_MAJOR) return false;
  try {
    return realpathSync(file) === realpathSync(process.execPath);
  } catch {
    return false;
  }
}

/**
 * Node 24 as a child; this process exits as it does. On Linux and macOS the child gets a process
 * group of its own, so that a terminal's Ctrl-C (sent to the foreground group) reaches it once,
 * through us, as `kill` from elsewhere does; a daemon's `ollana stop` signals the node directly.
 * Windows has no signals to pass on: `child.kill` would end Node 24 at once instead of letting it
 * drain, and a console's Ctrl-C reaches every process attached to it; we only stay alive meanwhile.
 * @param {string} nodeBin
 * @param {readonly string[]} args
 * @param {string} platform
 */
function runChild(nodeBin, args, platform) {
  const posix = platform !== 'win32';
  const child = spawn(nodeBin, args, { stdio: 'inherit', detached: posix });
  /** @param {NodeJS.Signals} sig */
  const passOn = (sig) => {
    if (posix) child.kill(sig);
  };
  for (const sig of PASSED_ON) process.on(sig, passOn);
  child.once('error', (err) => cannotStart(nodeBin, err));
  child.once('exit', (code, signal) => {
    for (const sig of PASSED_ON) process.off(sig, passOn);
    // Killed by a signal: die of the same one, so whoever started us sees what happened.
    if (signal !== null) process.kill(process.pid, signal);
    else process.exit(code ?? 1);
  });
}
