/**
 * `ollana doctor`'s checks (src/doctor/), each over made-up facts: what the probes would have found on
 * a machine with that fault, and the status and details the check gives for it. The same faults made
 * for real in network namespaces: test/netns/doctor.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkClock } from '../../src/doctor/clock.ts';
import { checkFdLimit, parseLimits } from '../../src/doctor/fd-limit.ts';
import { checkFirewall, iptablesFindings, nftFindings, ufwFindings } from '../../src/doctor/firewall.ts';
import { checkHearing, type Hearing } from '../../src/doctor/hearing.ts';
import { checkIdentity, type IdentityFacts } from '../../src/doctor/identity.ts';
import { checkInterfaces, checkMulticastRoute, routeFor, type InterfaceFacts } from '../../src/doctor/interfaces.ts';
import { checkOllama } from '../../src/doctor/ollama.ts';
import { checkPending } from '../../src/doctor/pending.ts';
import { checkPorts, parseProcNet, type PortHolder } from '../../src/doctor/ports.ts';
import { formatReport, runDoctor, type DoctorProbes, type DoctorSettings } from '../../src/doctor/run.ts';
import { DEFAULT_PORTS } from '../../src/doctor/types.ts';

const ID_A = 'AAAAAAA-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE-FFFFFFF-GGGGGGG-HHHHHHH';
const ID_B = 'BBBBBBB-BBBBBBB-CCCCCCC-DDDDDDD-EEEEEEE-FFFFFFF-GGGGGGG-HHHHHHH';

test('ollama: answering is ok with its version; absent is a warning; a client node on its port is ok', () => {
  const url = 'http://127.0.0.1:11434';
  const up = checkOllama(url, { ok: true, version: '0.12.0' }, false);
  assert.equal(up.status, 'ok');
  assert.deepEqual([up.details.version, up.details.clientNode], ['0.12.0', false]);
  const down = checkOllama(url, { ok: false, reason: 'ECONNREFUSED' }, false);
  assert.equal(down.status, 'warn');
  assert.equal(down.details.reason, 'ECONNREFUSED');
  const relay = checkOllama(url, { ok: true, version: '0.12.0' }, true);
  assert.equal(relay.status, 'ok');
  assert.deepEqual([relay.details.clientNode, relay.details.relayed], [true, true]);
});

const PROC_TCP = `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:2CAB 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0
   1: 0100007F:2CAA 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4343 1 0000000000000000 100 0 0 10 0
   2: 0100007F:2CAB 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4444 1 0000000000000000 100 0 0 10 0
garbage line
`;

test('ports: /proc/net/tcp gives the listening sockets only, with their inodes', () => {
  assert.deepEqual(parseProcNet(PROC_TCP, 'tcp'), [
    { port: 11435, inode: 4242 },
    { port: 11434, inode: 4343 },
  ]);
  // UDP has no LISTEN state: every bound socket counts.
  assert.deepEqual(
    parseProcNet(PROC_TCP, 'udp').map((s) => s.port),
    [11435, 11434, 11435],
  );
});

test('ports: free or held by ollana is ok; held by another program fails naming it and what to do', () => {
  const holder = (proto: 'tcp' | 'udp', port: number, name: string, cmdline: string, pid = 77): PortHolder => ({
    proto,
    port,
    pid,
    name,
    cmdline,
  });
  const free = checkPorts(DEFAULT_PORTS, [], false);
  assert.equal(free.status, 'ok');
  assert.ok(free.details.ports.every((p) => p.free));
  const ours = checkPorts(
    DEFAULT_PORTS,
    [
      holder('tcp', 11435, 'node', 'node /usr/lib/ollana/bin/ollana.mjs serve'),
      holder('udp', 11436, 'node', 'node bin/ollana.mjs serve'),
    ],
    false,
  );
  assert.equal(ours.status, 'ok');
  const taken = checkPorts(DEFAULT_PORTS, [holder('tcp', 11435, 'nginx', '/usr/sbin/nginx', 9)], false);
  assert.equal(taken.status, 'fail');
  const p = taken.details.ports.find((x) => x.port === 11435);
  assert.deepEqual(p?.holders, [{ pid: 9, name: 'nginx', owner: 'other' }]);
  // Ollama on its own port is what a server machine has; on the proxy port it is in the way.
  assert.equal(
    checkPorts(DEFAULT_PORTS, [holder('tcp', 11434, 'ollama', '/usr/bin/ollama serve')], false).status,
    'ok',
  );
  assert.equal(checkPorts(DEFAULT_PORTS, [holder('tcp', 11434, 'node', 'node emulator.js')], true).status, 'ok');
  assert.equal(checkPorts(DEFAULT_PORTS, [holder('tcp', 11434, 'node', 'node emulator.js')], false).status, 'fail');
  assert.equal(
    checkPorts(DEFAULT_PORTS, [holder('tcp', 11435, 'ollama', '/usr/bin/ollama serve')], true).status,
    'fail',
  );
  // Another user's socket: the holder cannot be named, which is still a fail.
  const hidden = checkPorts(
    DEFAULT_PORTS,
    [{ proto: 'udp', port: 11436, pid: null, name: null, cmdline: null }],
    false,
  );
  assert.equal(hidden.status, 'fail');
  assert.equal(checkPorts(DEFAULT_PORTS, null, false).status, 'skip');
});

test('firewall: nft drop rules naming a port, a set or a range, all UDP, multicast, and an input policy of drop', () => {
  const nft = (rule: string) => nftFindings(`table inet f {\n  chain input {\n    ${rule}\n  }\n}`, DEFAULT_PORTS);
  assert.deepEqual(nft('udp dport 11436 drop')[0]?.ports, [11436]);
  assert.deepEqual(nft('tcp dport { 22, 11435 } reject')[0]?.ports, [11435]);
  assert.deepEqual(nft('tcp dport 11000-12000 drop')[0]?.ports, [11434, 11435, 11436]);
  assert.deepEqual(nft('tcp dport 22 drop'), []);
  assert.deepEqual(nft('udp dport 11436 accept'), []);
  assert.equal(nft('ip daddr 224.0.0.0/4 meta l4proto udp drop').length, 1);
  assert.equal(nft('meta l4proto udp drop').length, 1);
  assert.deepEqual(nft('ip saddr 10.0.0.9 tcp dport 22 counter drop'), []);
  const policy =
    'table inet f {\n chain input {\n type filter hook input priority 0; policy drop;\n tcp dport 22 accept\n }\n}';
  assert.equal(nftFindings(policy, DEFAULT_PORTS).length, 1);
  const opened = policy.replace('tcp dport 22 accept', 'udp dport 11436 accept\n tcp dport 11435 accept');
  assert.deepEqual(nftFindings(opened, DEFAULT_PORTS), []);
});

test('firewall: iptables -S and ufw status verbose', () => {
  assert.deepEqual(
    iptablesFindings('-P INPUT ACCEPT\n-A INPUT -p udp -m udp --dport 11436 -j DROP\n', DEFAULT_PORTS)[0]?.ports,
    [11436],
  );
  assert.deepEqual(
    iptablesFindings('-A INPUT -p tcp -m multiport --dports 80,11435 -j REJECT\n', DEFAULT_PORTS)[0]?.ports,
    [11435],
  );
  assert.deepEqual(iptablesFindings('-A INPUT -p tcp --dport 22 -j DROP\n', DEFAULT_PORTS), []);
  assert.equal(iptablesFindings('-P INPUT DROP\n-A INPUT -p tcp --dport 22 -j ACCEPT\n', DEFAULT_PORTS).length, 1);
  const ufw =
    'Status: active\nDefault: deny (incoming), allow (outgoing)\n\nTo Action From\n11435/tcp ALLOW IN Anywhere\n';
  assert.deepEqual(ufwFindings(ufw, DEFAULT_PORTS)[0]?.ports, [11436]);
  assert.deepEqual(ufwFindings(`${ufw}11436/udp ALLOW IN Anywhere\n`, DEFAULT_PORTS), []);
  assert.deepEqual(ufwFindings('Status: inactive\n', DEFAULT_PORTS), []);
});

test('firewall: a finding fails; tools that are missing are "not checked", and none at all is skip', () => {
  const bad = checkFirewall(
    {
      nft: { text: 'udp dport 11436 drop' },
      iptables: { missing: 'not installed' },
      ufw: { missing: 'not installed' },
    },
    DEFAULT_PORTS,
  );
  assert.equal(bad.status, 'fail');
  assert.deepEqual(bad.details.checked, ['nft']);
  assert.deepEqual(bad.details.notChecked, ['iptables (not installed)', 'ufw (not installed)']);
  const none = checkFirewall(
    {
      nft: { missing: 'not installed' },
      iptables: { missing: 'Permission denied' },
      ufw: { missing: 'not installed' },
    },
    DEFAULT_PORTS,
  );
  assert.equal(none.status, 'skip');
  const clean = checkFirewall(
    { nft: { text: '' }, iptables: { text: '-P INPUT ACCEPT\n' }, ufw: { missing: 'x' } },
    DEFAULT_PORTS,
  );
  assert.equal(clean.status, 'ok');
});

const iface = (o: Partial<InterfaceFacts> & { name: string }): InterfaceFacts => ({
  address: '192.168.1.7',
  netmask: '255.255.255.0',
  up: true,
  multicast: true,
  broadcast: true,
  pointToPoint: false,
  ...o,
});

test('interfaces: a LAN interface is ok; only a VPN, or nothing that can multicast or broadcast, fails', () => {
  assert.equal(checkInterfaces([iface({ name: 'eth0' }), iface({ name: 'wg0', address: '10.8.0.2' })]).status, 'ok');
  const vpnOnly = checkInterfaces([iface({ name: 'wg0', address: '10.8.0.2', pointToPoint: true })]);
  assert.equal(vpnOnly.status, 'fail');
  assert.equal(vpnOnly.details.interfaces[0].vpn, true);
  assert.equal(checkInterfaces([]).status, 'fail');
  assert.equal(checkInterfaces([iface({ name: 'eth0', multicast: false, broadcast: false })]).status, 'fail');
  // A point-to-point link is a VPN whatever its name.
  assert.equal(checkInterfaces([iface({ name: 'vpn-office', pointToPoint: true })]).status, 'fail');
});

const ROUTES = `Iface	Destination	Gateway 	Flags	RefCnt	Use	Metric	Mask		MTU	Window	IRTT
eth0	00000000	0101A8C0	0003	0	0	100	00000000	0	0	0
eth0	0001A8C0	00000000	0001	0	0	100	00FFFFFF	0	0	0
wg0	000000E0	00000000	0001	0	0	0	000000F0	0	0	0
`;

test('multicast route: longest prefix of /proc/net/route; none warns, a VPN warns, the LAN is ok', () => {
  assert.equal(routeFor(ROUTES, '239.255.11.36'), 'wg0');
  assert.equal(routeFor(ROUTES, '192.168.1.9'), 'eth0');
  assert.equal(routeFor(ROUTES, '8.8.8.8'), 'eth0');
  const noDefault = ROUTES.split('\n')
    .filter((l) => !l.includes('wg0') && !l.includes('0101A8C0'))
    .join('\n');
  assert.equal(routeFor(noDefault, '239.255.11.36'), null);
  const list = [iface({ name: 'eth0' }), iface({ name: 'wg0', address: '10.8.0.2' })];
  const vpn = checkMulticastRoute('239.255.11.36', 'wg0', list);
  assert.equal(vpn.status, 'warn');
  assert.equal(vpn.details.vpn, true);
  assert.equal(checkMulticastRoute('239.255.11.36', null, list).status, 'warn');
  assert.equal(checkMulticastRoute('239.255.11.36', 'eth0', list).status, 'ok');
  assert.equal(checkMulticastRoute('239.255.11.36', undefined, list).status, 'skip');
});

const hearing = (o: Partial<Hearing>): Hearing => ({
  bindError: null,
  listenedMs: 3000,
  selfMulticast: true,
  selfBroadcast: true,
  sendErrors: [],
  peers: [],
  ...o,
});

test('hearing: itself and a peer is ok; itself alone is client isolation (warn); not itself fails', () => {
  const peer = { id: ID_A, addr: '192.168.1.9', role: 'server' as const, port: 11435, kind: 'announce' };
  assert.equal(checkHearing(hearing({ peers: [peer] }), 11436).status, 'ok');
  assert.equal(checkHearing(hearing({}), 11436).status, 'warn');
  assert.equal(checkHearing(hearing({ selfMulticast: null, selfBroadcast: true, peers: [peer] }), 11436).status, 'ok');
  assert.equal(checkHearing(hearing({ selfMulticast: false, selfBroadcast: false }), 11436).status, 'fail');
  assert.equal(checkHearing(hearing({ bindError: 'EADDRINUSE' }), 11436).status, 'fail');
});

const identity = (o: Partial<IdentityFacts>): IdentityFacts => ({
  dataDir: '/home/u/.config/ollana',
  dir: { mode: 0o40700, uid: 1000 },
  cert: { mode: 0o100644, uid: 1000 },
  key: { mode: 0o100600, uid: 1000 },
  id: ID_A,
  problem: null,
  uid: 1000,
  ...o,
});

test('identity: private key and directory are ok; open modes, another owner or a broken file fail; none yet warns', () => {
  assert.equal(checkIdentity(identity({})).status, 'ok');
  const open = checkIdentity(identity({ key: { mode: 0o100644, uid: 1000 } }));
  assert.equal(open.status, 'fail');
  assert.equal(open.details.keyMode, '644');
  assert.equal(checkIdentity(identity({ dir: { mode: 0o40755, uid: 1000 } })).status, 'fail');
  assert.equal(checkIdentity(identity({ key: { mode: 0o100600, uid: 0 } })).status, 'fail');
  assert.equal(checkIdentity(identity({ problem: 'cert.pem is not a certificate', id: null })).status, 'fail');
  assert.equal(checkIdentity(identity({ cert: null, key: null, id: null })).status, 'warn');
  assert.equal(checkIdentity(identity({ dir: null, cert: null, key: null, id: null })).status, 'warn');
  // No uids (Windows): ownership is not judged.
  assert.equal(checkIdentity(identity({ uid: null, key: { mode: 0o100600, uid: 0 } })).status, 'ok');
});

test('pending: this side (pending.json), servers heard and not allowed, servers that refused this device', () => {
  const base = { selfId: ID_B, trustLan: false, allowed: [], pending: [], problem: null, heard: [], refusedBy: [] };
  assert.equal(checkPending(base).status, 'ok');
  const here = checkPending({
    ...base,
    pending: [
      {
        id: ID_A,
        name: 'lab',
        addr: '192.168.1.9',
        kind: 'server-seen',
        firstSeen: '2026-01-01T00:00:00Z',
        lastSeen: '2026-01-01T00:00:00Z',
        count: 3,
      },
    ],
  });
  assert.equal(here.status, 'warn');
  assert.match(here.summary, new RegExp(`ollana device allow ${ID_A}`));
  const heard = [{ id: ID_A, addr: '192.168.1.9', role: 'server' as const, port: 11435, kind: 'announce' }];
  assert.deepEqual(
    checkPending({ ...base, heard }).details.serversNotAllowed.map((s) => s.id),
    [ID_A],
  );
  assert.equal(checkPending({ ...base, heard, allowed: [ID_A] }).status, 'ok');
  assert.equal(checkPending({ ...base, heard, trustLan: true }).status, 'ok');
  const refused = checkPending({ ...base, allowed: [ID_A], refusedBy: [{ id: ID_A, addr: '192.168.1.9' }] });
  assert.equal(refused.status, 'warn');
  assert.match(refused.summary, new RegExp(`ollana device allow ${ID_B}`), 'says what to run on the server');
});

test('fd limit: parsed from /proc/<pid>/limits; under 4096 warns', () => {
  const limits =
    'Limit                     Soft Limit           Hard Limit           Units\nMax open files            1024                 524288               files\n';
  assert.deepEqual(parseLimits(limits), { soft: 1024, hard: 524288 });
  assert.equal(checkFdLimit({ soft: 1024, hard: 524288 }).status, 'warn');
  assert.equal(checkFdLimit({ soft: 65536, hard: 65536 }).status, 'ok');
  assert.equal(checkFdLimit({ soft: null, hard: null }).status, 'ok');
  assert.equal(checkFdLimit(null).status, 'skip');
  assert.deepEqual(parseLimits('Max open files            unlimited            unlimited            files'), {
    soft: null,
    hard: null,
  });
});

test('clock: within a minute of the servers is ok; far off warns with the worst one; no answer is skip', () => {
  const s = (offsetMs: number, id = ID_A) => ({ id, addr: '192.168.1.9', offsetMs });
  assert.equal(checkClock([s(800), s(-400, ID_B)]).status, 'ok');
  const off = checkClock([s(800), s(-3_600_000, ID_B)]);
  assert.equal(off.status, 'warn');
  assert.equal(off.details.worstOffsetMs, -3_600_000);
  assert.equal(checkClock([]).status, 'skip');
});

/** Probes of a healthy machine; each test breaks one fact. */
function probes(over: Partial<DoctorProbes> = {}): DoctorProbes & { listened: number } {
  const p = {
    listened: 0,
    ollama: async () => ({ ok: true as const, version: '0.12.0' }),
    portHolders: () => [],
    firewall: async () => ({ nft: { text: '' }, iptables: { text: '' }, ufw: { missing: 'not installed' } }),
    interfaces: () => [iface({ name: 'eth0' })],
    multicastRoute: () => 'eth0',
    fdLimit: () => ({ soft: 65536, hard: 65536 }),
    identity: () => identity({}),
    loadIdentity: () => null,
    allowedIds: () => ({ ids: [ID_A], problem: null }),
    pending: () => ({ pending: [], problem: null }),
    listen: async () => {
      p.listened++;
      return hearing({ peers: [{ id: ID_A, addr: '192.168.1.9', role: 'server', port: 11435, kind: 'announce' }] });
    },
    askTime: async () => ({ samples: [{ id: ID_A, addr: '192.168.1.9', offsetMs: 300 }], refusedBy: [] }),
    ...over,
  };
  return p;
}

const SETTINGS: DoctorSettings = {
  ports: DEFAULT_PORTS,
  group: '239.255.11.36',
  ollamaUrl: 'http://127.0.0.1:11434',
  dataDir: '/home/u/.config/ollana',
  listenMs: 3000,
  trustLan: false,
  discovery: 'both',
};

test('runDoctor: every check once, in order; ok only while no check fails; one line each for people', async () => {
  const healthy = await runDoctor(SETTINGS, probes());
  assert.deepEqual(
    healthy.checks.map((c) => c.id),
    [
      'ollama',
      'ports',
      'firewall',
      'interfaces',
      'multicast-route',
      'hearing',
      'identity',
      'pending',
      'fd-limit',
      'clock',
    ],
  );
  assert.deepEqual(
    healthy.checks.filter((c) => c.status !== 'ok').map((c) => c.id),
    [],
  );
  assert.equal(healthy.ok, true);
  const text = formatReport(healthy);
  assert.equal(text.trim().split('\n').length, healthy.checks.length + 1);
  const broken = await runDoctor(
    SETTINGS,
    probes({
      firewall: async () => ({ nft: { text: 'udp dport 11436 drop' }, iptables: { text: '' }, ufw: { missing: 'x' } }),
    }),
  );
  assert.equal(broken.ok, false);
  const warned = await runDoctor(SETTINGS, probes({ fdLimit: () => ({ soft: 256, hard: 256 }) }));
  assert.equal(warned.ok, true, 'a warning is not a failure');
});

test('runDoctor: --discovery off sends nothing to the LAN (hearing skipped); a broken pending.json is said, not thrown', async () => {
  const p = probes({
    pending: () => {
      throw new Error('cannot read pending.json: permission denied');
    },
  });
  const r = await runDoctor({ ...SETTINGS, discovery: 'off' }, p);
  assert.equal(p.listened, 0);
  assert.equal(r.checks.find((c) => c.id === 'hearing')?.status, 'skip');
  assert.match(String(r.checks.find((c) => c.id === 'pending')?.details.problem), /permission denied/);
});
