/**
 * Where each model lives (issue #17 parts 1 and 2), for real: two server nodes with Ollama emulators
 * and one client node on a virtual LAN, requests made on the client host with the official ollama-js
 * client (test/netns/fixtures/residency-client.ts). What a server has loaded is read from its own
 * emulator's /api/ps: a model a server ever loaded stays listed there for its 5-minute keep_alive, so
 * "listed on one emulator only" counts the servers that loaded it.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe } from 'node:test';
import { createLan, netnsTest as test, type Host } from '../../testkit/netns.ts';
import { NODE, emulator, madeByThisFile, serve, until } from './lan-nodes.ts';

const FIXTURE = fileURLToPath(new URL('./fixtures/residency-client.ts', import.meta.url));
const { lans, homes } = madeByThisFile();

// biome-ignore lint/suspicious/noExplicitAny: each fixture command prints its own JSON shape
async function run(host: Host, ...args: string[]): Promise<any> {
  const r = await host.exec(NODE, [FIXTURE, ...args], 30_000);
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(
      `residency-client ${args.join(' ')} on ${host.hostname} printed ${JSON.stringify(r.stdout)} ${r.stderr}`,
    );
  }
}

interface Cluster {
  /** The server hosts: h1 has llama3.2 and alpha, h2 llama3.2 and beta. */
  servers: [Host, Host];
  client: Host;
  /** server node id by server host index (1, 2) */
  ids: Map<number, string>;
  leader: string;
}

let made: Promise<Cluster> | null = null;

/** The LAN, made once for the file's tests (which run in order and build on each other's state). */
function cluster(): Promise<Cluster> {
  made ??= (async () => {
    const lan = await createLan({ hosts: 3 });
    lans.push(lan);
    const [h1, h2, h3] = lan.hosts as [Host, Host, Host];
    await Promise.all([emulator(h1, 'llama3.2:latest,alpha:latest'), emulator(h2, 'llama3.2:latest,beta:latest')]);
    const start = async (h: Host, extra: string[]): Promise<void> => {
      const home = mkdtempSync(join(tmpdir(), 'ollana-residency-'));
      homes.push(home);
      await serve(h, home, ['--heartbeat', '300ms', '--trust-lan', ...extra]);
    };
    await Promise.all([start(h1, []), start(h2, [])]);
    // One request of the client's in flight on a server is its bound: the next spills.
    await start(h3, ['--spill-after', '1']);
    const status = await until(
      'the client to see both servers with their models and a leader',
      async () =>
        (await fetchStatus(h3)) as {
          upstreams: { id: string; url: string; models: string[] }[];
          cluster: { leader: string };
        },
      (s) => s.upstreams.length === 2 && s.upstreams.every((u) => u.models.length === 2) && s.cluster.leader !== '',
      15_000,
    );
    const ids = new Map<number, string>();
    for (const u of status.value.upstreams) ids.set(u.url.includes(`//${h1.addr}:`) ? 1 : 2, u.id);
    return { servers: [h1, h2], client: h3, ids, leader: status.value.cluster.leader };
  })();
  return made;
}

async function fetchStatus(h: Host): Promise<unknown> {
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

/** How often each server's emulator loaded `model`: [server 1, server 2]. */
async function loads(c: Cluster, model: string): Promise<number[]> {
  return Promise.all(c.servers.map(async (h) => (await run(h, 'emu-loads', model)).loads as number));
}

/** Which server hosts' emulators list `model` as loaded (1, 2). */
async function holders(c: Cluster, model: string): Promise<number[]> {
  const out: number[] = [];
  for (const [i, h] of c.servers.entries()) if ((await run(h, 'emu-ps')).models.includes(model)) out.push(i + 1);
  return out;
}

describe('where each model lives: 2 server nodes, 1 client node', { concurrency: false }, () => {
  test('the same model used again and again loads on one server only; /api/ps lists it once with its server', {
    timeout: 120_000,
  }, async () => {
    const c = await cluster();
    assert.deepEqual(await run(c.client, 'gen', 'llama3.2', '8'), { ok: 8 });
    const on = await holders(c, 'llama3.2:latest');
    assert.equal(on.length, 1, `llama3.2 loaded on servers ${on.join(', ')}`);
    assert.deepEqual((await loads(c, 'llama3.2:latest')).sort(), [0, 1], 'one load, on one server');
    const ps = await run(c.client, 'ps');
    const listed = ps.models.filter((m: { name: string }) => m.name === 'llama3.2:latest');
    assert.deepEqual(listed, [{ name: 'llama3.2:latest', server: c.ids.get(on[0]!) }]);
  });

  test('a server busy with the model up to --spill-after: the next request spills to the other server', {
    timeout: 120_000,
  }, async () => {
    const c = await cluster();
    assert.equal((await holders(c, 'llama3.2:latest')).length, 1);
    assert.deepEqual(await run(c.client, 'spill', 'llama3.2'), { ok: 2 });
    assert.deepEqual(await holders(c, 'llama3.2:latest'), [1, 2]);
    assert.deepEqual(await loads(c, 'llama3.2:latest'), [1, 1], 'the spilled request loaded it on the other server');
    const ps = await run(c.client, 'ps');
    const servers = ps.models
      .filter((m: { name: string }) => m.name === 'llama3.2:latest')
      .map((m: { server: string }) => m.server)
      .sort();
    assert.deepEqual(servers, [c.ids.get(1), c.ids.get(2)].sort());
  });

  test('`ollama stop` (empty prompt, keep_alive 0) unloads the model on every server holding it', {
    timeout: 120_000,
  }, async () => {
    const c = await cluster();
    // Loaded on both, whatever the earlier tests did: straight into each emulator.
    for (const h of c.servers) assert.deepEqual(await run(h, 'emu-gen', 'llama3.2'), { ok: true });
    assert.deepEqual(await holders(c, 'llama3.2:latest'), [1, 2]);
    assert.deepEqual(await run(c.client, 'stop', 'llama3.2'), { done_reason: 'unload' });
    assert.deepEqual(await holders(c, 'llama3.2:latest'), []);
  });

  test('show, copy, push and delete reach the server that has the model, leader or not; delete reaches all', {
    timeout: 120_000,
  }, async () => {
    const c = await cluster();
    // alpha lives on server 1 only, beta on server 2 only: one of them is on the server that does not lead.
    assert.ok([c.ids.get(1), c.ids.get(2)].includes(c.leader));
    for (const [model, i] of [
      ['alpha', 1],
      ['beta', 2],
    ] as const) {
      const home = c.servers[i - 1];
      assert.deepEqual(await run(c.client, 'show', model), { ok: true }, `show ${model}`);
      assert.deepEqual(await run(c.client, 'cp', model, `${model}-copy`), { ok: true }, `cp ${model}`);
      assert.ok((await run(home, 'emu-list')).models.includes(`${model}-copy:latest`), `the copy is beside ${model}`);
      assert.deepEqual(await run(c.client, 'push', model), { ok: true, status: 'success' }, `push ${model}`);
      assert.deepEqual(await run(c.client, 'rm', model), { ok: true }, `rm ${model}`);
      assert.ok(!(await run(home, 'emu-list')).models.includes(`${model}:latest`), `${model} is deleted`);
    }
    // llama3.2 is on both: a delete removes it from both.
    assert.deepEqual(await run(c.client, 'rm', 'llama3.2'), { ok: true });
    for (const h of c.servers) assert.ok(!(await run(h, 'emu-list')).models.includes('llama3.2:latest'));
  });
});
