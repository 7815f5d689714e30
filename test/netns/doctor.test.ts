/**
 * `ollana doctor --json` on a virtual LAN, with each fault made for real inside the hosts' network
 * namespaces: a healthy pair, a drop rule (nftables), a port taken by another program, no multicast
 * route, and hosts kept apart as on a guest Wi-Fi with client isolation (bridge port isolation).
 * Every packet stays inside this test's namespaces.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'node:test';
import { clearRules, createLan, dropRandomUdp, netnsTest as test, type Host, type Lan } from '../../testkit/netns.ts';
import { findCheck, type CheckId, type CheckResult, type DoctorReport } from '../../src/doctor/types.ts';
import { MAIN, NODE, client, emulator, madeByThisFile, serve, until } from './lan-nodes.ts';

const { lans, homes } = madeByThisFile();

function home(): string {
  const h = mkdtempSync(join(tmpdir(), 'ollana-doctor-'));
  homes.push(h);
  return h;
}

/** `ollana doctor --json` inside `host`: the report and the exit code. */
async function doctor(
  host: Host,
  dataDir: string,
  ...args: string[]
): Promise<{ report: DoctorReport; code: number | null }> {
  const r = await host.exec(NODE, [MAIN, 'doctor', '--json', '--wait', '2s', ...args], 30_000, {
    env: { OLLANA_HOME: dataDir, OLLANA_DISCOVERY: undefined },
  });
  try {
    return { report: JSON.parse(r.stdout) as DoctorReport, code: r.code };
  } catch {
    throw new Error(`doctor on ${host.hostname} printed ${JSON.stringify(r.stdout)} ${r.stderr} (exit ${r.code})`);
  }
}

function check<K extends CheckId>(r: DoctorReport, id: K): CheckResult<K> {
  const c = findCheck(r, id);
  assert.ok(c, `no ${id} check in ${JSON.stringify(r.checks.map((x) => x.id))}`);
  return c;
}

/** A server node (with the emulator as its Ollama) on `host`, trusting the LAN; resolves with its device id. */
async function serverNode(host: Host): Promise<{ id: string; home: string }> {
  await emulator(host);
  const h = home();
  await serve(host, h, ['--trust-lan']);
  const st = await client(host, 'status', '11435', h);
  return { id: st.node.id as string, home: h };
}

async function lan(hosts: number): Promise<Lan> {
  const l = await createLan({ hosts });
  lans.push(l);
  return l;
}

describe('ollana doctor in network namespaces', { concurrency: false }, () => {
  test('a healthy pair: the server answers, the client hears it, every check passes; exit 0', {
    timeout: 120_000,
  }, async () => {
    const l = await lan(2);
    const [h1, h2] = l.hosts as [Host, Host];
    const server = await serverNode(h1);
    const clientHome = home();
    await serve(h2, clientHome, ['--trust-lan']);
    await until(
      'the client to know the server',
      () => client(h2, 'status'),
      (s) => s.upstreams?.length === 1,
      15_000,
    );

    const s = await doctor(h1, server.home);
    assert.equal(check(s.report, 'ollama').status, 'ok');
    assert.match(check(s.report, 'ollama').details.version ?? '', /\d/);
    const ports = check(s.report, 'ports');
    assert.equal(ports.status, 'ok', ports.summary);
    const p11435 = ports.details.ports.find((p) => p.port === 11435);
    assert.equal(p11435?.holders[0]?.owner, 'ollana');

    const c = await doctor(h2, clientHome);
    const hearing = check(c.report, 'hearing');
    assert.equal(hearing.status, 'ok', hearing.summary);
    assert.equal(hearing.details.selfMulticast, true);
    assert.equal(hearing.details.selfBroadcast, true);
    assert.deepEqual(
      hearing.details.peers.map((p) => [p.id, p.addr, p.role]),
      [[server.id, h1.addr, 'server']],
    );
    // The client node holds Ollama's port: no Ollama here is expected, not a problem.
    assert.equal(check(c.report, 'ollama').status, 'ok');
    assert.equal(check(c.report, 'ollama').details.clientNode, true);
    assert.equal(check(c.report, 'ollama').details.relayed, true);
    assert.equal(check(c.report, 'identity').status, 'ok');
    assert.equal(check(c.report, 'firewall').status, 'ok');
    assert.equal(check(c.report, 'multicast-route').details.route, 'eth0');
    const clock = check(c.report, 'clock');
    assert.equal(clock.status, 'ok', clock.summary);
    assert.equal(clock.details.samples[0]?.id, server.id);
    assert.equal(c.report.ok, true, JSON.stringify(c.report.checks.filter((x) => x.status === 'fail')));
    assert.equal(c.code, 0);
  });

  test('devices pending on either side: an unpaired server is named, it refuses this device, and then lists it', {
    timeout: 120_000,
  }, async () => {
    const l = await lan(2);
    const [h1, h2] = l.hosts as [Host, Host];
    await emulator(h1);
    const serverHome = home();
    await serve(h1, serverHome, []);
    const server = await client(h1, 'status', '11435', serverHome);
    const laptop = home();
    const shown = await h2.exec(NODE, [MAIN, 'device', 'show', '--json'], 20_000, { env: { OLLANA_HOME: laptop } });
    const laptopId = (JSON.parse(shown.stdout) as { id: string }).id;

    const here = await doctor(h2, laptop);
    const pending = check(here.report, 'pending');
    assert.equal(pending.status, 'warn', pending.summary);
    assert.deepEqual(
      pending.details.serversNotAllowed.map((p) => p.id),
      [server.node.id],
    );
    assert.deepEqual(
      pending.details.refusedBy.map((r) => [r.id, r.addr]),
      [[server.node.id, h1.addr]],
    );
    assert.equal(check(here.report, 'clock').status, 'skip', 'a refusal carries no time');

    // The server recorded the refusal: its own doctor names the laptop, with the command to allow it.
    const there = await until(
      'the server to list the refused laptop',
      async () => (await doctor(h1, serverHome)).report,
      (r) => findCheck(r, 'pending')?.details.pendingHere.some((p) => p.id === laptopId) === true,
      30_000,
    );
    const entry = findCheck(there.value, 'pending')?.details.pendingHere.find((p) => p.id === laptopId);
    assert.deepEqual(entry, { id: laptopId, addr: h2.addr, kind: 'client-refused' });
  });

  test('faults made for real: a drop rule, a taken port, no multicast route, client isolation', {
    timeout: 150_000,
  }, async () => {
    const l = await lan(3);
    const [h1, h2, h3] = l.hosts as [Host, Host, Host];
    const server = await serverNode(h1);

    // A drop rule: everything to UDP 11436, in and out.
    await dropRandomUdp(h2, 100, 11436);
    const dropped = await doctor(h2, home());
    const fw = check(dropped.report, 'firewall');
    assert.equal(fw.status, 'fail', fw.summary);
    assert.deepEqual(fw.details.findings[0]?.ports, [11436]);
    assert.equal(fw.details.findings[0]?.tool, 'nft');
    assert.equal(check(dropped.report, 'hearing').status, 'fail');
    assert.equal(dropped.report.ok, false);
    assert.equal(dropped.code, 1);
    await clearRules(h2);

    // A port taken by a program that is not ollana.
    const squatter = h2.spawn(NODE, [
      '-e',
      "require('node:net').createServer().listen(11435, () => console.log('listening'))",
    ]);
    await squatter.waitForLine((t) => t === 'listening', 10_000);
    const taken = await doctor(h2, home());
    const ports = check(taken.report, 'ports');
    assert.equal(ports.status, 'fail', ports.summary);
    const p11435 = ports.details.ports.find((p) => p.port === 11435);
    assert.deepEqual(p11435?.holders, [{ pid: squatter.pid, name: 'node', owner: 'other' }]);
    assert.equal(taken.code, 1);
    await squatter.stop();

    // No multicast route: only broadcast reaches the LAN.
    const route = await h3.exec('ip', ['route', 'del', '224.0.0.0/4', 'dev', 'eth0']);
    assert.equal(route.code, 0, route.stderr);
    const noRoute = await doctor(h3, home());
    const mr = check(noRoute.report, 'multicast-route');
    assert.equal(mr.status, 'warn', mr.summary);
    assert.equal(mr.details.route, null);
    const heard = check(noRoute.report, 'hearing');
    assert.equal(heard.details.selfMulticast, null, 'the multicast probe could not be sent');
    assert.ok(
      heard.details.sendErrors.some((e) => e.includes('ENETUNREACH')),
      JSON.stringify(heard.details.sendErrors),
    );
    assert.equal(heard.details.selfBroadcast, true);
    assert.deepEqual(
      heard.details.peers.map((p) => p.id),
      [server.id],
      'the server is still heard by broadcast',
    );
    const back = await h3.exec('ip', ['route', 'add', '224.0.0.0/4', 'dev', 'eth0']);
    assert.equal(back.code, 0, back.stderr);

    // Client isolation: the bridge forwards nothing between its ports (as an access point that keeps
    // Wi-Fi clients apart); each host still hears itself.
    await isolate(l, true);
    const isolated = await doctor(h3, home());
    const alone = check(isolated.report, 'hearing');
    assert.equal(alone.status, 'warn', alone.summary);
    assert.equal(alone.details.selfBroadcast, true);
    assert.deepEqual(alone.details.peers, []);
    await isolate(l, false);
    const together = await doctor(h3, home());
    assert.equal(check(together.report, 'hearing').status, 'ok');
  });
});

/** Turns bridge port isolation on or off for every host's port (isolated ports forward nothing to each other). */
async function isolate(l: Lan, on: boolean): Promise<void> {
  for (const h of l.hosts) {
    execFileSync(
      'ip',
      ['-n', l.bridgeNs, 'link', 'set', 'dev', h.bridgePort, 'type', 'bridge_slave', 'isolated', on ? 'on' : 'off'],
      {
        timeout: 10_000,
      },
    );
  }
}
