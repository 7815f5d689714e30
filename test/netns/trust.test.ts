/**
 * Trust across hosts (issue #5), for real: ollana processes in their own network namespaces on one
 * virtual LAN, paired with the real `ollana device` CLI run inside each host, requests made with
 * ollama-js inside the client host. Every packet stays inside this test's namespaces.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'node:test';
import { readPending } from '../../src/identity/devices.ts';
import { createLan, cut, netnsTest as test, type Host, type HostProcess } from '../../testkit/netns.ts';
import { MAIN, NODE, client, emulator, madeByThisFile, serve, until } from './lan-nodes.ts';

const HEARTBEAT = '300ms';

const { lans, homes } = madeByThisFile();

interface Node {
  proc: HostProcess;
  home: string;
  host: Host;
  id: string;
}

async function node(host: Host, extra: string[] = []): Promise<Node> {
  const home = mkdtempSync(join(tmpdir(), 'ollana-lan-trust-'));
  homes.push(home);
  const { proc, line } = await serve(host, home, ['--heartbeat', HEARTBEAT, ...extra]);
  const id = (JSON.parse(line) as { deviceId: string }).deviceId;
  return { proc, home, host, id };
}

/** `ollana device ...` inside the node's host, on its data directory. */
async function device(n: Node, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return n.host.exec(NODE, [MAIN, 'device', ...args], 20_000, { env: { OLLANA_HOME: n.home } });
}

const logged = (n: Node, text: string): boolean => n.proc.lines.some((l) => l.text.includes(text));

describe('trust between hosts', () => {
  test('pairing is one command on each side; each side says which command is missing', {
    timeout: 120_000,
  }, async (t) => {
    const l = await createLan({ hosts: 2 });
    lans.push(l);
    const [h1, h2] = l.hosts as [Host, Host];
    await emulator(h1);
    const server = await node(h1);
    const cl = await node(h2);

    // The client sees the server but does not use it, and says exactly how to. What the line says is
    // true when it is written (issue #14): pending.json lists the server at that moment, and
    // `ollana device pending` run right after it shows it, with no retry.
    await cl.proc.waitForLine((text) => text.includes(`to use it run: ollana device allow ${server.id}`), 15_000);
    assert.ok(
      readPending(cl.home).some((p) => p.id === server.id),
      'pending.json lists the server when the line is logged',
    );
    const pendingC = await device(cl, 'pending', '--json');
    assert.equal(pendingC.code, 0, pendingC.stderr);
    assert.ok(pendingC.stdout.includes(server.id), 'the server is pending on the client');
    const none = await client(h2, 'list');
    assert.match(String(none.error), /no Ollama server found|still looking/i);

    // Step 1, on the client: allow the server by its full id (a prefix of a pending id is refused).
    const prefix = await device(cl, 'allow', server.id.slice(0, 10));
    assert.equal(prefix.code, 2, 'a prefix of an id met on the LAN is refused');
    const a1 = await device(cl, 'allow', server.id);
    assert.equal(a1.code, 0, a1.stderr);
    // The server does not know the client yet: refused in the handshake, with the command to run there.
    const refused = await until(
      'the server to refuse the client',
      () => client(h2, 'list'),
      (r) => typeof r.error === 'string' && /not allowed/.test(r.error),
    );
    assert.ok(String(refused.value.error).includes(`ollana device allow ${cl.id}`), refused.value.error);
    await until(
      'the server to log the refusal',
      async () => logged(server, `refused device ${cl.id}`),
      (x) => x,
    );
    await until(
      'the client to log who refuses it',
      async () => logged(cl, `does not allow this device yet; on that server run: ollana device allow ${cl.id}`),
      (x) => x,
    );
    const pendingS = await until(
      'the client pending on the server',
      () => device(server, 'pending', '--json'),
      (r) => r.stdout.includes(cl.id),
    );
    assert.equal(pendingS.value.code, 0);
    const st = await client(h1, 'status', '11435', server.home);
    assert.equal(st.workers.totals.requests, 0, 'not one refused request was served');

    // Step 2, on the server: allow the client. Within a second, requests go through.
    const a2 = await device(server, 'allow', cl.id);
    assert.equal(a2.code, 0, a2.stderr);
    const ok = await until(
      'the paired client to be served',
      () => client(h2, 'list'),
      (r) => Array.isArray(r.models),
      5_000,
    );
    t.diagnostic(`served ${Math.round(ok.ms)} ms after \`device allow\` returned`);
    assert.deepEqual(await client(h2, 'generate', '2'), { ok: 2, failed: 0, errors: [] });
  });

  test("a host announcing a known server's id is not believed: no connection to it, not one request (issue #22)", {
    timeout: 120_000,
  }, async () => {
    const l = await createLan({ hosts: 3 });
    lans.push(l);
    const [h1, h2, h3] = l.hosts as [Host, Host, Host];
    await Promise.all([emulator(h1), emulator(h3)]);
    const real = await node(h1);
    const cl = await node(h2);
    // The impostor: a genuine ollana server node with a certificate of its own, trusting anyone.
    const impostor = await node(h3, ['--trust-lan']);
    assert.equal((await device(cl, 'allow', real.id)).code, 0);
    assert.equal((await device(real, 'allow', cl.id)).code, 0);
    await until(
      'the client to be served by the real server',
      () => client(h2, 'list'),
      (r) => Array.isArray(r.models),
    );

    // The real server drops off the LAN; h3 announces its id, signed with h3's own key.
    await cut(h1);
    await client(h3, 'forge', h2.addr, real.id, '40');
    const st = await until(
      'the client to drop the forged announcements',
      () => client(h2, 'status'),
      (s) => s.discovery.stats.dropped.forged >= 30,
    );
    assert.ok(
      !st.value.upstreams.some((u: { url: string }) => u.url.includes(h3.addr)),
      JSON.stringify(st.value.upstreams),
    );
    assert.ok(
      !cl.proc.lines.some((x) => /presented device \S+, not \S+ as announced/.test(x.text)),
      'the client never tried the impostor for that id',
    );
    const r = await client(h2, 'list');
    assert.ok(!Array.isArray(r.models), `nothing served by the impostor: ${JSON.stringify(r)}`);
    const ist = await client(h3, 'status', '11435', impostor.home);
    assert.equal(ist.workers.totals.requests, 0, 'the impostor received not one request');
  });

  test('a client node connects ahead to a server it finds: a session ticket before the first request, which resumes', {
    timeout: 120_000,
  }, async () => {
    const l = await createLan({ hosts: 2 });
    lans.push(l);
    const [h1, h2] = l.hosts as [Host, Host];
    await emulator(h1);
    await node(h1, ['--trust-lan']);
    await node(h2, ['--trust-lan']);
    // One proxy worker (serve()'s --workers 1): its handshake with the server, before anyone asked for anything.
    const ready = await until(
      "the client's worker to connect ahead",
      () => client(h2, 'status'),
      (s) => s.upstreams?.length === 1 && s.workers.totals.tlsHandshakes >= 1,
    );
    const ahead = ready.value.workers.totals;
    assert.equal(ahead.requests, 0, 'no request made yet');
    assert.equal(ahead.tlsResumed, 0, 'a full handshake: the worker held no ticket before');
    assert.deepEqual(await client(h2, 'generate', '1'), { ok: 1, failed: 0, errors: [] });
    const first = (await client(h2, 'status')).workers.totals;
    assert.equal(first.requests, 1);
    assert.deepEqual(
      { handshakes: first.tlsHandshakes - ahead.tlsHandshakes, resumed: first.tlsResumed - ahead.tlsResumed },
      { handshakes: 1, resumed: 1 },
      "the first request's connection resumed the session taken ahead",
    );
  });
});
