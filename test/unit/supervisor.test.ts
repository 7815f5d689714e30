/**
 * The Supervisor in-process (issue #15): fake threads, a fake Ollama probe, a fake port claim, a fake
 * trust store and cluster view, and a FakeClock. No thread, child process or socket is made; the
 * tests yield to the event loop (flush) so that the supervisor's awaits run, and move time with the
 * clock, never by waiting.
 */
import type { WorkerMetricsReport } from '../../src/metrics/hub.ts';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { pino } from 'pino';
import type { ActorThreadOptions } from '../../src/actors/actor-thread.ts';
import type { PortProbe } from '../../src/actors/listen-claim.ts';
import type { OllamaProbe } from '../../src/actors/ollama-watch.ts';
import { TOLD_PER_MINUTE } from '../../src/actors/peer-book.ts';
import type { ClusterHandle, TrustHandle } from '../../src/actors/supervisor-deps.ts';
import { SWITCH_DRAIN_MS, Supervisor } from '../../src/actors/supervisor.ts';
import type { ActorHandle, PoolHandle, ThreadFactory } from '../../src/actors/thread-factory.ts';
import { DEFAULTS, type ServeConfig } from '../../src/config/defaults.ts';
import { OllanaError } from '../../src/errors.ts';
import type { Identity } from '../../src/identity/identity.ts';
import type { ProxyPoolEvents } from '../../src/protocol/events.ts';
import type { PeerInfo } from '../../src/protocol/lan.ts';
import type { Message, RouteTable, TrustSettings, Upstream } from '../../src/protocol/messages.ts';
import type { WorkerReport } from '../../src/protocol/status.ts';
import type { ProxyWorkerData } from '../../src/protocol/workers.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

/**
 * Lets pending promise chains and immediates run (the supervisor's awaits on the fakes): the fakes do
 * no I/O, so a bounded number of event-loop turns is enough for any chain a test starts.
 */
async function flush(turns = 100): Promise<void> {
  for (let i = 0; i < turns; i++) await new Promise<void>((resolve) => setImmediate(resolve));
}

/** One ordered record of what the supervisor did to its threads, shared by the fakes. */
type Step = string;

class FakePool extends EventEmitter implements PoolHandle {
  readonly routes: RouteTable[] = [];
  readonly trusts: TrustSettings[] = [];
  readonly stops: number[] = [];
  cut = 0;
  restarts = 0;
  load = 0;
  readonly workerData: ProxyWorkerData;
  readonly table: RouteTable;
  readonly steps: Step[];
  constructor(workerData: ProxyWorkerData, table: RouteTable, steps: Step[]) {
    super();
    this.workerData = workerData;
    this.table = table;
    this.steps = steps;
  }
  start(): Promise<void> {
    return Promise.resolve();
  }
  setRoutes(table: RouteTable): void {
    this.routes.push(table);
  }
  setTrust(trust: TrustSettings): void {
    this.trusts.push(trust);
  }
  inFlight(): number {
    return this.load;
  }
  openConnections(): number {
    return 0;
  }
  stats(): Promise<WorkerReport[]> {
    return Promise.resolve([]);
  }
  metrics(): Promise<WorkerMetricsReport[]> {
    return Promise.resolve([]);
  }
  async stop(deadlineMs: number): Promise<number> {
    this.steps.push(`pool.stop ${deadlineMs}`);
    this.stops.push(deadlineMs);
    await flush(3); // a drain takes a while: what follows must wait for it
    this.steps.push('pool.stopped');
    return 0;
  }
  emitEvent<E extends keyof ProxyPoolEvents>(event: E, ...args: ProxyPoolEvents[E]): void {
    this.emit(event, ...args);
  }
}

class FakeActor<In extends Message, Out extends Message> extends EventEmitter implements ActorHandle<In, Out> {
  readonly sent: Out[] = [];
  readonly opts: ActorThreadOptions<In>;
  readonly steps: Step[];
  constructor(opts: ActorThreadOptions<In>, steps: Step[]) {
    super();
    this.opts = opts;
    this.steps = steps;
  }
  start(): void {
    this.steps.push(`${this.opts.name}.start`);
    this.opts.onStart();
    // Discovery reports ready once its socket is bound.
    if (this.opts.name === 'discovery') {
      queueMicrotask(() =>
        this.emit('message', {
          type: 'discovery.ready',
          port: 11436,
          group: '239.255.11.36',
          multicast: true,
          broadcast: true,
          interfaces: ['lo'],
        }),
      );
    }
  }
  send(msg: Out): void {
    this.sent.push(msg);
    if (msg.type === 'discovery.configure')
      this.steps.push(`discovery.configure draining=${String(msg.self.draining)} announce=${String(msg.announce)}`);
    if (msg.type === 'discovery.stop') {
      this.steps.push('discovery.stop');
      queueMicrotask(() => this.emit('message', { type: 'discovery.stopped' }));
    }
  }
  async stop(_graceMs?: number, farewell?: () => Promise<void>): Promise<void> {
    if (farewell !== undefined) await farewell();
    this.steps.push(`${this.opts.name}.terminated`);
  }
  /** A message from the thread. */
  tell(msg: In): void {
    this.emit('message', msg);
  }
}

class FakeThreads implements ThreadFactory {
  readonly pools: FakePool[] = [];
  readonly actors = new Map<string, FakeActor<Message, Message>>();
  readonly steps: Step[] = [];
  actor<In extends Message, Out extends Message>(opts: ActorThreadOptions<In>): ActorHandle<In, Out> {
    const actor = new FakeActor<In, Out>(opts, this.steps);
    this.actors.set(opts.name, actor as unknown as FakeActor<Message, Message>);
    return actor;
  }
  pool(_size: number, workerData: ProxyWorkerData, table: RouteTable): PoolHandle {
    const pool = new FakePool(workerData, table, this.steps);
    this.pools.push(pool);
    return pool;
  }
  get lastPool(): FakePool {
    const pool = this.pools.at(-1);
    assert.ok(pool !== undefined, 'no proxy pool was started');
    return pool;
  }
  discovery(): FakeActor<Message, Message> {
    const actor = this.actors.get('discovery');
    assert.ok(actor !== undefined, 'no discovery thread was started');
    return actor;
  }
}

/** A local Ollama the test turns on and off. */
class FakeOllama implements OllamaProbe {
  up: boolean;
  list = ['llama3:8b'];
  asked = 0;
  constructor(up: boolean) {
    this.up = up;
  }
  ollama(): ReturnType<OllamaProbe['ollama']> {
    this.asked++;
    return Promise.resolve(this.up ? { ok: true, version: '0.9.0' } : { ok: false, reason: 'connection refused' });
  }
  models(): Promise<string[] | null> {
    return Promise.resolve(this.up ? this.list : null);
  }
}

const freePorts: PortProbe = {
  claimPort: (_host, port) => Promise.resolve(port === 0 ? 40_000 : port),
  ollana: () => Promise.resolve(false),
  ollanaTls: () => Promise.resolve(false),
  ollama: () => Promise.resolve({ ok: false, reason: 'nothing there' }),
};

interface Noted {
  readonly id: string;
  readonly kind: string;
}

class FakeTrust extends EventEmitter implements TrustHandle {
  settings: TrustSettings = { trustLan: false, allowed: [], disabled: [] };
  readonly noted: Noted[] = [];
  started = false;
  get pendingCount(): number {
    return new Set(this.noted.map((n) => n.id)).size;
  }
  trusts(id: string): boolean {
    return !this.settings.disabled.includes(id) && (this.settings.trustLan || this.settings.allowed.includes(id));
  }
  isDisabled(id: string): boolean {
    return this.settings.disabled.includes(id);
  }
  start(): void {
    this.started = true;
  }
  stop(): void {
    this.started = false;
  }
  notePending(
    id: string,
    _name: string,
    _addr: string,
    kind: 'server-seen' | 'client-refused',
    then?: (first: boolean) => void,
  ): boolean {
    const first = !this.noted.some((n) => n.id === id);
    this.noted.push({ id, kind });
    then?.(first); // pending.json "written" at once
    return first;
  }
  /** devices.json changed. */
  change(settings: TrustSettings): void {
    this.settings = settings;
    this.emit('change', settings);
  }
}

/** The cluster view's contract, without model list fetches: every server seen is an upstream. */
class FakeCluster implements ClusterHandle {
  readonly #servers = new Map<string, PeerInfo>();
  readonly onChange: () => void;
  constructor(onChange: () => void) {
    this.onChange = onChange;
  }
  seen(peer: PeerInfo): void {
    this.#servers.set(peer.id, peer);
    this.onChange();
  }
  gone(id: string): void {
    if (this.#servers.delete(id)) this.onChange();
  }
  close(): void {}
  setView(): void {}
  upstreams(): Upstream[] {
    return [...this.#servers.values()].map((p) => ({
      id: p.id,
      url: `https://${p.addr}:${p.port}`,
      device: p.id,
      basePath: '',
      healthy: true,
      models: [],
      leader: false,
      load: 0,
    }));
  }
  peers(): PeerInfo[] {
    return [...this.#servers.values()];
  }
  models(): string[] {
    return [];
  }
}

interface LogRecord {
  readonly level: number;
  readonly msg: string;
  readonly [key: string]: unknown;
}

const IDENTITY: Identity = {
  id: 'SELF-ID',
  certPem: 'cert',
  keyPem: 'key',
  fingerprint: 'ab'.repeat(32),
  certFile: '/nonexistent/cert.pem',
  keyFile: '/nonexistent/key.pem',
  name: 'test',
};

function serverPeer(id: string, addr = '192.0.2.10'): PeerInfo {
  return {
    id,
    boot: 'b1',
    role: 'server',
    addr,
    port: 11435,
    fp: 'f',
    load: { inFlight: 0, workers: 1 },
    models: '',
    term: 1,
    leader: '',
    draining: false,
    lastSeen: 0,
  };
}

function setup(config: Partial<ServeConfig>, ollamaUp: boolean) {
  const clock = new FakeClock();
  const threads = new FakeThreads();
  const ollama = new FakeOllama(ollamaUp);
  const trust = new FakeTrust();
  let cluster: FakeCluster | null = null;
  const records: LogRecord[] = [];
  const log = pino(
    { level: 'debug' },
    {
      write: (line: string) => {
        records.push(JSON.parse(line) as LogRecord);
      },
    },
  );
  const supervisor = new Supervisor(
    {
      config: { ...DEFAULTS, workers: 2, discovery: 'off', ...config },
      log,
      logSettings: { level: 'error', file: null, pretty: false },
      version: 'test',
      identity: IDENTITY,
      dataDir: '/nonexistent',
      debugHooks: false,
    },
    {
      clock,
      ollama,
      ports: freePorts,
      threads,
      trust: () => trust,
      cluster: (_log, _identity, onChange) => (cluster = new FakeCluster(onChange)),
    },
  );
  const lines = (re: RegExp): LogRecord[] => records.filter((r) => re.test(r.msg));
  /** Moves time in health-check steps, letting each check finish before the next. */
  const advance = async (ms: number, step = 1_000): Promise<void> => {
    for (let done = 0; done < ms; done += step) {
      clock.advance(Math.min(step, ms - done));
      await flush();
    }
  };
  return { clock, threads, ollama, trust, supervisor, lines, advance, cluster: () => cluster! };
}

test('auto mode: the role is decided by the Ollama probe (answers: server node sharing it over TLS; none: client node)', async () => {
  const up = setup({ mode: 'auto' }, true);
  const started = await up.supervisor.start();
  assert.equal(started.role, 'server');
  assert.equal(started.url, 'https://0.0.0.0:11435');
  const pool = up.threads.lastPool;
  assert.equal(pool.workerData.proxy.listenTls, true);
  assert.equal(pool.table.role, 'server');
  assert.deepEqual(
    pool.table.upstreams.map((u) => [u.id, u.url, u.healthy, u.models]),
    [['local', 'http://127.0.0.1:11434', true, ['llama3:8b']]],
  );
  await up.supervisor.stop('test');

  const down = setup({ mode: 'auto' }, false);
  const client = await down.supervisor.start();
  assert.equal(client.role, 'client');
  assert.equal(client.url, 'http://127.0.0.1:11434');
  assert.equal(down.threads.lastPool.workerData.proxy.listenTls, false);
  assert.deepEqual(down.threads.lastPool.table, { version: 1, role: 'client', upstreams: [] });
  await down.supervisor.stop('test');
});

test('auto mode: Ollama gone for roleSwitchAfterMs turns a server node into a client node, and back when it answers again', async () => {
  // The Ollama is elsewhere than the client node's listener (127.0.0.1:11434), so a client node watches it.
  const n = setup({ mode: 'auto', roleSwitchAfterMs: 10_000, ollamaUrl: 'http://127.0.0.1:11500' }, true);
  const roles: string[] = [];
  n.supervisor.on('role-changed', (role) => roles.push(role));
  assert.equal((await n.supervisor.start()).role, 'server');
  const first = n.threads.lastPool;

  n.ollama.up = false;
  await n.advance(2_000); // the health check that finds it gone
  assert.equal(
    first.routes.at(-1)?.upstreams[0]?.healthy,
    false,
    'the workers learn at once that the local Ollama is gone',
  );
  await n.advance(8_000); // 8 s after: still under roleSwitchAfterMs
  assert.equal(n.supervisor.role, 'server');
  assert.equal(n.threads.pools.length, 1);
  await n.advance(2_000); // 10 s after the first failed check: the switch is due
  assert.equal(n.supervisor.role, 'client');
  assert.deepEqual(roles, ['client']);
  assert.deepEqual(first.stops, [SWITCH_DRAIN_MS], "the server role's workers are drained");
  assert.equal(n.threads.pools.length, 2);
  assert.equal(n.threads.lastPool.workerData.proxy.host, '127.0.0.1');
  assert.equal(n.threads.lastPool.workerData.proxy.port, 11434);

  n.ollama.up = true;
  await n.advance(2_000);
  assert.equal(n.supervisor.role, 'server');
  assert.deepEqual(roles, ['client', 'server']);
  assert.equal(n.threads.pools.length, 3);
  assert.equal(n.threads.lastPool.table.upstreams[0]?.healthy, true);
  await n.supervisor.stop('test');
});

test('a server node in forced server mode stays one however long its Ollama is away', async () => {
  const n = setup({ mode: 'server', roleSwitchAfterMs: 4_000 }, true);
  await n.supervisor.start();
  n.ollama.up = false;
  await n.advance(20_000);
  assert.equal(n.supervisor.role, 'server');
  assert.equal(n.threads.pools.length, 1);
  await n.supervisor.stop('test');
});

test("a client node's route table reaches the pool when a trusted server appears and when trust changes", async () => {
  const n = setup({ mode: 'client', discovery: 'both' }, false);
  await n.supervisor.start();
  const pool = n.threads.lastPool;
  const discovery = n.threads.discovery();
  n.trust.settings = { trustLan: false, allowed: ['SRV-A'], disabled: [] };

  discovery.tell({ type: 'peer.seen', peer: serverPeer('SRV-A') });
  assert.deepEqual(
    pool.routes.at(-1)?.upstreams.map((u) => u.id),
    ['SRV-A'],
  );
  discovery.tell({ type: 'peer.seen', peer: serverPeer('SRV-B', '192.0.2.11') });
  assert.deepEqual(
    pool.routes.at(-1)?.upstreams.map((u) => u.id),
    ['SRV-A'],
    'a server not allowed is not used',
  );

  // devices.json now allows B and disables A.
  n.trust.change({ trustLan: false, allowed: ['SRV-B'], disabled: ['SRV-A'] });
  assert.deepEqual(
    pool.trusts.at(-1),
    { trustLan: false, allowed: ['SRV-B'], disabled: ['SRV-A'] },
    'the workers get the new allow list',
  );
  assert.deepEqual(
    pool.routes.at(-1)?.upstreams.map((u) => u.id),
    ['SRV-B'],
  );

  discovery.tell({ type: 'peer.gone', id: 'SRV-B', reason: 'bye' });
  assert.deepEqual(pool.routes.at(-1)?.upstreams, []);
  const versions = pool.routes.map((t) => t.version);
  assert.deepEqual(
    versions,
    [...versions].sort((a, b) => a - b),
    'each table is newer than the last',
  );
  await n.supervisor.stop('test');
});

test('trust notices: a server not allowed is noted pending and logged once, within a budget a minute; refusals are logged once', async () => {
  const n = setup({ mode: 'client', discovery: 'both' }, false);
  await n.supervisor.start();
  const discovery = n.threads.discovery();
  const found = /^server node .* found at .* not used: it is not allowed yet; to use it run: ollana device allow /;

  discovery.tell({ type: 'peer.seen', peer: serverPeer('SRV-0') });
  discovery.tell({ type: 'peer.seen', peer: { ...serverPeer('SRV-0'), models: 'changed' } });
  assert.deepEqual(
    n.trust.noted,
    [
      { id: 'SRV-0', kind: 'server-seen' },
      { id: 'SRV-0', kind: 'server-seen' },
    ],
    'noted pending each time it is seen (its last-seen time)',
  );
  assert.equal(n.lines(found).length, 1, 'logged once');

  for (let i = 1; i < TOLD_PER_MINUTE + 2; i++) discovery.tell({ type: 'peer.seen', peer: serverPeer(`SRV-${i}`) });
  assert.equal(n.lines(found).length, TOLD_PER_MINUTE, `${TOLD_PER_MINUTE} a minute at most`);
  assert.equal(n.trust.pendingCount, TOLD_PER_MINUTE, 'those over the budget are not listed as pending either');
  n.clock.advance(60_000);
  discovery.tell({ type: 'peer.seen', peer: serverPeer('SRV-NEXT') });
  assert.equal(n.lines(found).length, TOLD_PER_MINUTE + 1, 'a new minute, a new budget');
  assert.equal(n.lines(/^2 more server nodes this device does not use were heard in the last minute/).length, 1);

  const pool = n.threads.lastPool;
  pool.emitEvent('refused-by', 'SRV-X');
  pool.emitEvent('refused-by', 'SRV-X');
  assert.equal(
    n.lines(/^server node SRV-X does not allow this device yet; on that server run: ollana device allow SELF-ID$/)
      .length,
    1,
  );
  pool.emitEvent('refused', {
    type: 'trust.refused',
    id: 'CLIENT-1',
    name: 'laptop',
    addr: '192.0.2.50',
    verdict: 'unknown',
  });
  assert.deepEqual(n.trust.noted.at(-1), { id: 'CLIENT-1', kind: 'client-refused' });
  assert.equal(
    n.lines(
      /^refused device CLIENT-1 \(laptop\) from 192\.0\.2\.50: not allowed; to allow it run: ollana device allow CLIENT-1$/,
    ).length,
    1,
  );
  await n.supervisor.stop('test');
});

test('stop: announces draining first (no new requests), drains the workers, then says bye and ends the actors', async () => {
  const n = setup({ mode: 'server', discovery: 'both', drainTimeoutMs: 7_000 }, true);
  await n.supervisor.start();
  n.threads.steps.length = 0;
  await n.supervisor.stop('test');
  assert.deepEqual(n.threads.steps, [
    'discovery.configure draining=true announce=true',
    'pool.stop 7000',
    'pool.stopped',
    'discovery.stop',
    'discovery.terminated',
    'election.terminated',
  ]);
  assert.equal(n.trust.started, false, 'the trust store stops watching');
  n.clock.advance(60_000);
  await flush();
  assert.equal(n.ollama.asked, 1, 'no health check after stop');
});

test('a server node whose Ollama stops answering stops announcing at once, and announces again when it is back', async () => {
  const n = setup({ mode: 'server', discovery: 'both' }, true);
  await n.supervisor.start();
  const discovery = n.threads.discovery();
  const election = n.threads.actors.get('election');
  const announces = (): boolean[] =>
    discovery.sent.flatMap((m) => (m.type === 'discovery.configure' ? [m.announce] : []));
  const healthy = (): boolean[] =>
    (election?.sent ?? []).flatMap((m) => (m.type === 'election.self' ? [m.healthy] : []));
  assert.equal(announces().at(-1), true);
  assert.equal(healthy().at(-1), true);

  n.ollama.up = false;
  await n.advance(2_000);
  assert.equal(announces().at(-1), false, 'silent on the LAN from the first failed check');
  assert.equal(healthy().at(-1), false, 'and no longer a member for the election');
  n.ollama.up = true;
  await n.advance(2_000);
  assert.equal(announces().at(-1), true);
  assert.equal(healthy().at(-1), true);
  await n.supervisor.stop('test');
});

test('discovery that fails while starting (its port taken) fails start() with its coded error, and the node stops', async () => {
  const n = setup({ mode: 'client', discovery: 'both' }, false);
  const threads = n.threads;
  const actor = threads.actor.bind(threads);
  threads.actor = <In extends Message, Out extends Message>(opts: ActorThreadOptions<In>): ActorHandle<In, Out> => {
    const handle = actor<In, Out>(opts) as FakeActor<In, Out>;
    if (opts.name === 'discovery') {
      handle.start = () => {
        queueMicrotask(() => handle.emit('fatal', new OllanaError('OLN_PORT_IN_USE', 'UDP port 11436 is taken')));
      };
    }
    return handle;
  };
  await assert.rejects(n.supervisor.start(), { code: 'OLN_PORT_IN_USE', message: 'UDP port 11436 is taken' });
  assert.deepEqual(
    n.threads.lastPool.stops,
    [DEFAULTS.drainTimeoutMs],
    'the workers already started are drained and ended',
  );
});

test("status: role, listen address, upstreams and the workers' totals, as `ollana status` reads them", async () => {
  const n = setup({ mode: 'auto', listen: '127.0.0.1:0' }, true);
  await n.supervisor.start();
  const stats = {
    worker: 0,
    threadId: 2,
    requests: 5,
    inFlight: 1,
    completed: 4,
    clientAborts: 0,
    upstreamErrors: 1,
    bytesIn: 10,
    bytesOut: 20,
    statuses: { '2xx': 4 },
    ttfbMs: LATENCY,
    durationMs: LATENCY,
    rssBytes: 1,
    tlsHandshakes: 3,
    tlsResumed: 1,
    fastRequests: 4,
    handedToNode: 1,
  };
  n.threads.lastPool.stats = () => Promise.resolve([stats, { worker: 1, ready: false }]);
  n.clock.advance(4_000);
  const s = await n.supervisor.status();
  assert.equal(s.role, 'server');
  assert.equal(s.mode, 'auto');
  assert.deepEqual(s.listen, { host: '127.0.0.1', port: 40_000 });
  assert.equal(s.ollana.uptimeS, 4);
  assert.equal(s.trust.tls, true);
  assert.deepEqual(s.ollama && [s.ollama.healthy, s.ollama.version, s.ollama.models], [true, '0.9.0', ['llama3:8b']]);
  assert.deepEqual(
    s.upstreams.map((u) => u.id),
    ['local'],
  );
  assert.equal(s.cluster.leader, 'SELF-ID', 'with discovery off a healthy server node is its own leader');
  assert.equal(s.cluster.isLeader, true);
  assert.equal(s.discovery, null);
  assert.deepEqual(
    [s.workers.configured, s.workers.live, s.workers.totals.requests, s.workers.totals.upstreamErrors],
    [2, 1, 5, 1],
  );
  assert.equal(s.workers.list.length, 2);
  await n.supervisor.stop('test');
});

const LATENCY = { count: 1, min: 1, max: 1, mean: 1, p50: 1, p90: 1, p99: 1, p999: 1 };
