/**
 * Account and cloud requests across several server nodes (issue #17 part 4), each ollana process in
 * its own network namespace on one virtual LAN, an Ollama emulator on each server host's loopback.
 * Sign-in state belongs to one server, so a client node sends every account request to the same
 * one, the leader, and `ollana status` says which; a cloud model moves past a server that is not
 * signed in (401) to one that is.
 */
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'node:test';
import { createLan, netnsTest as test, type Host } from '../../testkit/netns.ts';
import { MAIN, NODE, client, emulator, madeByThisFile, serve, until } from './lan-nodes.ts';

const { lans, homes } = madeByThisFile();

async function node(host: Host): Promise<void> {
  const home = mkdtempSync(join(tmpdir(), 'ollana-lan-'));
  homes.push(home);
  await serve(host, home, ['--heartbeat', '300ms', '--trust-lan']);
}

describe('account and cloud requests on a LAN', { concurrency: false }, () => {
  test('/v1/models/{id} from the server with the model; account requests on the leader, which status names; a cloud model moves past a server not signed in', {
    timeout: 120_000,
  }, async () => {
    const lan = await createLan({ hosts: 3 });
    lans.push(lan);
    const [h1, h2, h3] = lan.hosts as [Host, Host, Host];
    // Both servers are signed in, as different users, so the answers tell them apart.
    await Promise.all([
      emulator(h1, 'llama3.2:latest,qwen3:8b', ['--account', 'alice']),
      emulator(h2, 'llama3.2:latest', ['--account', 'bob']),
    ]);
    await Promise.all([node(h1), node(h2)]);
    await node(h3);
    const { value: st } = await until(
      'the client to see both servers and the leader',
      () => client(h3, 'status'),
      (s) =>
        s.upstreams?.length === 2 &&
        s.upstreams.some((u: { leader: boolean }) => u.leader) &&
        s.upstreams.some((u: { models: string[] }) => u.models.length === 2),
      20_000,
    );

    // The model in the path: every GET /v1/models/qwen3:8b reaches the one server that has it.
    assert.deepEqual(await client(h3, 'retrieve', 'qwen3:8b', '6'), { ok: 6, failed: 0 });
    const leader = (st.upstreams as { id: string; url: string; leader: boolean }[]).find((u) => u.leader)!;
    const leaderUser = leader.url.includes(`//${h1.addr}:`) ? 'alice' : 'bob';

    // Equally idle servers take turns for other requests; every account request lands on the leader.
    for (let i = 0; i < 4; i++) {
      const me = await client(h3, 'account', '/api/me');
      assert.equal(me.status, 200);
      assert.equal(me.body.name, leaderUser);
    }
    const human = await h3.exec(NODE, [MAIN, 'status'], 15_000);
    assert.equal(human.code, 0, human.stderr);
    assert.match(human.stdout, new RegExp(`${leader.id}.*account \\(/api/me`), human.stdout);

    // Signing out goes to the same server: after it, that server (and only it) is signed out.
    assert.equal((await client(h3, 'account', '/api/signout')).status, 200);
    assert.equal((await client(h3, 'account', '/api/me')).status, 401);
    assert.equal((await client(h3, 'account', '/api/signout')).status, 401, 'the same server again');

    // A cloud model goes to the leader first, which now answers 401: it moves to the other server.
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await client(h3, 'cloud', 'gpt-oss:120b:cloud'), { ok: true, status: 200, error: null });
    }
  });
});
