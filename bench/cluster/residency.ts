/**
 * The residency bench (issue #17, "Done when"): one client alternating two models over N requests
 * (default 100), first through a client node that knows one server, then through one that knows two.
 * Each server's emulator holds one model at a time (--max-loaded-models 1) and takes --load-ms to
 * load one, so a request for the other model is a cold load that evicts. Reported: cold loads (the
 * emulators' scheduler counters) and TTFB p50/p99 as the client sees it, for both. Target: with two
 * servers no more cold loads than one server needs, and TTFB p99 within 10 % of one server's.
 *
 *   node bench/cluster/residency.ts [N] [LOAD_MS]     (root: network namespaces; `npm run build` first)
 *
 * Prints a JSON summary and writes it to bench/results/cluster-residency-<time>.json.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createLan, netnsSkipReason, type Host } from '../../testkit/netns.ts';
import { NODE, removeHomes, startEmulator, startNode } from './harness.ts';

const N = Number(process.argv[2] ?? '100');
const LOAD_MS = Number(process.argv[3] ?? '500');
const MODELS = 'llama3.2:latest,qwen3:0.6b';
const PROBE = fileURLToPath(new URL('./probes/alternate.ts', import.meta.url));

function pct(list: number[], p: number): number {
  const s = [...list].sort((a, b) => a - b);
  return s.length === 0 ? Number.NaN : s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)]!;
}

async function json(host: Host, script: string): Promise<unknown> {
  const r = await host.exec(NODE, ['-e', script], 20_000);
  return JSON.parse(r.stdout);
}

/** Loads so far on the emulator of `host`, all models together. */
async function loads(host: Host): Promise<number> {
  const body = (await json(
    host,
    "fetch('http://127.0.0.1:11434/emulator/v1/sched').then((r) => r.text()).then((t) => process.stdout.write(t))",
  )) as { totals: { loads: number } };
  return body.totals.loads;
}

async function servers(client: Host): Promise<number> {
  const s = (await json(
    client,
    "fetch('http://127.0.0.1:11434/ollana/v1/status').then((r) => r.text()).then((t) => process.stdout.write(t))",
  )) as { upstreams?: { models: string[] }[] };
  return (s.upstreams ?? []).filter((u) => u.models.length === 2).length;
}

async function waitServers(client: Host, want: number): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if ((await servers(client).catch(() => 0)) === want) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the client node did not list ${want} servers`);
}

async function phase(
  client: Host,
  hosts: Host[],
): Promise<{ coldLoads: number; p50: number; p99: number; failed: number }> {
  const before = await Promise.all(hosts.map(loads));
  const r = await client.exec(NODE, [PROBE, String(N), MODELS], 600_000);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { ttfbMs: number[]; failed: string[] };
  const after = await Promise.all(hosts.map(loads));
  const coldLoads = after.reduce((sum, a, i) => sum + a - before[i]!, 0);
  return { coldLoads, p50: pct(out.ttfbMs, 50), p99: pct(out.ttfbMs, 99), failed: out.failed.length };
}

const skip = netnsSkipReason();
if (skip !== undefined) {
  process.stderr.write(`residency bench: ${skip}\n`);
  process.exit(2);
}
const lan = await createLan({ hosts: 4 });
try {
  const [h1, h2, h3, h4] = lan.hosts as [Host, Host, Host, Host];
  const emu = ['--tokens', '3', '--token-interval-ms', '2', '--ttft-ms', '0', '--models', MODELS];
  const args = [...emu, '--max-loaded-models', '1', '--load-ms', String(LOAD_MS)];
  await Promise.all([startEmulator(h1, { args }), startEmulator(h2, { args })]);
  // One server: its client node (h3) starts before the second server exists and runs with
  // --discovery on; the second client node (h4) comes after both servers are up.
  await startNode(h1, '300ms');
  await startNode(h3, '300ms');
  await waitServers(h3, 1);
  const one = await phase(h3, [h1]);
  await startNode(h2, '300ms');
  await startNode(h4, '300ms');
  await waitServers(h4, 2);
  const two = await phase(h4, [h1, h2]);
  const summary = {
    requests: N,
    loadMs: LOAD_MS,
    oneServer: one,
    twoServers: two,
    coldLoadsOk: two.coldLoads <= one.coldLoads,
    ttfbP99Ratio: Number((two.p99 / one.p99).toFixed(3)),
  };
  const dir = fileURLToPath(new URL('../results/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    `${dir}cluster-residency-${new Date().toISOString().replace(/[:.]/g, '-')}.json`,
    JSON.stringify(summary, null, 2),
  );
  process.stdout.write(`${JSON.stringify(summary)}\n`);
} finally {
  await lan.close();
  removeHomes();
}
