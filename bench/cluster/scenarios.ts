/**
 * The measurements of the cluster benchmark. One run = one virtual LAN of 3 hosts (h1, h2: server
 * nodes with an Ollama emulator each; h3: the client node and the probes), used for every scenario
 * of the run in turn; after each event the cluster is put back (the victim restarted, or its link
 * healed) and the next scenario starts once the client lists both servers again. A scenario that
 * fails throws the LAN away; the next one builds a fresh one. Start-ups cost seconds on a busy
 * machine, so reusing the LAN is what keeps a run short.
 *
 *   discover       1 server, then the client node starts: time to its first ollama-js success
 *   detect-kill    2 servers + client; a server SIGKILLed (no bye): time until the client's status
 *                  no longer lists it; then it restarts (same identity): time until listed again
 *   detect-cut     the same with the server's link cut; then healed: time until listed again
 *   failover-kill  the same as detect-kill with a steady request loop on the client host: the longest
 *                  stretch without a successful completion around the kill, and the failures
 *   failover-cut   the same with a cut link
 *   bye            a server stopped with SIGTERM (it says bye): time until the client drops it
 *
 * All times are Date.now() values: every host shares the machine clock.
 */
import { createLan, cut, heal, type Host, type HostProcess, type Lan } from '../../testkit/netns.ts';
import {
  NODE,
  PROBES,
  StatusWatch,
  hasUpstream,
  jsonLines,
  levelOf,
  logLines,
  logTime,
  nodeIdOf,
  sleep,
  spawnNode,
  startEmulator,
  startNode,
  tail,
  type OllanaNode,
  type StatusSnap,
} from './harness.ts';
import { spread } from '../lib/stats.ts';

export type ScenarioId = 'discover' | 'detect-kill' | 'detect-cut' | 'failover-kill' | 'failover-cut' | 'bye';
export const SCENARIO_IDS: readonly ScenarioId[] = [
  'discover',
  'detect-kill',
  'detect-cut',
  'failover-kill',
  'failover-cut',
  'bye',
];

export interface ScenarioEnv {
  /** As given to --heartbeat, e.g. "1000ms". */
  readonly heartbeat: string;
  readonly heartbeatMs: number;
  /** 0-based index of the run. */
  readonly run: number;
  /** Index of the scenario in the run: with the run, picks the victim's role. */
  readonly index: number;
  readonly log: (msg: string) => void;
  readonly verbose: boolean;
  /** independent request loops in the failover scenarios */
  readonly lanes: number;
}

/** Log excerpts worth showing in the report (surprises), collected by the scenarios. */
export interface Excerpt {
  readonly title: string;
  readonly lines: readonly string[];
}

export interface DiscoverResult {
  readonly scenario: 'discover';
  /** client spawn -> first successful generation completed */
  readonly spawnToFirstOkMs: number | null;
  /** client's "listening on" log line -> first successful generation completed */
  readonly listeningToFirstOkMs: number | null;
  /** client's "listening on" -> its "server node ... found" (both log times) */
  readonly listeningToFoundLogMs: number | null;
  /** client spawn -> its "listening on" log line */
  readonly spawnToListeningMs: number | null;
  /** client spawn -> its first log line (Node and module loading, before ollana does anything) */
  readonly spawnToFirstLogMs: number | null;
  /** client's "server node ... found" -> first success (route table to the proxy worker, probe cadence) */
  readonly foundToFirstOkMs: number | null;
  /** how long the successful attempt took */
  readonly firstOkRequestMs: number | null;
  readonly probeAttempts: number;
  readonly probeErrors: Record<string, number>;
  readonly excerpts: Excerpt[];
}

export interface DetectResult {
  readonly scenario: 'detect-kill' | 'detect-cut' | 'bye';
  readonly victimRole: 'leader' | 'follower';
  /** event -> first status poll not listing the victim */
  readonly dropMs: number | null;
  /** event -> the client's "is gone" log line for the victim */
  readonly goneLogMs: number | null;
  /** the reason in that line: timeout, bye */
  readonly goneReason: string | null;
  /** times the victim came back into the client's upstreams after being dropped (within 0.5 heartbeat + 500 ms) */
  readonly reappeared: number;
  /** event -> a status with another leader (only when the leader was the victim) */
  readonly newLeaderMs: number | null;
  /**
   * restarted victim's "listening" log line (kill, bye) or the start of the heal (cut) -> the client
   * lists it again (may be slightly negative after a restart: a server announces just before it logs
   * "listening")
   */
  readonly rejoinMs: number | null;
  readonly excerpts: Excerpt[];
}

export interface FailoverResult {
  readonly scenario: 'failover-kill' | 'failover-cut';
  readonly victimRole: 'leader' | 'follower';
  /** longest interval between successful completions, among those ending after the event */
  readonly gapMs: number | null;
  /** where that interval lies, relative to the event */
  readonly gapFromMs: number | null;
  readonly gapToMs: number | null;
  /** no success at all after the event until the loop stopped (gapMs is then a lower bound) */
  readonly gapOpen: boolean;
  /** requests that failed and ended after the event */
  readonly failed: number;
  /** start of the last of those, relative to the event */
  readonly lastFailStartMs: number | null;
  readonly failErrors: Record<string, number>;
  /** failures before the event (should be 0) */
  readonly failedBefore: number;
  readonly requests: number;
  /** steady state, 3 s before the event: median request time and longest interval between completions */
  readonly baselineMedianMs: number | null;
  readonly baselineMaxIntervalMs: number | null;
  /** longest successful request that ended after the event */
  readonly maxOkLatencyAfterMs: number | null;
  /** event -> the client's status no longer lists the victim */
  readonly dropMs: number | null;
  /** the client node's "retrying on another server node" log lines after the event */
  readonly retries: number;
  /** the client node's "upstream broke off a response" / "failed before responding" lines after the event */
  readonly upstreamErrors: number;
  /** the requests around the event (times relative to it), for a closer look in report.json */
  readonly window: readonly { s: number; e: number; ok: boolean; err?: string }[];
  readonly excerpts: Excerpt[];
}

export type ScenarioResult = DiscoverResult | DetectResult | FailoverResult;

// -------------------------------------------------------------------------------------------------

const rel = (t: number | null | undefined, t0: number): number | null =>
  t === null || t === undefined ? null : t - t0;

function countKeys(list: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const k of list) {
    const key = k.replace(/\b\d+(\.\d+)*\b/g, 'N').slice(0, 120);
    out[key] = (out[key] ?? 0) + 1;
  }
  return out;
}

/** Lines of a node's log from `after` on that are warnings or errors, or match `pred`. */
function excerpt(p: HostProcess, after: number, pred: (msg: string) => boolean, max = 16): string[] {
  return logLines(p)
    .filter((l) => l.time >= after && (levelOf(l) >= 40 || pred(l.msg)))
    .slice(0, max)
    .map((l) => `${new Date(l.time).toISOString().slice(11, 23)} ${l.msg}`);
}

function phase(env: ScenarioEnv, what: string, since: number): void {
  if (env.verbose) env.log(`  ${what}: ${Date.now() - since} ms`);
}

// -------------------------------------------------------------------------------------------------
// the run's cluster

/** The LAN of one run and what runs on it. */
export class RunCluster {
  readonly #env: ScenarioEnv;
  #lan: Lan | null = null;
  /** server nodes on h1, h2 (null: not running) */
  readonly servers: (OllanaNode | null)[] = [null, null];
  /** node ids of the servers (stable: a restart reuses the data directory) */
  readonly ids: string[] = ['', ''];
  client: OllanaNode | null = null;
  watch: StatusWatch | null = null;
  /** every node started on this LAN, with its host name: their logs outlive restarts */
  readonly #all: { name: string; node: OllanaNode }[] = [];

  constructor(env: ScenarioEnv) {
    this.#env = env;
  }

  get hosts(): readonly [Host, Host, Host] {
    if (this.#lan === null) throw new Error('no LAN');
    return this.#lan.hosts as [Host, Host, Host];
  }

  /** Creates the LAN and the emulators on h1, h2 if not done yet. */
  async lan(): Promise<void> {
    if (this.#lan !== null) return;
    const t0 = Date.now();
    this.#lan = await createLan({ hosts: 3 });
    const [h1, h2] = this.hosts;
    await Promise.all([startEmulator(h1), startEmulator(h2)]);
    phase(this.#env, 'LAN and emulators up', t0);
  }

  /** Starts the server node on h(i+1), reusing its data directory (so its id) if it ran before. */
  async startServer(i: 0 | 1): Promise<OllanaNode> {
    const home = this.servers[i]?.home;
    const n = await startNode(this.hosts[i], this.#env.heartbeat, home);
    this.#all.push({ name: `h${i + 1}`, node: n });
    this.servers[i] = n;
    const id = nodeIdOf(n);
    if (id === null) throw new Error(`the server node on h${i + 1} did not log its node id`);
    if (this.ids[i] !== '' && this.ids[i] !== id)
      throw new Error(`the restarted server on h${i + 1} has a new id ${id}`);
    this.ids[i] = id;
    return n;
  }

  /** Everything the trio scenarios need: 2 servers, the client, the status watch, both listed. */
  async trio(env: ScenarioEnv): Promise<void> {
    const t0 = Date.now();
    await this.lan();
    const starts: Promise<unknown>[] = [];
    if (this.servers[0] === null) starts.push(this.startServer(0));
    if (this.servers[1] === null) starts.push(this.startServer(1));
    if (this.client === null)
      starts.push(
        startNode(this.hosts[2], env.heartbeat).then((c) => {
          this.setClient(c);
        }),
      );
    await Promise.all(starts);
    this.watch ??= new StatusWatch(this.hosts[2], 50, 600_000);
    await this.bothListed('the client to list both servers and a leader');
    phase(env, 'cluster ready', t0);
  }

  /** Waits (bounded) until the client's status lists both servers and one of them leads. */
  bothListed(what: string, since = 0): Promise<StatusSnap> {
    return this.watch!.until(
      what,
      (s) =>
        s.t >= since &&
        this.ids.every((id) => hasUpstream(s, id)) &&
        s.leader !== undefined &&
        this.ids.includes(s.leader),
      15_000 + 5 * this.#env.heartbeatMs,
    );
  }

  setClient(c: OllanaNode): void {
    this.client = c;
    this.#all.push({ name: 'h3', node: c });
  }

  /**
   * Warnings and errors the nodes logged in [since, until], counted per host and message (numbers,
   * ids and addresses folded), leaving out the expected "server node ... is gone" of the event.
   */
  warnings(since: number, until = Infinity): Record<string, number> {
    const out: Record<string, number> = {};
    for (const { name, node } of this.#all) {
      for (const l of logLines(node.proc)) {
        if (l.time < since || l.time > until || levelOf(l) < 40) continue;
        if (/^server node \S+ at \S+ is gone/.test(l.msg)) continue;
        const key = `${name}: ${l.msg.replace(/[0-9a-f]{32}/g, '<id>').replace(/\d+(\.\d+)*/g, 'N')}`.slice(0, 160);
        out[key] = (out[key] ?? 0) + 1;
      }
    }
    return out;
  }

  /** What the client's status and the nodes' logs said since `since`, for an error message. */
  diagnose(since: number): string {
    const out: string[] = [];
    const snaps = this.watch?.snaps().filter((x) => x.t >= since - 2_000) ?? [];
    out.push(`servers: h1 ${this.ids[0]}, h2 ${this.ids[1]}`, 'client status changes:');
    for (const x of snaps.slice(-8)) {
      out.push(
        `  ${new Date(x.t).toISOString().slice(11, 23)} ${x.error ?? `upstreams [${(x.upstreams ?? []).map((u) => u.id.slice(0, 8)).join(', ')}] leader ${x.leader?.slice(0, 8)} term ${x.term}`}`,
      );
    }
    const pred = (m: string): boolean => /server node|leader|peer|conflict|term/i.test(m);
    const nodes: [string, OllanaNode | null][] = [
      ['client', this.client],
      ['h1', this.servers[0] ?? null],
      ['h2', this.servers[1] ?? null],
    ];
    for (const [name, n] of nodes) {
      if (n === null) continue;
      out.push(`${name} log:`, ...excerpt(n.proc, since - 2_000, pred, 20).map((l) => `  ${l}`));
    }
    return out.join('\n');
  }

  async cut(i: number): Promise<void> {
    await cut(this.hosts[i]!);
  }

  async heal(i: number): Promise<void> {
    await heal(this.hosts[i]!);
  }

  /** The leader in the client's latest status. */
  currentLeader(): string {
    return (
      this.watch
        ?.snaps()
        .filter((x) => x.error === undefined)
        .at(-1)?.leader ?? ''
    );
  }

  async close(): Promise<void> {
    const lan = this.#lan;
    this.#lan = null;
    this.servers[0] = this.servers[1] = null;
    this.ids[0] = this.ids[1] = '';
    this.client = null;
    this.watch = null;
    this.#all.length = 0;
    if (lan !== null) await lan.close(2_000);
  }
}

/** Picks the victim by the client's view right now (a restarted server may have led for a moment). */
function victimOf(c: RunCluster, env: ScenarioEnv): { i: 0 | 1; id: string; role: 'leader' | 'follower' } {
  const leader = c.currentLeader();
  // Alternate over runs and scenarios, so every scenario sees both roles.
  const role = (env.run + env.index) % 2 === 1 ? 'leader' : 'follower';
  const i = c.ids.findIndex((id) => (id === leader) === (role === 'leader'));
  if (i !== 0 && i !== 1) throw new Error(`no ${role} among ${c.ids.join(', ')} (leader ${leader})`);
  return { i, id: c.ids[i]!, role };
}

/** What the client's status did with the victim after the event at `t0`. */
function dropInfo(
  snaps: readonly StatusSnap[],
  id: string,
  t0: number,
  until = Infinity,
): { drop: number | null; reappeared: number } {
  let drop: number | null = null;
  let reappeared = 0;
  let present = true;
  for (const s of snaps) {
    if (s.t < t0 || s.t > until || s.error !== undefined) continue;
    const has = hasUpstream(s, id);
    if (present && !has) drop ??= s.t - t0;
    else if (!present && has) reappeared += 1;
    present = has;
  }
  return { drop, reappeared };
}

/** Waits (bounded) for the client to drop `id` after t0, then a little longer to see it stay dropped. */
async function awaitDrop(c: RunCluster, id: string, t0: number, env: ScenarioEnv): Promise<number> {
  await c.watch!.until(
    "the victim to leave the client's upstreams",
    (s) => s.t >= t0 && !hasUpstream(s, id),
    3.5 * env.heartbeatMs + 10_000,
  );
  await sleep(0.5 * env.heartbeatMs + 500);
  return Date.now();
}

function goneFromLog(client: OllanaNode, id: string, t0: number): { at: number | null; reason: string | null } {
  const l = logLines(client.proc).find(
    (x) => x.time >= t0 && x.msg.includes(`server node ${id} `) && x.msg.includes(' is gone'),
  );
  if (l === undefined) return { at: null, reason: null };
  return { at: l.time, reason: /is gone \(([^)]+)\)/.exec(l.msg)?.[1] ?? null };
}

function clientExcerpt(title: string, c: RunCluster, t0: number): Excerpt {
  const pred = (m: string): boolean => m.includes('server node') || m.includes('leader') || m.includes('retrying');
  return { title, lines: excerpt(c.client!.proc, t0 - 50, pred) };
}

/** Puts the victim back: restart (kill, bye) or heal (cut); returns the rejoin time. */
async function restore(c: RunCluster, i: 0 | 1, how: 'kill' | 'cut' | 'bye', env: ScenarioEnv): Promise<number | null> {
  // The victim is known to be absent now: the first status after this listing it again is the rejoin.
  const t0 = Date.now();
  let from: number;
  if (how === 'cut') {
    from = t0;
    await c.heal(i);
  } else {
    await c.servers[i]!.proc.exited;
    const n = await c.startServer(i);
    from = logTime(n.proc, (m) => m.includes('listening on')) ?? Date.now();
  }
  try {
    const s = await c.bothListed('the victim to be listed again', t0);
    phase(env, `victim back (${how === 'cut' ? 'healed' : 'restarted'})`, t0);
    return s.t - from;
  } catch (err) {
    throw new Error(`${(err as Error).message.split('\n')[0]}\n${c.diagnose(from)}`);
  }
}

// -------------------------------------------------------------------------------------------------
// 1. discover (needs a cluster without a client: the run's first scenario, or a fresh LAN)

export async function discover(c: RunCluster, env: ScenarioEnv): Promise<DiscoverResult> {
  if (c.client !== null) await c.close();
  await c.lan();
  // Exactly one server while the client starts: h2's server (if any) is stopped for the measurement.
  if (c.servers[1] !== null) {
    await c.servers[1].proc.stop();
    c.servers[1] = null;
  }
  if (c.servers[0] === null) await c.startServer(0);
  const h3 = c.hosts[2];
  await sleep(Math.random() * env.heartbeatMs); // a random phase of the server's heartbeat
  const probe = h3.spawn(NODE, [PROBES.firstSuccess, '--interval-ms', '20', '--deadline-ms', '20000']);
  await probe.waitForLine((t) => t.includes('"ready"'), 20_000);
  const client = spawnNode(h3, env.heartbeat);
  c.setClient(client);
  const outLine = await probe.waitForLine((t) => t.includes('"firstOkAt"'), 25_000);
  const out = JSON.parse(outLine) as {
    ok: boolean;
    firstOkAt: number | null;
    attemptStartedAt?: number;
    attempts: number;
    errors: Record<string, number>;
  };
  await client.proc.waitForLine((t) => t.includes('server node') && t.includes('found at'), 2_000).catch(() => '');
  const listening = logTime(client.proc, (m) => m.includes('listening on'));
  const found = logTime(client.proc, (m) => m.startsWith('server node') && m.includes(' found at '));
  const excerpts: Excerpt[] = [];
  if (!out.ok)
    excerpts.push({ title: 'discover: no success within 20 s; client log', lines: tail(client.proc, 20).split('\n') });
  return {
    scenario: 'discover',
    spawnToFirstOkMs: rel(out.firstOkAt, client.spawnedAt),
    listeningToFirstOkMs: listening === null || out.firstOkAt === null ? null : out.firstOkAt - listening,
    listeningToFoundLogMs: listening === null || found === null ? null : found - listening,
    spawnToListeningMs: rel(listening, client.spawnedAt),
    spawnToFirstLogMs: rel(logLines(client.proc)[0]?.time, client.spawnedAt),
    foundToFirstOkMs: found === null || out.firstOkAt === null ? null : out.firstOkAt - found,
    firstOkRequestMs:
      out.firstOkAt === null || out.attemptStartedAt === undefined ? null : out.firstOkAt - out.attemptStartedAt,
    probeAttempts: out.attempts,
    probeErrors: out.errors,
    excerpts,
  };
}

// -------------------------------------------------------------------------------------------------
// 2. detect (SIGKILL, cut) and 4. bye

export async function detect(c: RunCluster, env: ScenarioEnv, how: 'kill' | 'cut' | 'bye'): Promise<DetectResult> {
  await c.trio(env);
  await sleep(300 + Math.random() * env.heartbeatMs); // a random phase of the heartbeats
  const { i, id, role } = victimOf(c, env);
  const t0 = Date.now();
  if (how === 'kill') c.servers[i]!.proc.kill('SIGKILL');
  else if (how === 'bye') c.servers[i]!.proc.kill('SIGTERM');
  else await c.cut(i);
  const end = await awaitDrop(c, id, t0, env);
  const snaps = c.watch!.snaps();
  const d = dropInfo(snaps, id, t0, end);
  const gone = goneFromLog(c.client!, id, t0);
  const newLeader =
    role === 'leader'
      ? snaps.find((s) => s.t >= t0 && s.t <= end && s.leader !== undefined && s.leader !== '' && s.leader !== id)
      : undefined;
  const scenario = how === 'bye' ? 'bye' : how === 'kill' ? 'detect-kill' : 'detect-cut';
  const excerpts: Excerpt[] = [];
  const expectedReason = how === 'bye' ? 'bye' : 'timeout';
  if (d.reappeared > 0 || (gone.reason !== null && gone.reason !== expectedReason) || d.drop === null) {
    excerpts.push(
      clientExcerpt(
        `${scenario} (${role} victim ${id}, event at ${new Date(t0).toISOString().slice(11, 23)}): client log`,
        c,
        t0,
      ),
    );
  }
  const rejoinMs = await restore(c, i, how, env);
  return {
    scenario,
    victimRole: role,
    dropMs: d.drop,
    goneLogMs: rel(gone.at, t0),
    goneReason: gone.reason,
    reappeared: d.reappeared,
    newLeaderMs: newLeader === undefined ? null : newLeader.t - t0,
    rejoinMs,
    excerpts,
  };
}

// -------------------------------------------------------------------------------------------------
// 3. failover

interface ReqLine {
  l: number;
  s: number;
  e: number;
  ok: boolean;
  err?: string;
}

/** The failover numbers from the request log, the event at t0 and the loop stopped at `end`. */
export function analyseFailover(
  reqs: readonly ReqLine[],
  t0: number,
  end: number,
): Omit<FailoverResult, 'scenario' | 'victimRole' | 'dropMs' | 'retries' | 'upstreamErrors' | 'excerpts'> {
  const oks = reqs
    .filter((r) => r.ok)
    .map((r) => r.e)
    .sort((a, b) => a - b);
  let gap: { from: number; to: number } | null = null;
  let open = false;
  const firstAfter = oks.findIndex((e) => e > t0);
  if (firstAfter === -1) {
    gap = { from: oks.at(-1) ?? t0, to: end };
    open = true;
  } else {
    // Intervals between consecutive successes that end after the event; the first starts before it.
    const from = firstAfter === 0 ? [t0, ...oks] : oks.slice(firstAfter - 1);
    for (let k = 1; k < from.length; k++) {
      if (gap === null || from[k]! - from[k - 1]! > gap.to - gap.from) gap = { from: from[k - 1]!, to: from[k]! };
    }
  }
  const failedAfter = reqs.filter((r) => !r.ok && r.e >= t0);
  const before = reqs.filter((r) => r.e < t0 && r.e >= t0 - 3_000);
  const okBefore = before
    .filter((r) => r.ok)
    .map((r) => r.e)
    .sort((a, b) => a - b);
  let baseMax: number | null = null;
  for (let k = 1; k < okBefore.length; k++) baseMax = Math.max(baseMax ?? 0, okBefore[k]! - okBefore[k - 1]!);
  const okAfter = reqs.filter((r) => r.ok && r.e >= t0);
  return {
    gapMs: gap === null ? null : gap.to - gap.from,
    gapFromMs: gap === null ? null : gap.from - t0,
    gapToMs: gap === null ? null : gap.to - t0,
    gapOpen: open,
    failed: failedAfter.length,
    lastFailStartMs: failedAfter.length === 0 ? null : Math.max(...failedAfter.map((r) => r.s)) - t0,
    failErrors: countKeys(failedAfter.map((r) => r.err ?? '?')),
    failedBefore: reqs.filter((r) => !r.ok && r.e < t0).length,
    requests: reqs.length,
    baselineMedianMs: spread(before.filter((r) => r.ok).map((r) => r.e - r.s))?.median ?? null,
    baselineMaxIntervalMs: baseMax,
    maxOkLatencyAfterMs: okAfter.length === 0 ? null : Math.max(...okAfter.map((r) => r.e - r.s)),
    window: reqs
      .filter((r) => r.e >= t0 - 300 && (gap === null || r.s <= gap.to + 300))
      .slice(0, 200)
      .map((r) => ({ s: r.s - t0, e: r.e - t0, ok: r.ok, ...(r.err === undefined ? {} : { err: r.err }) })),
  };
}

export async function failover(c: RunCluster, env: ScenarioEnv, how: 'kill' | 'cut'): Promise<FailoverResult> {
  await c.trio(env);
  const loop = c.hosts[2].spawn(NODE, [
    PROBES.loadLoop,
    '--lanes',
    String(env.lanes),
    '--deadline-ms',
    '90000',
    '--request-timeout-ms',
    '10000',
  ]);
  try {
    await loop.waitForLine((x) => x.includes('"ready"'), 20_000);
    // Warm up: both servers used, keep-alive connections open, a steady rhythm.
    let okCount = 0;
    for (let k = 0; k < 100 && okCount < 50; k++) {
      await sleep(50);
      okCount = jsonLines<ReqLine>(loop).filter((r) => r.ok === true).length;
    }
    if (okCount < 50)
      throw new Error(`the request loop did not get going (${okCount} ok); loop output:\n${tail(loop)}`);
    await sleep(500 + Math.random() * env.heartbeatMs);
    const { i, id, role } = victimOf(c, env);
    const t0 = Date.now();
    if (how === 'kill') c.servers[i]!.proc.kill('SIGKILL');
    else await c.cut(i);
    const end = await awaitDrop(c, id, t0, env);
    await loop.stop(1_000);
    const reqs = jsonLines<ReqLine>(loop).filter((r) => typeof r.s === 'number');
    const a = analyseFailover(reqs, t0, end);
    const d = dropInfo(c.watch!.snaps(), id, t0, end);
    const after = logLines(c.client!.proc).filter((l) => l.time >= t0 && l.time <= end);
    const retries = after.filter((l) => l.msg.startsWith('retrying on another server node')).length;
    const upstreamErrors = after.filter(
      (l) => l.msg === 'upstream broke off a response' || l.msg === 'upstream failed before responding',
    ).length;
    const excerpts: Excerpt[] = [];
    if (a.failed > 1 || a.gapOpen || d.reappeared > 0) {
      excerpts.push(
        clientExcerpt(
          `failover-${how} (${role} victim ${id}): ${a.failed} failed, gap ${a.gapMs} ms; client log`,
          c,
          t0,
        ),
      );
    }
    await restore(c, i, how, env);
    return {
      scenario: how === 'kill' ? 'failover-kill' : 'failover-cut',
      victimRole: role,
      dropMs: d.drop,
      retries,
      upstreamErrors,
      ...a,
      excerpts,
    };
  } finally {
    if (loop.kill('SIGKILL')) await loop.exited;
  }
}
