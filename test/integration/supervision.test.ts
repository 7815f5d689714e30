/**
 * Supervision: a proxy worker that crashes under load costs only its own in-flight requests; the
 * supervisor replaces it and the port keeps accepting throughout.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { Client, request } from 'undici';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { removeHome, type Started, startServerNode } from '../helpers/ollana-process.ts';

let emu: Emulator;
let node: Started;

before(async () => {
  emu = await startEmulator({ tokens: 1, tokenIntervalMs: 0, ttftMs: 0 });
  node = await startServerNode(emu.url, { workers: 2, env: { OLLANA_DEBUG_HOOKS: '1' } });
});

after(async () => {
  await node?.stop();
  if (node) removeHome(node.home);
  await emu?.close();
});

test('killing a worker under load fails only its in-flight requests', async (t) => {
  const CONNECTIONS = 16;
  const LIMIT_MS = 20_000;
  const clients = Array.from({ length: CONNECTIONS }, () => new Client(node.url, { pipelining: 1 }));
  let running = true;
  const perClient = clients.map(() => ({ ok: 0, failed: 0, okAfterRestart: 0 }));
  let restarted = false;
  const fresh = { ok: 0, failed: 0, okSinceCrash: 0 };
  let crashed = false;

  const loops = clients.map(async (client, i) => {
    while (running) {
      try {
        const res = await client.request({
          path: '/api/generate',
          method: 'POST',
          body: JSON.stringify({ model: 'llama3.2', prompt: 'x', stream: false }),
        });
        await res.body.text();
        assert.equal(res.statusCode, 200);
        perClient[i]!.ok += 1;
        if (restarted) perClient[i]!.okAfterRestart += 1;
      } catch {
        perClient[i]!.failed += 1;
      }
    }
  });
  // A new connection per request: the port must keep accepting while a worker is down.
  const freshLoop = (async () => {
    while (running) {
      try {
        const res = await request(`${node.url}/api/version`, { reset: true });
        await res.body.text();
        fresh.ok += 1;
        if (crashed) fresh.okSinceCrash += 1;
      } catch {
        fresh.failed += 1;
      }
    }
  })();

  const deadline = setTimeout(() => {
    running = false;
  }, LIMIT_MS);
  try {
    // Wait until every connection has been served a few times (bounded), so all are live.
    for (let i = 0; i < 200 && !perClient.every((c) => c.ok >= 3); i++) await new Promise((r) => setTimeout(r, 50));
    assert.ok(
      perClient.every((c) => c.ok >= 3),
      'load is running on every connection before the crash',
    );

    // The crash request lands on one of the two workers; that worker dies with whatever it holds.
    crashed = true;
    await assert.rejects(
      request(`${node.url}/ollana/v1/debug/crash`, { method: 'POST', reset: true }).then((r) => r.body.text()),
    );
    await node.waitFor((l) => /proxy worker \d+ died/.test(l.msg), 10_000, 'the worker death');
    await node.waitFor((l) => /proxy worker \d+ restarted/.test(l.msg), 10_000, 'the worker restart');
    restarted = true;
    for (let i = 0; i < 200 && !(perClient.every((c) => c.okAfterRestart >= 3) && fresh.okSinceCrash >= 10); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    running = false;
    clearTimeout(deadline);
    await Promise.all([...loops, freshLoop]);
    await Promise.all(clients.map((c) => c.close()));
  }

  const failed = perClient.reduce((a, c) => a + c.failed, 0);
  t.diagnostic(
    `connections lost ${failed} requests; fresh connections ${fresh.ok} ok, ${fresh.failed} failed; ${perClient.reduce((a, c) => a + c.ok, 0)} ok in all`,
  );
  const maxPerClient = Math.max(...perClient.map((c) => c.failed));
  assert.ok(maxPerClient <= 1, `a connection lost at most its one in-flight request (worst: ${maxPerClient})`);
  assert.ok(failed < CONNECTIONS, `only the dead worker's connections lost a request (${failed} of ${CONNECTIONS})`);
  assert.ok(
    perClient.every((c) => c.okAfterRestart > 0),
    'every connection works again after the restart',
  );
  // A count, not a rate: how many fit in the window depends on the machine, not on ollana.
  assert.ok(fresh.okSinceCrash >= 10, `new connections kept being served after the crash (${fresh.okSinceCrash})`);
  assert.ok(fresh.failed <= 1, `new connections during the crash: ${fresh.failed} failed`);

  const status = (await (await request(`${node.url}/ollana/v1/status`)).body.json()) as {
    workers: { live: number; restarts: number };
  };
  assert.equal(status.workers.live, 2);
  assert.equal(status.workers.restarts, 1);
});
