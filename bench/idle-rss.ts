/**
 * Idle memory of ollana checkouts side by side: starts `ollana serve --mode server` from each given
 * checkout in turn (A B A B ...), waits until every proxy worker listens and a few requests went
 * through, lets it settle, and reads VmRSS from /proc. What a change to the threads' start-up costs
 * (a module loaded in every worker, a heap limit) shows here without load noise.
 *
 *   node bench/idle-rss.ts [--workers N] [--rounds N] [--settle-ms N] ROOT [ROOT...]
 *
 * Every checkout runs with the same node and flags; the emulator stands in for Ollama on loopback.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { startChild, stopAll, stopChild, waitUntil } from './lib/children.ts';
import { startEmulator } from './lib/emulator.ts';
import { memory } from './lib/proc-stats.ts';
import { freePort } from './lib/systems.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: { workers: { type: 'string', default: '2' }, rounds: { type: 'string', default: '3' }, 'settle-ms': { type: 'string', default: '3000' } },
});
const workers = Number(values.workers);
const rounds = Number(values.rounds);
const settleMs = Number(values['settle-ms']);
if (positionals.length === 0 || ![workers, rounds, settleMs].every((n) => Number.isInteger(n) && n > 0)) {
  process.stderr.write('usage: node bench/idle-rss.ts [--workers N] [--rounds N] [--settle-ms N] ROOT [ROOT...]\n');
  process.exit(2);
}
const roots = positionals.map((r) => resolve(r));

const emulator = await startEmulator(null);
const work = mkdtempSync(join(tmpdir(), 'ollana-idle-rss-'));
const samples = new Map<string, number[]>(roots.map((r) => [r, []]));
try {
  for (let round = 0; round < rounds; round++) {
    for (const root of roots) {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const child = startChild('ollana', process.execPath, [join(root, 'src/main.ts'), 'serve', '--mode', 'server',
        '--listen', `127.0.0.1:${port}`, '--ollama-url', emulator.url, '--workers', String(workers), '--discovery', 'off', '--insecure-http'],
      { cpus: null, env: { OLLANA_HOME: mkdtempSync(join(work, 'home-')), OLLANA_DISCOVERY: 'off' } });
      await waitUntil(child, async () => {
        const res = await fetch(`${url}/ollana/v1/status`, { signal: AbortSignal.timeout(2_000) });
        const status = await res.json() as { workers?: { live?: number } };
        return status.workers?.live === workers;
      }, 30_000, `${workers} live workers`);
      // A few forwarded requests per worker, so the path a request takes is loaded, as in a live node.
      for (let i = 0; i < 20 * workers; i++) await (await fetch(`${url}/api/tags`)).arrayBuffer();
      await new Promise((r) => setTimeout(r, settleMs));
      const rss = memory(child.pid)?.rssBytes ?? 0;
      samples.get(root)!.push(rss);
      process.stdout.write(`round ${round + 1}/${rounds} ${root}: ${(rss / 2 ** 20).toFixed(1)} MB\n`);
      await stopChild(child, 10_000);
    }
  }
} finally {
  await stopAll();
  rmSync(work, { recursive: true, force: true });
}
for (const [root, list] of samples) {
  const sorted = [...list].sort((a, b) => a - b);
  const mb = (n: number): string => (n / 2 ** 20).toFixed(1);
  process.stdout.write(`${root}: idle RSS median ${mb(sorted[Math.floor(sorted.length / 2)]!)} MB ` +
    `(min ${mb(sorted[0]!)}, max ${mb(sorted.at(-1)!)}), --workers ${workers}\n`);
}
