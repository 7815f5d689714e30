/**
 * `npm run bench:two-hop`: what two hops cost against talking to Ollama directly, on a virtual LAN of
 * two hosts (lan.ts): an application on the "laptop" talks to its client node, which reaches the "lab
 * server"'s server node over mutual TLS (pooled, resumed sessions), which reaches the Ollama emulator;
 * direct is the same application talking to the emulator across the LAN. Systems alternate round by
 * round; the load runs inside the laptop host (agent.ts). Needs root, iproute2 and util-linux.
 *
 *   node bench/two-hop/run.ts [options]    (--help lists them, each also a BENCH_TWO_HOP_* variable)
 *
 * Writes report.md and report.json to DIR (default bench/results/two-hop-<timestamp>/) and prints a
 * short table; about 3 minutes with the defaults on a 2-CPU machine (4 when other jobs load it). Stops everything it started on
 * every way out (namespaces included), and after a hard limit of 8 minutes (3 with --ci).
 * --ci is the gate (./gate.ts): two hops only, counts of TLS handshakes checked against thresholds, under 90 s.
 * Exit status: 0 done (gate passed), 1 a measurement or a gate check failed or the run broke, 2 usage error or cannot run here.
 */
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { netnsSkipReason } from '../../testkit/netns.ts';
import { MAIN, removeHomes, setOllanaMain } from '../cluster/harness.ts';
import { pinProcess } from '../lib/children.ts';
import {
  bool,
  byCi,
  existingFile,
  helpText,
  ids,
  integers,
  parseOptions,
  path,
  positive,
  type OptionSpec,
  type Parsed,
} from '../lib/cli.ts';
import { STREAM_SETTINGS } from '../lib/emulator.ts';
import { settle } from '../lib/scenarios/context.ts';
import { RATE_CASE_IDS, type RateCaseId } from '../lib/options.ts';
import type { GateCheck } from '../lib/report/types.ts';
import { writeReport } from '../lib/report/write.ts';
import type { CaseResult } from '../lib/results.ts';
import { REPO_ROOT, RunClock, cpuHalves, gitCommit } from '../lib/run-meta.ts';
import { log, runBench } from '../lib/runner.ts';
import type { SystemUnderTest } from '../lib/systems.ts';
import { RATE_CONCURRENCY, evaluateTwoHopGate, type Ahead } from './gate.ts';
import type { HandshakeCost, HandshakeCosts } from './handshakes.ts';
import { TwoHopLan, removeSocketDirs } from './lan.ts';
import { consoleTable, renderMarkdown, type TlsTotals, type TwoHopReport } from './report.ts';
import { coldCase, rateCase, reconnectCase, streamsCase, warmUp, type Env, type StreamShape } from './scenarios.ts';

/**
 * The gate counts handshakes, so a machine too busy to finish 200 handshakes within the default 5 s
 * connect timeout (seen with other jobs at load 8 on 2 cores: 15 of 200 cold streams got 502) must
 * not fail it; real breakage (a pin, a refused device, a broken pool) still fails at once.
 */
const CI_NODE_ARGS = ['--connect-timeout', '30s'];
const SCENARIOS = ['handshakes', 'cold', 'rate', 'streams', 'reconnect'] as const;

/** Every option: flag, BENCH_TWO_HOP_ variable, help, parser and default (flags win over the --ci defaults). */
const OPTIONS = {
  ci: {
    flag: 'ci',
    boolean: 'on',
    env: 'CI',
    help:
      'the gate: two hops only (no direct), cold, rate and reconnect with short settings\n' +
      '(--rounds 2 --warmup 3 --concurrency 32 --rate-cases generate); checks counts of TLS\nhandshakes (bench/two-hop/gate.ts), ' +
      'exits 1 when one fails; under 90 s',
    parse: bool,
    fallback: () => false,
  },
  rounds: {
    flag: 'rounds',
    arg: 'N',
    env: 'ROUNDS',
    help: 'rounds, systems alternating',
    shows: 'default 3, CI 2',
    parse: positive({ max: 50 }),
    fallback: byCi(3, 2),
  },
  duration: {
    flag: 'duration',
    arg: 'S',
    env: 'DURATION',
    help: 'seconds per request-rate measurement',
    shows: 'default 1.5',
    parse: positive({ integer: false, max: 60 }),
    fallback: () => 1.5,
  },
  warmup: {
    flag: 'warmup',
    arg: 'S',
    env: 'WARMUP',
    help: 'seconds of load through two hops before measuring',
    shows: 'default 6, CI 3',
    parse: positive({ integer: false, max: 120 }),
    fallback: byCi(6, 3),
  },
  workers: {
    flag: 'workers',
    arg: 'N',
    env: 'WORKERS',
    help: '--workers of both ollana nodes',
    shows: 'default 2',
    parse: positive({ max: 16 }),
    fallback: () => 2,
  },
  concurrency: {
    flag: 'concurrency',
    arg: 'a,b',
    env: 'CONCURRENCY',
    help: 'request-rate connections',
    shows: `default 1,32, CI ${RATE_CONCURRENCY}`,
    parse: integers(1024),
    fallback: byCi([1, 32], [RATE_CONCURRENCY]),
  },
  rateCases: {
    flag: 'rate-cases',
    arg: 'a,b',
    env: 'RATE_CASES',
    help: RATE_CASE_IDS.join(', '),
    shows: 'default generate,tags, CI generate',
    parse: ids(RATE_CASE_IDS),
    fallback: byCi<RateCaseId[]>(['generate', 'tags'], ['generate']),
  },
  streams: {
    flag: 'streams',
    arg: 'N',
    env: 'STREAMS',
    help: 'concurrent streams in the cold, streams and reconnect scenarios',
    shows: 'default 200',
    parse: positive({ max: 1000 }),
    fallback: () => 200,
  },
  scenarios: {
    flag: 'scenarios',
    arg: 'a,b',
    env: 'SCENARIOS',
    help: `${SCENARIOS.join(', ')}; handshakes runs on loopback`,
    shows: 'default all, CI cold,rate,reconnect',
    parse: ids(SCENARIOS),
    fallback: byCi<(typeof SCENARIOS)[number][]>([...SCENARIOS], ['cold', 'rate', 'reconnect']),
  },
  pin: {
    flag: 'no-pin',
    boolean: 'off',
    env: 'PIN',
    help: 'do not pin the hosts to CPUs',
    shows: 'pinned: laptop on the first half, lab server on the rest',
    parse: bool,
    fallback: () => true,
  },
  out: {
    flag: 'out',
    arg: 'DIR',
    env: 'OUT',
    help: 'report directory',
    shows: 'default bench/results/two-hop-<timestamp>[-ci]',
    parse: path,
    fallback: (d) => `${REPO_ROOT}/bench/results/two-hop-${d.stamp}${d.ci ? '-ci' : ''}`,
  },
  ollana: {
    flag: 'ollana',
    arg: 'FILE',
    env: 'OLLANA',
    help: 'the ollana entry point',
    shows: "default: this checkout's bin/ollana.mjs",
    parse: existingFile,
    fallback: () => MAIN,
  },
} satisfies Record<string, OptionSpec<unknown>>;
type Options = Parsed<typeof OPTIONS>;

const HELP = helpText(
  `Usage: node bench/two-hop/run.ts [options]        (npm run bench:two-hop)

Two hops (application -> client node -> TLS -> server node -> Ollama emulator) against direct
(application -> emulator across the LAN), on a virtual LAN of network namespaces. Needs root.`,
  OPTIONS,
  'BENCH_TWO_HOP_',
);

/** Two machines on one box: the laptop host on the first half of the CPUs, the lab server on the rest. */
function placement(pin: boolean): { client: string | null; server: string | null; text: string } {
  const h = cpuHalves(pin);
  return {
    client: h.first,
    server: h.second,
    text:
      h.unpinned ??
      `Pinned with taskset as two machines: laptop host (client node, load agent, this bench) on CPU ${h.first}; ` +
        `lab-server host (server node, emulator) on CPU ${h.second}. Direct runs on the same placement, so the emulator has the same CPU either way`,
  };
}

const HANDSHAKES = fileURLToPath(new URL('./handshakes.ts', import.meta.url));

/** ./handshakes.ts as a child (loopback only): what one handshake costs, full and resumed. */
function handshakeCosts(): Promise<HandshakeCosts> {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      [HANDSHAKES, '--n', '200'],
      { timeout: 60_000, encoding: 'utf8' },
      (err, stdout, stderr) => {
        if (err !== null) {
          reject(new Error(`handshakes.ts: ${err.message} ${stderr.slice(-500)}`));
          return;
        }
        resolve(JSON.parse(stdout.trim().split('\n').pop()!) as HandshakeCosts);
      },
    );
  });
}
let current: TwoHopLan | null = null;

/**
 * Waits (bounded) until the client node's workers have connected ahead to the server they found
 * (one handshake each, no request), so that the cold burst measures a client node that had the time
 * to; an ollana without connections ahead (--ollana pointing at an older checkout) costs the wait.
 */
async function connectionsAhead(two: TwoHopLan, workers: number, limitMs: number): Promise<Ahead> {
  const t0 = performance.now();
  let c = await two.agent.client();
  while (c.tlsHandshakes < workers && performance.now() - t0 < limitMs) {
    await settle(100);
    c = await two.agent.client();
  }
  return {
    handshakes: c.tlsHandshakes,
    resumed: c.tlsResumed,
    requests: c.requests,
    waitedMs: Math.round(performance.now() - t0),
  };
}

async function measureAll(
  o: Options,
  two: TwoHopLan,
  problems: string[],
): Promise<{ cases: CaseResult[]; ahead: Ahead }> {
  const all: SystemUnderTest[] = [
    {
      id: 'direct',
      label: `direct: emulator at ${two.directUrl} across the LAN, plain HTTP`,
      url: two.directUrl,
      pids: () => [],
      stop: async () => null,
    },
    {
      id: 'two-hop',
      label:
        `two hops: client node ${two.twoHopUrl} -> TLS -> server node ${two.h1.addr}:11435 -> emulator, ` +
        `--workers ${o.workers} each`,
      url: two.twoHopUrl,
      pids: () => [two.client.proc.pid!, two.server.proc.pid!],
      stop: async () => null,
    },
  ];
  const systems = all.filter((s) => !o.ci || s.id === 'two-hop');
  // Re-measuring rounds that other processes disturbed is bounded, so a busy machine cannot stretch the
  // run; the gate counts handshakes, which a busy machine does not change, so it re-measures nothing.
  const env: Env = {
    two,
    systems,
    rounds: o.rounds,
    duration: o.duration,
    log,
    retryBudget: { remainingMs: o.ci ? 0 : 20_000 },
  };
  const ahead = await connectionsAhead(two, o.workers, o.ci ? 10_000 : 5_000);
  log(
    `two-hop: before the first request the client node's workers made ${ahead.handshakes} TLS handshake(s) ` +
      `(${ahead.resumed} resumed), seen after ${ahead.waitedMs} ms`,
  );
  const shape: StreamShape = {
    n: o.streams,
    tokens: STREAM_SETTINGS.tokens,
    intervalMs: STREAM_SETTINGS.tokenIntervalMs,
    ttftMs: STREAM_SETTINGS.ttftMs,
  };
  const cases: CaseResult[] = [];
  const attempt = async (what: string, fn: () => Promise<CaseResult>): Promise<void> => {
    const t0 = performance.now();
    try {
      cases.push(await fn());
      log(`  (${what}: ${((performance.now() - t0) / 1000).toFixed(0)} s)`);
    } catch (err) {
      problems.push(`${what} broke off: ${(err as Error).message}`);
      log(`two-hop: ${what} broke off: ${(err as Error).message}`);
    }
  };
  if (o.scenarios.includes('cold')) await attempt('cold', () => coldCase(env, shape, o.workers));
  if (o.scenarios.some((x) => x === 'rate' || x === 'streams' || x === 'reconnect')) await warmUp(env, o.warmup);
  if (o.scenarios.includes('rate')) {
    for (const rc of o.rateCases)
      for (const c of o.concurrency) await attempt(`rate ${rc} c=${c}`, () => rateCase(env, rc, c, o.workers));
  }
  if (o.scenarios.includes('streams')) await attempt('streams', () => streamsCase(env, shape, o.workers));
  if (o.scenarios.includes('reconnect')) await attempt('reconnect', () => reconnectCase(env, shape, o.workers));
  return { cases, ahead };
}

async function main(o: Options): Promise<number> {
  setOllanaMain(o.ollana);
  const clock = new RunClock();
  const place = placement(o.pin);
  if (place.client !== null) pinProcess(process.pid, place.client);
  log(`two-hop bench: ${o.scenarios.join(', ')}; ${o.rounds} rounds; --workers ${o.workers}; ${place.text}`);
  log(`report: ${o.out}`);

  const problems: string[] = [];
  let cases: CaseResult[] = [];
  let tls: TlsTotals | null = null;
  let topology = '';
  let handshakes: HandshakeCosts | null = null;
  let ahead: Ahead | null = null;
  let logs: string[] = [];
  if (o.scenarios.includes('handshakes')) {
    log('handshakes: 200 sequential TLS connections on loopback, full and resumed');
    try {
      handshakes = await handshakeCosts();
    } catch (err) {
      problems.push((err as Error).message);
    }
  }
  // Only the loopback handshake measurement asked for: no LAN at all.
  if (o.scenarios.some((x) => x !== 'handshakes')) {
    try {
      const two = await TwoHopLan.start({
        workers: o.workers,
        clientCpus: place.client,
        serverCpus: place.server,
        tokens: STREAM_SETTINGS,
        nodeArgs: o.ci ? CI_NODE_ARGS : [],
        log,
      });
      current = two;
      topology =
        `Virtual LAN ${two.lan.subnet} (network namespaces joined by a bridge, veth links). Host lab-server ` +
        `(${two.h1.addr}): Ollama emulator on 0.0.0.0:11434 (first token at once, ${STREAM_SETTINGS.tokens} tokens ` +
        `${STREAM_SETTINGS.tokenIntervalMs} ms apart, write-stamped), ollana server node (TLS on :11435, --trust-lan). Host laptop ` +
        `(${two.h2.addr}): ollana client node on 127.0.0.1:11434 (found the server by UDP discovery, --trust-lan) and the load agent.`;
      log(`two-hop: LAN ${two.lan.subnet} up; client node found the server node`);
      ({ cases, ahead } = await measureAll(o, two, problems));
      const [client, server] = await Promise.all([two.agent.client(), two.serverSockets()]);
      tls = { client, server };
      logs = two.notableLogs();
    } catch (err) {
      problems.push(`run broke off: ${(err as Error).stack ?? String(err)}`);
      log(`two-hop: run broke off: ${(err as Error).message}`);
      logs = current?.notableLogs() ?? [];
    } finally {
      await current?.close();
      current = null;
      removeHomes();
      removeSocketDirs();
    }
  }

  const gate: GateCheck[] | null = o.ci ? evaluateTwoHopGate(cases, ahead, o.workers) : null;
  const report: TwoHopReport = {
    schema: 1,
    kind: 'two-hop',
    command: `node bench/two-hop/run.ts ${process.argv.slice(2).join(' ')}`.trim(),
    ...clock.finish(),
    ollana: { main: o.ollana, commit: o.ollana === MAIN ? gitCommit() : null },
    options: {
      ci: o.ci,
      rounds: o.rounds,
      duration: o.duration,
      warmup: o.warmup,
      workers: o.workers,
      concurrency: o.concurrency,
      rateCases: o.rateCases,
      streams: o.streams,
      scenarios: o.scenarios,
      pin: o.pin,
    },
    placement: place.text,
    topology,
    handshakes,
    ahead,
    cases,
    tls,
    gate,
    logs,
    problems,
  };
  const files = writeReport(o.out, { json: report, markdown: renderMarkdown(report) });
  log('');
  log(consoleTable(cases));
  if (tls !== null) {
    log(
      `TLS, whole run: ${tls.client.requests} requests through the client node, ${tls.client.tlsHandshakes} handshakes ` +
        `(${tls.client.tlsResumed} resumed); server port: ${tls.server.syns ?? '?'} SYNs, ${tls.server.established} connections open`,
    );
  }
  if (handshakes !== null) {
    const h = handshakes;
    const cpu = (c: HandshakeCost): string => `${c.clientCpuUsPer.toFixed(0)} + ${c.serverCpuUsPer.toFixed(0)} µs`;
    log(
      `one TLS handshake, client + server CPU: pinned connector full ${cpu(h.connector.full)}, resumed ${cpu(h.connector.resumed)}; ` +
        `PEM per connect full ${cpu(h.pemPerConnect.full)}, resumed ${cpu(h.pemPerConnect.resumed)}`,
    );
  }
  log(`two-hop: report written: ${files.join(', ')} (${report.wallSeconds.toFixed(0)} s)`);
  const failed = cases.flatMap((c) => c.samples).filter((s) => !s.ok).length;
  if (failed > 0) log(`two-hop: ${failed} measurement(s) had failures: see the report`);
  if (gate !== null) {
    log('');
    for (const g of gate) {
      log(
        `${g.pass ? 'pass' : 'FAIL'}  ${g.name}: measured ${g.measured === null ? 'nothing' : Number(g.measured.toFixed(4))}, ` +
          `threshold ${g.op} ${g.threshold} (${g.detail})`,
      );
    }
    const gateFailed = gate.filter((g) => !g.pass).length;
    if (gateFailed > 0)
      log(
        `bench:two-hop --ci: TLS handshakes are no longer paid per connection and resumed as they were; see ${files[0]}`,
      );
    log(`bench:two-hop --ci: ${gate.length - gateFailed} passed, ${gateFailed} failed`);
    if (gateFailed > 0) return 1;
  }
  return problems.length > 0 || failed > 0 ? 1 : 0;
}

runBench({
  name: 'bench/two-hop',
  script: 'bench/two-hop/run.ts',
  help: HELP,
  parse: (argv, env) => parseOptions(OPTIONS, argv, env, 'BENCH_TWO_HOP_'),
  cannotRun: () => {
    const skip = netnsSkipReason({ nft: false });
    return skip === undefined
      ? undefined
      : `${skip} (two hops need a client node that finds its server by UDP discovery, which only ` +
          'runs inside network namespaces)';
  },
  watchdogMs: (o) => (o.ci ? 3 : 8) * 60_000,
  // The namespaces (and every process in them) also go with netns.ts's own exit and signal hooks.
  stop: async () => {
    await current?.close();
  },
  cleanup: () => {
    removeHomes();
    removeSocketDirs();
  },
  run: main,
});
