/**
 * One process per node (issue #21): a node started through the README's command with the system's
 * Node (20 in CI) on PATH is a single process, Node 24 itself: the pid that was spawned holds the
 * listening socket (found through /proc/net/tcp and /proc/PID/fd), no launcher stays as its parent
 * or child, and SIGTERM, Ctrl-C (SIGINT to the process group), SIGHUP, `serve -d` and `ollana stop`
 * behave as the node's own. The command of earlier READMEs (bin/ollana.mjs) still works.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync, realpathSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, removeHome, tempHome } from '../helpers/ollana-process.ts';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const NODE24 = realpathSync(join(ROOT, 'node_modules', 'node', 'bin', 'node'));
/** The README's first command, `npm ci && ./bin/... serve`: its program is what this file starts. */
const README_ENTRY = /^npm ci && (\.\/bin\/\S+) serve\b/m.exec(readFileSync(join(ROOT, 'README.md'), 'utf8'))?.[1];
/** PATH without node_modules/.bin (which npm puts first): `node` is the system's, as for a user. */
const SYSTEM_PATH = (process.env.PATH ?? '')
  .split(delimiter)
  .filter((d) => !/node_modules[\\/]\.bin$/.test(d) && !/node-gyp-bin$/.test(d))
  .join(delimiter);
const systemNode = spawnSync('node', ['--version'], { env: { ...process.env, PATH: SYSTEM_PATH }, encoding: 'utf8' });
const skip =
  process.platform !== 'linux'
    ? 'reads /proc (Linux)'
    : systemNode.status !== 0
      ? 'no Node.js on the system PATH'
      : undefined;

const homes: string[] = [];
const started: ChildProcess[] = [];
const daemons: number[] = [];
after(() => {
  // A node left by a failed assertion, and anything it started (a launcher's child, were there one).
  const tree = (pid: number): number[] => [pid, ...childrenOf(pid).flatMap(tree)];
  for (const c of started) {
    if (c.exitCode === null && c.signalCode === null)
      for (const pid of tree(c.pid!).reverse()) process.kill(pid, 'SIGKILL');
    c.stdout?.destroy();
    c.stderr?.destroy();
  }
  for (const pid of daemons) if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (const h of homes) removeHome(h);
});

function home(): string {
  const h = tempHome('ollana-one-process-');
  homes.push(h);
  return h;
}

const env = (h: string): NodeJS.ProcessEnv => ({
  ...process.env,
  PATH: SYSTEM_PATH,
  OLLANA_HOME: h,
  OLLANA_LOG: 'info',
  OLLANA_DISCOVERY: 'off',
});
const clientArgs = (port: number): string[] => [
  '--mode',
  'client',
  '--discovery',
  'off',
  '--listen',
  `127.0.0.1:${port}`,
  '--workers',
  '1',
];

interface Node {
  readonly proc: ChildProcess;
  readonly pid: number;
  readonly msgs: string[];
  /** Resolves once a log message includes `text`; rejects when the process exits first or after 20 s. */
  logged(text: string): Promise<void>;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * Until the node on `port` listens and has its signal handlers: `serve` adds them for SIGTERM,
 * SIGINT and then SIGHUP in one step just after the "listening" line, and SIGHUP is the one Node
 * does not catch by itself (SigCgt in /proc/PID/status; bit 0 = SIGHUP). A signal sent in between
 * would meet Node's default handling, not ollana's. The node is the process holding the socket
 * (behind a launcher, that is not the process started).
 */
async function ready(node: Node, port: number): Promise<void> {
  await node.logged('listening on');
  const pid = holders(listeningInode(port))[0];
  const deadline = Date.now() + 10_000;
  for (;;) {
    const mask = /^SigCgt:\s+([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'latin1'))?.[1] ?? '0';
    if ((BigInt(`0x${mask}`) & 1n) === 1n) return;
    if (Date.now() > deadline) throw new Error(`the node has no SIGHUP handler 10 s after it listens (SigCgt ${mask})`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Starts `entry serve ...args` from the checkout, as a user would type it; `group`: its own process group (a shell's foreground job). */
function serve(entry: string, args: readonly string[], h: string, group = false): Node {
  const proc = spawn(entry, ['serve', ...args], {
    cwd: ROOT,
    env: env(h),
    stdio: ['ignore', 'pipe', 'pipe'],
    detached: group,
  });
  started.push(proc);
  const msgs: string[] = [];
  const stderr: string[] = [];
  const waiters = new Set<() => void>();
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    try {
      msgs.push(String((JSON.parse(line) as { msg?: unknown }).msg));
    } catch {
      msgs.push(line);
    }
    for (const w of waiters) w();
  });
  createInterface({ input: proc.stderr! }).on('line', (line) => stderr.push(line));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const logged = (text: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        if (msgs.some((m) => m.includes(text))) {
          done();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`no "${text}" within 20 s:\n${msgs.join('\n')}\n${stderr.join('\n')}`));
      }, 20_000);
      const done = (): void => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      void exited.then(({ code, signal }) => {
        if (!waiters.has(check)) return;
        done();
        reject(new Error(`exited (${signal ?? code}) before "${text}":\n${msgs.join('\n')}\n${stderr.join('\n')}`));
      });
      check();
    });
  return { proc, pid: proc.pid!, msgs, logged, exited };
}

/** The inode of the socket listening on 127.0.0.1:port, from /proc/net/tcp. */
function listeningInode(port: number): string {
  const local = `0100007F:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of readFileSync('/proc/net/tcp', 'utf8').split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    // sl local_address rem_address st ... inode (field 10); st 0A = LISTEN
    if (f[1] === local && f[3] === '0A') return f[9]!;
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}

const pids = (): number[] =>
  readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .map(Number);

/** Every process with a file descriptor on that socket. */
function holders(inode: string): number[] {
  const out: number[] = [];
  for (const pid of pids()) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    if (
      fds.some((fd) => {
        try {
          return readlinkSync(`/proc/${pid}/fd/${fd}`) === `socket:[${inode}]`;
        } catch {
          return false;
        }
      })
    )
      out.push(pid);
  }
  return out;
}

function parentOf(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'latin1');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

const childrenOf = (pid: number): number[] =>
  pids().filter((p) => {
    try {
      return parentOf(p) === pid;
    } catch {
      return false;
    }
  });
const cmdline = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
  } catch {
    return '';
  }
};

function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

/** The node on `port` is exactly the process `pid`, running Node 24's program. */
function assertOneProcess(pid: number, port: number): void {
  assert.deepEqual(holders(listeningInode(port)), [pid], 'one process holds the listening socket: the node');
  assert.equal(realpathSync(`/proc/${pid}/exe`), NODE24, 'the node runs in Node 24 from node_modules');
  assert.deepEqual(childrenOf(pid).map(cmdline), [], 'the node has no child process (its workers are threads)');
}

test("the README's command under the system Node: the process spawned is the node, in Node 24; SIGTERM drains it and it exits 0", {
  skip,
  timeout: 60_000,
}, async () => {
  assert.ok(README_ENTRY !== undefined, 'the README starts with `npm ci && ./bin/... serve`');
  const port = await freePort();
  const node = serve(README_ENTRY, clientArgs(port), home());
  await ready(node, port);
  assertOneProcess(node.pid, port);
  assert.equal(parentOf(node.pid), process.pid, 'no launcher between this test and the node');
  node.proc.kill('SIGTERM');
  assert.deepEqual(await node.exited, { code: 0, signal: null });
  assert.ok(
    node.msgs.some((m) => m.startsWith('stopping (SIGTERM)')) && node.msgs.includes('stopped'),
    node.msgs.join('\n'),
  );
});

test('Ctrl-C (SIGINT to the foreground process group) drains the node once and it exits 0; a hang-up stops it too', {
  skip,
  timeout: 60_000,
}, async () => {
  assert.ok(README_ENTRY !== undefined);
  const port = await freePort();
  const node = serve(README_ENTRY, clientArgs(port), home(), true);
  await ready(node, port);
  process.kill(-node.pid, 'SIGINT');
  assert.deepEqual(await node.exited, { code: 0, signal: null });
  assert.ok(
    node.msgs.some((m) => m.startsWith('stopping (SIGINT)')) && node.msgs.includes('stopped'),
    node.msgs.join('\n'),
  );
  assert.ok(!node.msgs.some((m) => m.includes('second interrupt')), node.msgs.join('\n'));

  const hupPort = await freePort();
  const hup = serve(README_ENTRY, clientArgs(hupPort), home(), true);
  await ready(hup, hupPort);
  process.kill(-hup.pid, 'SIGHUP');
  assert.deepEqual(await hup.exited, { code: 0, signal: null });
  assert.ok(
    hup.msgs.some((m) => m.startsWith('stopping (SIGHUP)')),
    hup.msgs.join('\n'),
  );
});

test("serve -d and ollana stop through the README's command: the daemon is one process in Node 24, and stop drains it", {
  skip,
  timeout: 60_000,
}, async () => {
  assert.ok(README_ENTRY !== undefined);
  const h = home();
  const port = await freePort();
  const run = (args: readonly string[]): { status: number | null; stdout: string; stderr: string } =>
    spawnSync(README_ENTRY, args, { cwd: ROOT, env: env(h), encoding: 'utf8', timeout: 40_000 });
  const up = run(['serve', '-d', ...clientArgs(port)]);
  assert.equal(up.status, 0, up.stderr);
  const pid = Number(/\(pid (\d+)\)/.exec(up.stdout)?.[1]);
  daemons.push(pid);
  assertOneProcess(pid, port);
  assert.ok(
    !cmdline(parentOf(pid)).includes('ollana'),
    `the daemon's parent is no ollana launcher: ${cmdline(parentOf(pid))}`,
  );
  const stop = run(['stop']);
  assert.equal(stop.status, 0, stop.stderr);
  assert.ok(!alive(pid), 'the daemon is gone once `ollana stop` returns');
});

test("through the README's command, bad input still says what to do with its code and exit status, and --version prints", {
  skip,
  timeout: 30_000,
}, () => {
  assert.ok(README_ENTRY !== undefined);
  const h = home();
  const bad = spawnSync(README_ENTRY, ['serve', '--workers', 'many'], {
    cwd: ROOT,
    env: env(h),
    encoding: 'utf8',
    timeout: 20_000,
  });
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /--workers.*\[OLN_BAD_FLAG\]/s);
  const version = spawnSync(README_ENTRY, ['--version'], { cwd: ROOT, env: env(h), encoding: 'utf8', timeout: 20_000 });
  assert.equal(version.status, 0, version.stderr);
  assert.equal(
    version.stdout.trim(),
    (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version,
  );
});

test('the command of earlier READMEs, ./bin/ollana.mjs under the system Node, still runs the node, and Ctrl-C drains it once', {
  skip,
  timeout: 60_000,
}, async () => {
  const port = await freePort();
  const node = serve('./bin/ollana.mjs', clientArgs(port), home(), true);
  await ready(node, port);
  process.kill(-node.pid, 'SIGINT');
  assert.deepEqual(await node.exited, { code: 0, signal: null });
  assert.ok(
    node.msgs.some((m) => m.startsWith('stopping (SIGINT)')) && node.msgs.includes('stopped'),
    node.msgs.join('\n'),
  );
  assert.ok(!node.msgs.some((m) => m.includes('second interrupt')), node.msgs.join('\n'));
});
