/**
 * The dashboard of a multi-node run: two server nodes with Ollama emulators and a client node on a
 * virtual LAN, and Debian's chromium (driven by playwright-core) started inside the client's host, so
 * that it opens the client node's page on that host's loopback as a person at that machine would. The
 * page lists both server nodes with their models and the leader, and its request chart follows
 * requests made on the client host. A screenshot goes to test-results/ (CI keeps it).
 */
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { createLan, netnsTest as test, type Host } from '../../testkit/netns.ts';
import { NODE, emulator, madeByThisFile, serve, until } from './lan-nodes.ts';

const CHROMIUM = '/usr/bin/chromium';
const RESULTS = fileURLToPath(new URL('../../test-results/', import.meta.url));
const { lans, homes } = madeByThisFile();

/**
 * The little of the DOM the functions passed to waitForFunction read: they run in the page, and this
 * project's TypeScript has no DOM library.
 */
interface InPage {
  readonly document: {
    getElementById(
      id: string,
    ): { readonly dataset: Record<string, string | undefined>; readonly textContent: string | null } | null;
  };
}

async function status(h: Host): Promise<{ upstreams: { id: string }[]; cluster: { leader: string } }> {
  const r = await h.exec(
    NODE,
    [
      '-e',
      "fetch('http://127.0.0.1:11434/ollana/v1/status').then((r) => r.text()).then((t) => process.stdout.write(t))",
    ],
    10_000,
  );
  return JSON.parse(r.stdout);
}

test("a client node's page lists the LAN's server nodes and their models, and charts the requests", {
  timeout: 170_000,
}, async () => {
  const lan = await createLan({ hosts: 3 });
  lans.push(lan);
  const [h1, h2, h3] = lan.hosts as [Host, Host, Host];
  await Promise.all([emulator(h1, 'llama3.2:latest,alpha:latest'), emulator(h2, 'llama3.2:latest,beta:latest')]);
  const start = async (h: Host): Promise<void> => {
    const home = mkdtempSync(join(tmpdir(), 'ollana-dashboard-'));
    homes.push(home);
    await serve(h, home, ['--heartbeat', '300ms', '--trust-lan']);
  };
  await Promise.all([start(h1), start(h2)]);
  await start(h3);
  const seen = await until(
    'the client to see both servers and a leader',
    () => status(h3),
    (s) => s.upstreams.length === 2 && s.cluster.leader !== '',
    15_000,
  );
  const ids = seen.value.upstreams.map((u) => u.id);

  // Chromium runs inside the client's host: a wrapper playwright starts as its browser.
  const dir = mkdtempSync(join(tmpdir(), 'ollana-chromium-'));
  homes.push(dir);
  const wrapper = join(dir, 'chromium-in-netns');
  writeFileSync(wrapper, `#!/bin/sh\nexec ip netns exec ${h3.name} ${CHROMIUM} "$@"\n`);
  chmodSync(wrapper, 0o755);
  const browser = await chromium.launch({ executablePath: wrapper });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const problems: string[] = [];
    page.on('console', (m) => {
      if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
    });
    page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
    const res = await page.goto('http://127.0.0.1:11434/ollana/');
    assert.equal(res?.status(), 200);
    await page.waitForSelector('#node[data-role="client"]', { timeout: 30_000 });
    await page.waitForSelector('#servers[data-rows="2"]', { timeout: 30_000 });
    for (const id of ids) {
      const row = page.locator(`#servers tbody td[title="${id}"]`);
      await row.waitFor({ timeout: 30_000 });
    }
    const rows = (await page.locator('#servers tbody').textContent()) ?? '';
    assert.match(rows, /leader/);
    assert.match(rows, /alpha/);
    assert.match(rows, /beta/);

    // Requests on the client host; the chart draws them in the seconds they ran.
    const gen = await h3.exec(
      NODE,
      [
        '-e',
        `(async () => { for (let i = 0; i < 30; i++) { const r = await fetch('http://127.0.0.1:11434/api/generate', { method: 'POST', body: JSON.stringify({ model: 'llama3.2', prompt: 'hi ' + i }) }); await r.text(); if (r.status !== 200) throw new Error('status ' + r.status); } process.stdout.write('ok'); })()`,
      ],
      60_000,
    );
    assert.equal(gen.stdout.trim(), 'ok', gen.stderr);
    await page.waitForFunction(
      () => Number((globalThis as unknown as InPage).document.getElementById('chart-rps')?.dataset.max ?? 0) > 0,
      undefined,
      { timeout: 60_000, polling: 250 },
    );
    await page.waitForFunction(
      () =>
        Number(
          /^(\d+) requests/.exec(
            (globalThis as unknown as InPage).document.getElementById('totals')?.textContent ?? '',
          )?.[1],
        ) >= 30,
      undefined,
      { timeout: 30_000, polling: 250 },
    );
    mkdirSync(RESULTS, { recursive: true });
    await page.screenshot({ path: `${RESULTS}dashboard-lan.png`, fullPage: true });
    assert.deepEqual(problems, [], 'no console errors or CSP violations');
  } finally {
    await browser.close();
  }
});
