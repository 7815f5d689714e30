/**
 * Idle memory of ollana checkouts side by side: starts `ollana serve --mode server` from each given
 * checkout in turn (A B A B ...), waits until every proxy worker listens and a few requests went
 * through, lets it settle, and reads VmRSS (now) and VmHWM (the peak since start) from /proc. What a
 * change to the threads' start-up costs (a module loaded in every worker, a heap limit) shows here
 * without load noise. Each checkout's nodes share one data directory whose identity exists already,
 * as on every start but a node's first.
 *
 *   node bench/idle-rss.ts [--workers N] [--rounds N] [--settle-ms N] [--lan] ROOT [ROOT...]
 *
 * By default the node runs in this machine's network namespace with --discovery off (it must send
 * nothing to the real network), so it has no discovery thread and, since that change, no election
 * thread. --lan (root, Linux) runs it with discovery on, as on a LAN, inside a one-host virtual LAN
 * of network namespaces (test/helpers/netns.ts), with the emulator on that host's loopback; the
 * requests are made from inside the host too.
 *
 * Every checkout runs with the same node and flags; the emulator stands in for Ollama on loopback.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { createLan, netnsSkipReason, type Lan } from '../test/helpers/netns.ts';
import { startChild, stopAll, stopChild, waitUntil } from './lib/children.ts';
import { startEmulator } from './lib/emulator.ts';
import { memory, type Memory } from './lib/proc-stats.ts';
import { freePort } from './lib/systems.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    workers: { type: 'string', default: '2' }, rounds: { type: 'string', default: '3' }, 'settle-ms': { type: 'string', default: '3000' },
    lan: { type: 'boolean', default: false },
  },
});
const workers = Number(values.workers);
const rounds = Number(values.rounds);
const settleMs = Number(values['settle-ms']);
if (positionals.length === 0 || ![workers, rounds, settleMs].every((n) => Number.isInteger(n) && n > 0)) {
  process.stderr.write('usage: node bench/idle-rss.ts [--workers N] [--rounds N] [--settle-ms N] [--lan] ROOT [ROOT...]\n');
  process.exit(2);
}
const lanSkip = values.lan ? netnsSkipReason({ nft: false }) : undefined;
if (lanSkip !== undefined) {
  process.stderr.write(`--lan cannot run here: ${lanSkip}\n`);
  process.exit(2);
}
const roots = positionals.map((r) => resolve(r));
const EMULATOR = fileURLToPath(new URL('../test/fixtures/ollama-emulator.ts', import.meta.url));
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
const samples = new Map<string, Memory[]>(roots.map((r) => [r, []]));
/** The launcher: it runs a checkout's build (dist/) when that is current, else its TypeScript sources. */
const entry = (root: string): string => join(root, 'bin/ollana.mjs');
/**
 * One data directory per checkout, its identity made beforehand (`ollana device show`): only a node's
 * first start ever creates its certificate, and loads the X.509 library (~13 MB) to do it.
 */
const homes = new Map(roots.map((root) => {
  const home = mkdtempSync(join(work, 'home-'));
  const made = spawnSync(process.execPath, [entry(root), 'device', 'show'], { env: { ...process.env, OLLANA_HOME: home }, encoding: 'utf8' });
  if (made.status !== 0) process.stderr.write(`${root}: \`device show\` failed, so its nodes make their identity at start: ${made.stderr}\n`);
  return [root, home];
}));
const serveArgs = (root: string, listen: string, ollamaUrl: string): string[] => [entry(root), 'serve', '--mode', 'server',
  '--listen', listen, '--ollama-url', ollamaUrl, '--workers', String(workers), '--insecure-http'];

/** In this namespace, discovery off. */
async function sampleHere(root: string, emulatorUrl: string): Promise<Memory> {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const child = startChild('ollana', process.execPath, [...serveArgs(root, `127.0.0.1:${port}`, emulatorUrl), '--discovery', 'off'],
    { cpus: null, env: { OLLANA_HOME: homes.get(root)!, OLLANA_DISCOVERY: 'off' } });
  try {
    await waitUntil(child, async () => {
      const res = await fetch(`${url}/ollana/v1/status`, { signal: AbortSignal.timeout(2_000) });
      const status = await res.json() as { workers?: { live?: number } };
      return status.workers?.live === workers;
    }, 30_000, `${workers} live workers`);
    // A few forwarded requests per worker, so the path a request takes is loaded, as in a live node.
    for (let i = 0; i < 20 * workers; i++) await (await fetch(`${url}/api/tags`)).arrayBuffer();
    await new Promise((r) => setTimeout(r, settleMs));
    return memory(child.pid) ?? { rssBytes: 0, hwmBytes: 0 };
  } finally {
    await stopChild(child, 10_000);
  }
}

/** Inside the LAN's one host, discovery on (the default). */
async function sampleInLan(root: string, lan: Lan): Promise<Memory> {
  const host = lan.hosts[0]!;
  const proc = host.spawn(process.execPath, serveArgs(root, '127.0.0.1:11435', 'http://127.0.0.1:11434'),
    { env: { OLLANA_HOME: homes.get(root)!, OLLANA_DISCOVERY: undefined, OLLANA_LOG: 'info' } });
  try {
    await proc.waitForLine((t) => t.includes('discovery on UDP'), 30_000);
    const warm = await host.exec(process.execPath, ['--input-type=module', '-e', WARM, 'http://127.0.0.1:11435', String(workers)], 60_000);
    if (warm.stdout.trim() !== 'warm') throw new Error(`warming the node failed: ${warm.stdout} ${warm.stderr}`);
    await new Promise((r) => setTimeout(r, settleMs));
    return (proc.pid === undefined ? null : memory(proc.pid)) ?? { rssBytes: 0, hwmBytes: 0 };
  } finally {
    await proc.stop(10_000);
  }
}

const lan = values.lan ? await createLan({ hosts: 1 }) : null;
try {
  let sample: (root: string) => Promise<Memory>;
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
      process.stdout.write(`round ${round + 1}/${rounds} ${root}: ${(m.rssBytes / 2 ** 20).toFixed(1)} MB (peak ${(m.hwmBytes / 2 ** 20).toFixed(1)} MB)\n`);
    }
  }
} finally {
  await lan?.close();
  await stopAll();
  rmSync(work, { recursive: true, force: true });
}
const mb = (n: number): string => (n / 2 ** 20).toFixed(1);
const median = (list: number[]): number => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
for (const [root, list] of samples) {
  const rss = list.map((m) => m.rssBytes);
  process.stdout.write(`${root}: idle RSS median ${mb(median(rss))} MB (min ${mb(Math.min(...rss))}, max ${mb(Math.max(...rss))}), ` +
    `peak median ${mb(median(list.map((m) => m.hwmBytes)))} MB, --workers ${workers}${values.lan ? ', discovery on (--lan)' : ', --discovery off'}\n`);
}
