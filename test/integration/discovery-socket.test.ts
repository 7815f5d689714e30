/**
 * Discovery on real UDP sockets, loopback only. Two actors in this process share one port (SO_REUSEADDR)
 * as two nodes on one host do; interface 127.0.0.1/8 via the interfaces override, so multicast goes out
 * through lo and the directed broadcast is 127.255.255.255; the limited broadcast (255.255.255.255,
 * routed to the default interface) is off, so nothing leaves the host.
 *
 * Linux delivers a unicast datagram to a port shared with SO_REUSEADDR to the socket bound LAST. Each
 * test binds the server first and the client second, so the server's unicast answer reaches the client.
 */
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { pino } from 'pino';
import { DiscoveryActor, type DiscoveryOptions } from '../../src/actors/discovery/index.ts';
import { systemClock } from '../../src/clock.ts';
import { Endpoint } from '../../src/actors/runtime.ts';
import { decoderFor } from '../../src/protocol/codec.ts';
import { encodeDatagram } from '../../src/net/datagram.ts';
import { DEFAULT_GROUP, type LanDatagram } from '../../src/protocol/lan.ts';
import {
  DISCOVERY_TO_SUPERVISOR,
  type DiscoveryStats,
  type DiscoveryToSupervisor,
  type SelfInfo,
  type SupervisorToDiscovery,
} from '../../src/protocol/messages.ts';
import type { DiscoveryWorkerData } from '../../src/protocol/workers.ts';
import { makeIdentities, type TestIdentity } from '../helpers/lan-identities.ts';

const [SRV, CLI, HOSTILE] = (await makeIdentities(3)) as [TestIdentity, TestIdentity, TestIdentity];

const LOOPBACK = [{ address: '127.0.0.1', netmask: '255.0.0.0' }];
const BASE_OPTIONS: DiscoveryOptions = {
  port: 0,
  group: DEFAULT_GROUP,
  multicast: true,
  broadcast: true,
  heartbeatMs: 1000,
  deadAfterMs: 3500,
  queryIntervalMs: 1000,
  answerJitterMs: 200,
  rateLimit: { perSecond: 100, burst: 200 },
  interfaces: LOOPBACK,
  limitedBroadcast: false,
};
const SERVER: SelfInfo = {
  id: SRV.id,
  boot: randomBytes(4).toString('hex'),
  role: 'server',
  port: 11435,
  fp: SRV.fp,
  load: { inFlight: 0, workers: 2 },
  models: 'm1',
  term: 1,
  leader: SRV.id,
  draining: false,
};
const CLIENT: SelfInfo = {
  ...SERVER,
  id: CLI.id,
  fp: CLI.fp,
  boot: randomBytes(4).toString('hex'),
  role: 'client',
  port: 0,
  leader: '',
};

/** Messages an actor sent to its supervisor, awaitable. */
class Inbox {
  readonly all: DiscoveryToSupervisor[] = [];
  readonly #waiters: { match: (m: DiscoveryToSupervisor) => boolean; resolve: (m: DiscoveryToSupervisor) => void }[] =
    [];

  push = (m: DiscoveryToSupervisor): void => {
    this.all.push(m);
    for (const w of [...this.#waiters]) {
      if (w.match(m)) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  };

  /** The first message (already here or to come) matching; fails after ms saying what was missing. */
  async next<T extends DiscoveryToSupervisor['type']>(
    type: T,
    ms: number,
    what: string,
    pred: (m: Extract<DiscoveryToSupervisor, { type: T }>) => boolean = () => true,
  ): Promise<Extract<DiscoveryToSupervisor, { type: T }>> {
    const match = (m: DiscoveryToSupervisor): boolean =>
      m.type === type && pred(m as Extract<DiscoveryToSupervisor, { type: T }>);
    const found = this.all.find(match);
    if (found) return found as Extract<DiscoveryToSupervisor, { type: T }>;
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        new Promise<Extract<DiscoveryToSupervisor, { type: T }>>((resolve) => {
          this.#waiters.push({ match, resolve: (m) => resolve(m as Extract<DiscoveryToSupervisor, { type: T }>) });
        }),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no ${type} within ${ms} ms: ${what}`)), ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }
}

interface Node {
  readonly actor: DiscoveryActor;
  readonly inbox: Inbox;
  readonly port: number;
  stats(): DiscoveryStats;
}

async function startNode(t: TestContext, options: Partial<DiscoveryOptions>, identity: TestIdentity): Promise<Node> {
  const inbox = new Inbox();
  const actor = new DiscoveryActor({
    socket: createSocket({ type: 'udp4', reuseAddr: true }),
    clock: systemClock,
    random: Math.random,
    log: pino({ level: 'silent' }),
    send: inbox.push,
    options: { ...BASE_OPTIONS, ...options },
    signer: identity.signer,
  });
  t.after(() => actor.stop());
  await actor.start();
  const ready = await inbox.next('discovery.ready', 1000, 'the actor bound');
  return { actor, inbox, port: ready.port, stats: () => actor.stats() };
}

/** A server, then a client on the same port that queries until it hears the server's unicast answer. */
async function serverAndClient(
  t: TestContext,
  options: Partial<DiscoveryOptions>,
): Promise<{ server: Node; client: Node; foundMs: number }> {
  // The server's heartbeat is long: after its first announce (sent before the client exists) it is
  // silent, so the client can learn of it only through the answer to its query.
  const server = await startNode(t, { heartbeatMs: 60_000, ...options }, SRV);
  server.actor.handle({ type: 'discovery.configure', self: SERVER, announce: true });
  await server.actor.flushed();
  const client = await startNode(t, { ...options, port: server.port }, CLI);
  const started = performance.now();
  client.actor.handle({ type: 'discovery.configure', self: CLIENT, announce: true });
  const seen = await client.inbox.next('peer.seen', 1000, 'the client found the server', (m) => m.peer.id === SRV.id);
  const foundMs = performance.now() - started;
  assert.equal(seen.peer.addr, '127.0.0.1');
  assert.equal(seen.peer.role, 'server');
  assert.equal(seen.peer.port, 11435);
  assert.equal(seen.peer.boot, SERVER.boot);
  return { server, client, foundMs };
}

for (const mode of [
  { name: 'multicast and broadcast', multicast: true, broadcast: true },
  { name: 'multicast only', multicast: true, broadcast: false },
  { name: 'broadcast only', multicast: false, broadcast: true },
]) {
  test(`${mode.name}: a client finds a server within 1 s by query and answer; bye removes it`, {
    timeout: 10_000,
  }, async (t) => {
    const { server, client, foundMs } = await serverAndClient(t, {
      multicast: mode.multicast,
      broadcast: mode.broadcast,
    });
    assert.ok(foundMs < 1000, `found after ${foundMs.toFixed(0)} ms`);
    // The server heard the client's query (or announce) too.
    await server.inbox.next('peer.seen', 1000, 'the server saw the client', (m) => m.peer.id === CLI.id);
    // The answer went by unicast to the client only: the server sent exactly its LAN copies plus one.
    const copies = Number(mode.multicast) + Number(mode.broadcast);
    assert.equal(server.stats().sent, copies + 1, 'one announce to the LAN, one unicast answer');
    if (mode.multicast && mode.broadcast) {
      assert.ok(server.stats().dropped.duplicate > 0, "the client's datagrams arrived twice, counted once");
    }
    server.actor.handle({ type: 'discovery.configure', self: SERVER, announce: false });
    const gone = await client.inbox.next('peer.gone', 1000, 'the bye reached the client');
    assert.deepEqual(gone, { type: 'peer.gone', id: SRV.id, reason: 'bye' });
  });
}

/**
 * Sends each buffer from a raw socket to 127.0.0.1:port. The receiver runs on this thread and libuv
 * reads at most 32 datagrams per loop turn: yield every 16 so the kernel's receive buffer never fills.
 */
async function sendRaw(raw: Socket, port: number, bufs: readonly Uint8Array[]): Promise<void> {
  for (let i = 0; i < bufs.length; i++) {
    await new Promise<void>((resolve, reject) =>
      raw.send(bufs[i]!, port, '127.0.0.1', (err) => (err ? reject(err) : resolve())),
    );
    if (i % 16 === 15) await new Promise((resolve) => setImmediate(resolve));
  }
}

/** Polls the actor's counters (they change on datagrams, which come with no event) until `ok`. */
async function statsUntil(
  node: Node,
  ok: (s: DiscoveryStats) => boolean,
  ms: number,
  what: string,
): Promise<DiscoveryStats> {
  const deadline = performance.now() + ms;
  for (;;) {
    const s = node.stats();
    if (ok(s)) return s;
    if (performance.now() > deadline) assert.fail(`${what} not reached within ${ms} ms: ${JSON.stringify(s)}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

test('hostile datagrams are dropped and counted; discovery keeps working', { timeout: 20_000 }, async (t) => {
  const rateLimit = { perSecond: 100, burst: 100 };
  const { server, client } = await serverAndClient(t, { heartbeatMs: 200, rateLimit });
  const raw = createSocket('udp4');
  t.after(() => raw.close());
  const valid = encodeDatagram(
    {
      kind: 'announce',
      id: HOSTILE.id,
      boot: 'b',
      role: 'server',
      port: 1,
      seq: 1,
      load: { inFlight: 0, workers: 0 },
      models: '',
      term: 0,
      leader: '',
      draining: false,
    } satisfies LanDatagram,
    HOSTILE.signer,
  );
  const wrongVersion = Buffer.from(valid);
  wrongVersion[4] = 99;
  const noise = (n: number): Buffer => Buffer.concat([Buffer.of(0), randomBytes(n)]); // never "OLNA"
  const before = client.stats();
  await sendRaw(raw, client.port, [
    noise(20),
    noise(300),
    noise(1100),
    valid.subarray(0, 20),
    valid.subarray(0, valid.length - 1),
    Buffer.concat([valid, Buffer.of(1)]),
    wrongVersion,
    Buffer.concat([valid, Buffer.alloc(1500 - valid.length)]),
  ]);
  const hostile = await statsUntil(
    client,
    (s) => s.dropped.oversize === 1 && s.dropped.version === 1 && s.dropped.malformed === 3 && s.dropped.magic === 3,
    2000,
    'every hostile datagram counted',
  );
  assert.equal(hostile.dropped.rateLimited, before.dropped.rateLimited);

  // A flood from one socket: after the burst, the bucket lets through perSecond at most.
  const floodStart = performance.now();
  await sendRaw(
    raw,
    client.port,
    Array.from({ length: 5000 }, () => noise(40)),
  );
  const flooded = await statsUntil(client, (s) => s.received - hostile.received >= 4500, 5000, 'the flood arrived');
  const elapsedS = (performance.now() - floodStart) / 1000;
  const passed = flooded.dropped.magic - hostile.dropped.magic;
  assert.ok(flooded.dropped.rateLimited >= 4000, `rate limited ${flooded.dropped.rateLimited}`);
  assert.ok(
    passed <= rateLimit.burst + rateLimit.perSecond * elapsedS + 1,
    `${passed} of the flood passed in ${elapsedS} s`,
  );
  assert.ok(!client.inbox.all.some((m) => m.type === 'peer.gone'), 'the server was never lost');
  assert.ok(
    !client.inbox.all.some((m) => m.type === 'peer.seen' && m.peer.id === HOSTILE.id),
    'no garbage became a peer',
  );

  // Still working: the server's news reaches the client once the bucket refills.
  server.actor.handle({ type: 'discovery.configure', self: { ...SERVER, models: 'm2' }, announce: true });
  const news = await client.inbox.next(
    'peer.seen',
    3000,
    "the server's news after the flood",
    (m) => m.peer.id === SRV.id && m.peer.models === 'm2',
  );
  assert.equal(news.peer.addr, '127.0.0.1');
});

test('a port held without SO_REUSEADDR fails start() naming the port and --discovery-port', {
  timeout: 5000,
}, async (t) => {
  const holder = createSocket({ type: 'udp4' });
  holder.bind(0, '0.0.0.0');
  await once(holder, 'listening');
  t.after(() => holder.close());
  const port = holder.address().port;
  const actor = new DiscoveryActor({
    socket: createSocket({ type: 'udp4', reuseAddr: true }),
    clock: systemClock,
    random: Math.random,
    log: pino({ level: 'silent' }),
    send: () => undefined,
    options: { ...BASE_OPTIONS, port },
    signer: SRV.signer,
  });
  await assert.rejects(actor.start(), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'OLN_PORT_IN_USE');
    assert.ok(err.message.includes(`0.0.0.0:${port}`) && err.message.includes('--discovery-port'), err.message);
    return true;
  });
  await actor.stop();
});

test('the worker entry: ready, stats, stop, and a bind failure as error data', { timeout: 10_000 }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'ollana-discovery-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const file = new URL('../../src/workers/discovery.worker.ts', import.meta.url);
  const logFile = join(dir, 'discovery.log');
  const data: DiscoveryWorkerData = {
    log: { level: 'info', file: logFile, pretty: false },
    options: BASE_OPTIONS,
    identity: { certPem: SRV.certPem, keyPem: SRV.keyPem },
  };
  const worker = new Worker(file, { workerData: data });
  t.after(() => worker.terminate());
  const inbox = new Inbox();
  const endpoint = new Endpoint<DiscoveryToSupervisor, SupervisorToDiscovery>(
    worker,
    decoderFor(DISCOVERY_TO_SUPERVISOR),
    inbox.push,
    (err) => assert.fail(err),
  );
  endpoint.send({ type: 'discovery.configure', self: SERVER, announce: true });
  const ready = await inbox.next('discovery.ready', 5000, 'the worker bound');
  assert.deepEqual(ready.interfaces, ['127.0.0.1']);
  assert.ok(ready.port > 0);
  endpoint.send({ type: 'discovery.stats.request', id: 7 });
  const report = await inbox.next('discovery.stats.report', 2000, 'stats from the worker');
  assert.equal(report.id, 7);
  const exited = once(worker, 'exit');
  endpoint.send({ type: 'discovery.stop' });
  await inbox.next('discovery.stopped', 2000, 'the worker stopped');
  assert.deepEqual(await exited, [0], 'the thread ends by itself once stopped');
  const records = readFileSync(logFile, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(records.every((r) => r.actor === 'discovery'));
  assert.deepEqual(
    records.map((r) => r.msg),
    ['discovery listening', 'discovery stopped'],
  );

  // A bind failure crosses the thread as { code, message, details } on the Worker's 'error' event.
  const holder = createSocket({ type: 'udp4' });
  holder.bind(0, '0.0.0.0');
  await once(holder, 'listening');
  t.after(() => holder.close());
  const failing = new Worker(file, {
    workerData: { ...data, options: { ...BASE_OPTIONS, port: holder.address().port } },
  });
  const [err] = (await once(failing, 'error')) as [{ code: string; message: string }];
  assert.equal(err.code, 'OLN_PORT_IN_USE');
  assert.match(err.message, /--discovery-port/);
  await once(failing, 'exit');
});
