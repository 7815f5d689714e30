/**
 * Idle memory of ollana checkouts side by side: starts `ollana serve` (--mode server, or client) from
 * each given checkout in turn (A B A B ...), waits until every proxy worker listens and a few
 * requests went through, lets it settle, and reads VmRSS (now) and VmHWM (the peak since start) from
 * /proc. What a change to the threads' start-up costs (a module loaded in every worker, a heap limit)
 * shows here without load noise. Each checkout's nodes share one data directory whose identity exists
 * already, as on every start but a node's first.
 *
 * A node is started the way its README says, by the command a user types: `bin/ollana` where the
 * checkout has it (a shell script that execs Node 24), else `bin/ollana.mjs`, each run by its own
 * first line with the system's Node first on PATH (node_modules/.bin taken out), as on a machine
 * with an older Node. The memory counted is that of every process of the node, the process started
 * and all its descendants (a launcher that stays as Node 24's parent included), and each is listed.
 *
 *   node bench/idle-rss.ts [--workers N] [--rounds N] [--settle-ms N] [--mode server|client] [--lan] ROOT [ROOT...]
 *   (--help lists them, each also a BENCH_IDLE_RSS_* variable)
 *
 * By default the node runs in this machine's network namespace with --discovery off (it must send
 * nothing to the real network), so it has no discovery thread and, since that change, no election
 * thread. --lan (root, Linux) runs it with discovery on, as on a LAN, inside a one-host virtual LAN
 * of network namespaces (testkit/netns.ts), with the emulator on that host's loopback; the
 * requests are made from inside the host too.
 *
 * Every checkout runs with the same node and flags; the emulator stands in for Ollama on loopback.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLan, netnsSkipReason, type Lan } from '../testkit/netns.ts';
import { startChild, stopAll, stopChild, waitUntil } from './lib/children.ts';
import {
  BenchUsageError,
  bool,
  helpText,
  oneOf,
  parseOptions,
  positive,
  type OptionSpec,
  type ParseResult,
} from './lib/cli.ts';
import { startEmulator } from './lib/emulator.ts';
import { memory, processTree, type Memory } from './lib/proc-stats.ts';
import { freePort } from './lib/systems.ts';

/** Every option: flag, BENCH_IDLE_RSS_ variable, help, parser and default. */
const OPTIONS = {
  workers: {
    flag: 'workers',
    arg: 'N',
    env: 'WORKERS',
    help: 'ollana --workers',
    shows: 'default 2',
    parse: positive(),
    fallback: () => 2,
  },
  rounds: {
    flag: 'rounds',
    arg: 'N',
    env: 'ROUNDS',
    help: 'rounds, checkouts alternating',
    shows: 'default 3',
    parse: positive(),
    fallback: () => 3,
  },
  settleMs: {
    flag: 'settle-ms',
    arg: 'N',
    env: 'SETTLE_MS',
    help: 'ms to wait after the warm-up requests before reading memory',
    shows: 'default 3000',
    parse: positive(),
    fallback: () => 3000,
  },
  mode: {
    flag: 'mode',
    arg: 'M',
    env: 'MODE',
    help: '--mode of the node: server or client',
    shows: 'default server',
    parse: oneOf(['server', 'client'] as const),
    fallback: (): 'server' | 'client' => 'server',
  },
  lan: {
    flag: 'lan',
    boolean: 'on',
    env: 'LAN',
    help: 'discovery on, inside a one-host virtual LAN (root, Linux)',
    parse: bool,
    fallback: () => false,
  },
} satisfies Record<string, OptionSpec<unknown>>;
const USAGE = 'Usage: node bench/idle-rss.ts [options] ROOT [ROOT...]';

let parsed: ParseResult<typeof OPTIONS>;
try {
  parsed = parseOptions(OPTIONS, process.argv.slice(2), process.env, 'BENCH_IDLE_RSS_', { positionals: true });
  if (!parsed.help && parsed.positionals.length === 0) throw new BenchUsageError('give at least one checkout ROOT');
} catch (err) {
  if (!(err instanceof BenchUsageError)) throw err;
  process.stderr.write(`bench/idle-rss: ${err.message}; see node bench/idle-rss.ts --help\n`);
  process.exit(2);
}
if (parsed.help) {
  process.stdout.write(helpText(USAGE, OPTIONS, 'BENCH_IDLE_RSS_'));
  process.exit(0);
}
const { workers, rounds, settleMs, mode, lan: onLan } = parsed.options;
const positionals = parsed.positionals;
const lanSkip = onLan ? netnsSkipReason({ nft: false }) : undefined;
if (lanSkip !== undefined) {
  process.stderr.write(`--lan cannot run here: ${lanSkip}\n`);
  process.exit(2);
}
const roots = positionals.map((r) => resolve(r));
const EMULATOR = fileURLToPath(new URL('../testkit/ollama-emulator.ts', import.meta.url));
/** Run inside the LAN host: waits for the workers, then sends a few requests per worker. */
const WARM = `
const [url, workers] = [process.argv[1], Number(process.argv[2])];
const deadline = Date.now() + 30_000;
for (;;) {
  const s = await fetch(url + '/ollana/v1/status').then((r) => r.json()).catch(() => null);
  if (s?.workers?.live === workers) break;
  if (Date.now() > deadline) throw new Error(workers + ' live workers not reached in 30 s: ' + JSON.stringify(s?.workers));
  await new Promise((r) => setTimeout(r, 200));
}
for (let i = 0; i < 20 * workers; i++) await (await fetch(url + '/api/tags')).arrayBuffer();
console.log('warm');
`;

const work = mkdtempSync(join(tmpdir(), 'ollana-idle-rss-'));

/** One process of a node: its memory and command line. */
interface ProcessMemory extends Memory {
  readonly pid: number;
  readonly command: string;
}
/** A node's memory: the sum over its processes, and each of them (the process started first). */
interface NodeMemory extends Memory {
  readonly processes: readonly ProcessMemory[];
}

/** The process `pid` and its descendants, each with its memory, and their sum. */
function nodeMemory(pid: number): NodeMemory {
  const processes: ProcessMemory[] = [];
  for (const p of processTree(pid)) {
    const m = memory(p);
    if (m === null) continue;
    let command = '';
    try {
      command = readFileSync(`/proc/${p}/cmdline`, 'utf8')
        .split('\0')
        .filter((a) => a !== '')
        .slice(0, 3)
        .join(' ');
    } catch {
      /* gone */
    }
    processes.push({ pid: p, command, ...m });
  }
  return {
    rssBytes: processes.reduce((n, p) => n + p.rssBytes, 0),
    hwmBytes: processes.reduce((n, p) => n + p.hwmBytes, 0),
    processes,
  };
}

const samples = new Map<string, NodeMemory[]>(roots.map((r) => [r, []]));
/** The checkout's own launcher, run by the Node running this bench (24): for `device show`. */
const launcher = (root: string): string => join(root, 'bin/ollana.mjs');
/** The README's command: bin/ollana (sh, execs Node 24) where the checkout has it, else bin/ollana.mjs (its shebang runs the system's Node). */
const entry = (root: string): string =>
  existsSync(join(root, 'bin/ollana')) ? join(root, 'bin/ollana') : join(root, 'bin/ollana.mjs');
/** PATH as a user's shell has it: the system's Node, not node_modules/.bin's (which npm puts first). */
const SYSTEM_PATH = (process.env.PATH ?? '')
  .split(delimiter)
  .filter((d) => !/node_modules[\\/]\.bin$/.test(d) && !/node-gyp-bin$/.test(d))
  .join(delimiter);
/**
 * One data directory per checkout, its identity made beforehand (`ollana device show`): only a node's
 * first start ever creates its certificate, and loads the X.509 library (~13 MB) to do it.
 */
const homes = new Map(
  roots.map((root) => {
    const home = mkdtempSync(join(work, 'home-'));
    const made = spawnSync(process.execPath, [launcher(root), 'device', 'show'], {
      env: { ...process.env, OLLANA_HOME: home },
      encoding: 'utf8',
    });
    if (made.status !== 0)
      process.stderr.write(
        `${root}: \`device show\` failed, so its nodes make their identity at start: ${made.stderr}\n`,
      );
    return [root, home];
  }),
);
/** A client node needs no Ollama; it answers the warm-up requests itself (no server node known). */
const serveArgs = (listen: string, ollamaUrl: string): string[] => [
  'serve',
  '--mode',
  mode,
  '--listen',
  listen,
  '--workers',
  String(workers),
  ...(mode === 'server' ? ['--ollama-url', ollamaUrl, '--insecure-http'] : []),
];

/** In this namespace, discovery off. */
async function sampleHere(root: string, emulatorUrl: string): Promise<NodeMemory> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = startChild(
    'ollana',
    entry(root),
    [...serveArgs(`127.0.0.1:${port}`, emulatorUrl), '--discovery', 'off'],
    { cpus: null, env: { OLLANA_HOME: homes.get(root)!, OLLANA_DISCOVERY: 'off', PATH: SYSTEM_PATH } },
  );
  try {
    await waitUntil(
      child,
      async () => {
        const res = await fetch(`${url}/ollana/v1/status`, { signal: AbortSignal.timeout(2_000) });
        const status = (await res.json()) as { workers?: { live?: number } };
        return status.workers?.live === workers;
      },
      30_000,
      `${workers} live workers`,
    );
    // A few forwarded requests per worker, so the path a request takes is loaded, as in a live node.
    for (let i = 0; i < 20 * workers; i++) await (await fetch(`${url}/api/tags`)).arrayBuffer();
    await new Promise((r) => setTimeout(r, settleMs));
    return nodeMemory(child.pid);
  } finally {
    await stopChild(child, 10_000);
  }
}

/** Inside the LAN's one host, discovery on (the default). */
/** Where the node listens inside the LAN host, whose 127.0.0.1:11434 the emulator holds. */
const LAN_LISTEN = mode === 'server' ? '127.0.0.1:11435' : '127.0.0.1:11444';

async function sampleInLan(root: string, lan: Lan): Promise<NodeMemory> {
  const host = lan.hosts[0]!;
  const proc = host.spawn(entry(root), serveArgs(LAN_LISTEN, 'http://127.0.0.1:11434'), {
    env: { OLLANA_HOME: homes.get(root)!, OLLANA_DISCOVERY: undefined, OLLANA_LOG: 'info', PATH: SYSTEM_PATH },
  });
  try {
    await proc.waitForLine((t) => t.includes('discovery on UDP'), 30_000);
    const warm = await host.exec(
      process.execPath,
      ['--input-type=module', '-e', WARM, `http://${LAN_LISTEN}`, String(workers)],
      60_000,
    );
    if (warm.stdout.trim() !== 'warm') throw new Error(`warming the node failed: ${warm.stdout} ${warm.stderr}`);
    await new Promise((r) => setTimeout(r, settleMs));
    return proc.pid === undefined ? { rssBytes: 0, hwmBytes: 0, processes: [] } : nodeMemory(proc.pid);
  } finally {
    await proc.stop(10_000);
  }
}

function mb(n: number): string {
  return (n / 2 ** 20).toFixed(1);
}

const lan = onLan ? await createLan({ hosts: 1 }) : null;
try {
  let sample: (root: string) => Promise<NodeMemory>;
  if (lan !== null) {
    const emu = lan.hosts[0]!.spawn(process.execPath, [EMULATOR, '--port', '11434']);
    await emu.waitForLine((t) => t.includes('"url"'), 20_000);
    sample = (root) => sampleInLan(root, lan);
  } else {
    const emulator = await startEmulator(null);
    sample = (root) => sampleHere(root, emulator.url);
  }
  for (let round = 0; round < rounds; round++) {
    for (const root of roots) {
      const m = await sample(root);
      samples.get(root)!.push(m);
      process.stdout.write(
        `round ${round + 1}/${rounds} ${root}: ${mb(m.rssBytes)} MB (peak ${mb(m.hwmBytes)} MB) in ${m.processes.length} ` +
          `process${m.processes.length === 1 ? '' : 'es'}: ${m.processes.map((p) => `${mb(p.rssBytes)} MB ${p.command}`).join('; ')}\n`,
      );
    }
  }
} finally {
  await lan?.close();
  await stopAll();
  rmSync(work, { recursive: true, force: true });
}
const median = (list: number[]): number => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
for (const [root, list] of samples) {
  const rss = list.map((m) => m.rssBytes);
  const counts = [...new Set(list.map((m) => m.processes.length))].join(' or ');
  // Per process, by its place in the tree (the process started first): a launcher shows as its own line.
  const places = Math.max(...list.map((m) => m.processes.length));
  const each = Array.from({ length: places }, (_, i) => {
    const at = list.map((m) => m.processes[i]).filter((p) => p !== undefined);
    return `${mb(median(at.map((p) => p.rssBytes)))} MB ${at[0]?.command ?? ''}`;
  }).join('; ');
  process.stdout.write(
    `${root}: idle RSS median ${mb(median(rss))} MB (min ${mb(Math.min(...rss))}, max ${mb(Math.max(...rss))}) ` +
      `summed over ${counts} process${counts === '1' ? '' : 'es'} (${each}), peak median ${mb(median(list.map((m) => m.hwmBytes)))} MB, ` +
      `${mode} node, --workers ${workers}${onLan ? ', discovery on (--lan)' : ', --discovery off'}\n`,
  );
}
