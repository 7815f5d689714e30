/**
 * The dashboard at /ollana/ in a real headless browser (Debian's chromium driven by playwright-core):
 * a server node with an emulator behind it and a client node, both on loopback with discovery off.
 * The page loads under its Content-Security-Policy with no violation, names the node, and its charts
 * follow requests sent through the node; screenshots go to test-results/ (CI keeps them). The event
 * stream takes a bounded number of pages per worker.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { type Browser, type Page, chromium } from 'playwright-core';
import { request } from 'undici';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { freePort, removeHome, startOllana, type Started } from '../helpers/ollana-process.ts';

const CHROMIUM = '/usr/bin/chromium';
const RESULTS = fileURLToPath(new URL('../../test-results/', import.meta.url));
/** The event stream's listeners per proxy worker (src/dashboard/events.ts MAX_LISTENERS). */
const MAX_LISTENERS = 8;

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

let emu: Emulator;
let server: Started;
let client: Started;
let browser: Browser;

before(async () => {
  assert.ok(
    existsSync(CHROMIUM),
    `${CHROMIUM} is missing: as root run \`node test/helpers/install-test-tools.ts\` (apt package chromium)`,
  );
  mkdirSync(RESULTS, { recursive: true });
  emu = await startEmulator({ tokens: 8, tokenIntervalMs: 1, ttftMs: 20 });
  server = await startOllana([
    '--mode',
    'server',
    '--insecure-http',
    '--listen',
    `127.0.0.1:${await freePort()}`,
    '--ollama-url',
    emu.url,
    '--workers',
    '2',
  ]);
  client = await startOllana([
    '--mode',
    'client',
    '--discovery',
    'off',
    '--listen',
    `127.0.0.1:${await freePort()}`,
    '--workers',
    '1',
  ]);
  browser = await chromium.launch({ executablePath: CHROMIUM });
});

after(async () => {
  await browser?.close();
  for (const node of [server, client]) {
    await node?.stop();
    if (node) removeHome(node.home);
  }
  await emu?.close();
});

/** A page with everything the console said and every uncaught error collected. */
async function open(url: string): Promise<{ page: Page; problems: string[]; csp: string | undefined }> {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  page.on('requestfailed', (r) => {
    // The event stream is cut when the page closes; anything else failing is a broken page.
    if (!r.url().endsWith('/ollana/v1/events')) problems.push(`requestfailed: ${r.url()}`);
  });
  const res = await page.goto(url);
  assert.equal(res?.status(), 200);
  return { page, problems, csp: res?.headers()['content-security-policy'] };
}

async function generate(i: number): Promise<void> {
  const res = await request(`${server.url}/api/generate`, {
    method: 'POST',
    body: JSON.stringify({ model: 'llama3.2', prompt: `count to ${i}` }),
    reset: true,
  });
  await res.body.text();
  assert.equal(res.statusCode, 200);
}

test('a server node: the page loads under a strict CSP, names the node, and its charts follow the requests', async () => {
  const { page, problems, csp } = await open(`${server.url}/ollana/`);
  try {
    assert.match(csp ?? '', /script-src 'self'/);
    assert.match(csp ?? '', /default-src 'none'/);
    await page.waitForSelector('#node[data-role="server"]', { timeout: 30_000 });
    await page.waitForSelector('#live[data-state="live"]', { timeout: 30_000 });
    const row = page.locator('#servers tbody tr', { hasText: '(this node)' });
    await row.waitFor({ timeout: 30_000 });
    assert.match((await row.textContent()) ?? '', /healthy/);

    // Requests flow until every chart has drawn some (bounded in count; the browser decides when).
    let sending = true;
    let sent = 0;
    const load = (async () => {
      while (sending && sent < 3_000) await generate(sent++);
    })();
    try {
      await page.waitForFunction(
        () => {
          const num = (id: string, key: string): number =>
            Number((globalThis as unknown as InPage).document.getElementById(id)?.dataset[key] ?? 0);
          return (
            num('chart-rps', 'max') > 0 &&
            num('chart-tps', 'max') > 0 &&
            num('chart-ttft', 'max') > 0 &&
            num('chart-rps', 'points') >= 3
          );
        },
        undefined,
        { timeout: 120_000, polling: 250 },
      );
    } finally {
      sending = false;
      await load;
    }
    assert.ok(sent > 0);
    // The uPlot canvas is there, and the totals line counts what was sent.
    assert.equal((await page.locator('#chart-rps canvas').count()) > 0, true);
    await page.waitForFunction(
      (n) =>
        Number(
          /^(\d+) requests/.exec(
            (globalThis as unknown as InPage).document.getElementById('totals')?.textContent ?? '',
          )?.[1],
        ) >= n,
      sent,
      { timeout: 30_000 },
    );
    await page.screenshot({ path: `${RESULTS}dashboard-server.png`, fullPage: true });
    assert.deepEqual(problems, [], 'no console errors, CSP violations or failed loads');
  } finally {
    await page.close();
  }
});

// Before any browser page opens on the client node, so that every listener is this test's.
test('the event stream takes a bounded number of pages per worker, and frees a place when one leaves', async () => {
  const streams = [];
  try {
    for (let i = 0; i < MAX_LISTENERS; i++) {
      const res = await request(`${client.url}/ollana/v1/events`);
      if (res.statusCode !== 200) assert.fail(`stream ${i}: ${res.statusCode} ${await res.body.text()}`);
      assert.match(String(res.headers['content-type']), /^text\/event-stream/);
      streams.push(res);
    }
    const over = await request(`${client.url}/ollana/v1/events`);
    await over.body.text();
    assert.equal(over.statusCode, 503);
    assert.ok(over.headers['retry-after']);
    // One leaves: its place is free again once the node has seen the connection close.
    streams.pop()!.body.destroy();
    let status = 0;
    for (let i = 0; i < 100 && status !== 200; i++) {
      const again = await request(`${client.url}/ollana/v1/events`);
      status = again.statusCode;
      if (status === 200) streams.push(again);
      else {
        await again.body.text();
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    assert.equal(status, 200);
  } finally {
    for (const s of streams) s.body.destroy();
  }
});

test('a client node serves the page too, and says it has not found a server node', async () => {
  const { page, problems } = await open(`${client.url}/ollana/`);
  try {
    await page.waitForSelector('#node[data-role="client"]', { timeout: 30_000 });
    await page.waitForSelector('#servers[data-rows="0"]', { timeout: 30_000 });
    await page.waitForFunction(
      () => Number((globalThis as unknown as InPage).document.getElementById('chart-rps')?.dataset.points) >= 2,
      undefined,
      {
        timeout: 60_000,
      },
    );
    await page.screenshot({ path: `${RESULTS}dashboard-client.png`, fullPage: true });
    assert.deepEqual(problems, [], 'no console errors, CSP violations or failed loads');
  } finally {
    await page.close();
  }
});
