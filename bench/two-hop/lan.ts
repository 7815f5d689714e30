/**
 * The two-hop topology on a virtual LAN of two hosts (testkit/netns.ts), like two machines:
 *
 *   h1 "lab server": Ollama emulator on 0.0.0.0:11434 (reachable across the LAN, for "direct") and an
 *                    ollana server node (TLS on 0.0.0.0:11435, --trust-lan) in front of it
 *   h2 "laptop":     an ollana client node on 127.0.0.1:11434 (finds h1 by UDP discovery) and the load
 *                    agent (./agent.ts), the application whose requests are measured
 *
 * Direct = h2 -> h1:11434 in plain HTTP over the virtual LAN; two hops = h2 -> 127.0.0.1:11434 ->
 * client node -> TLS -> server node -> emulator. Every process runs inside a host and Lan.close()
 * ends it; nothing here sends a packet from the bench process itself.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createLan, type Host, type HostProcess, type Lan } from '../../testkit/netns.ts';
import {
  NODE,
  levelOf,
  logLines,
  sleep,
  spawnPinned,
  startEmulator,
  startNode,
  tail,
  type OllanaNode,
} from '../cluster/harness.ts';
import type { EmulatorSettings as TokenSettings } from '../lib/emulator.ts';
import type { RateResult } from '../lib/load/rate.ts';
import type { ClientCounters, RateCommand, StreamsCommand, StreamsSummary } from './agent.ts';

const AGENT = fileURLToPath(new URL('./agent.ts', import.meta.url));
const EMULATOR_MAIN = fileURLToPath(new URL('../lib/emulator-main.ts', import.meta.url));
/** Server nodes' TLS port (the product default). */
export const SERVER_PORT = 11435;
/** nftables table of this bench inside h1 (netns.ts's helpers use `inet oln`). */
const NFT_TABLE = 'inet oln2hop';

const socketDirs = new Set<string>();

/** Removes the load agents' socket directories. Synchronous: usable from 'exit' and signal handlers. */
export function removeSocketDirs(): void {
  for (const d of socketDirs) rmSync(d, { recursive: true, force: true });
  socketDirs.clear();
}

/** The load agent, reached over its Unix socket. */
export class Agent {
  readonly #socket: string;

  constructor(socket: string) {
    this.#socket = socket;
  }

  #call<T>(method: 'GET' | 'POST', path: string, body: unknown, timeoutMs: number): Promise<T> {
    const payload = body === null ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise<T>((resolve, reject) => {
      const req = request(
        {
          socketPath: this.#socket,
          method,
          path,
          timeout: timeoutMs,
          headers:
            payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': payload.length },
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const j = JSON.parse(Buffer.concat(chunks).toString('utf8')) as T & { error?: string };
            if (res.statusCode === 200) resolve(j);
            else reject(new Error(`load agent ${path}: ${j.error ?? res.statusCode}`));
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`load agent ${path}: no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(payload);
    });
  }

  rate(c: RateCommand): Promise<RateResult> {
    return this.#call('POST', '/rate', c, (c.seconds + 30) * 1000);
  }

  streams(c: StreamsCommand): Promise<StreamsSummary> {
    return this.#call('POST', '/streams', c, c.timeoutMs + 10_000);
  }

  client(): Promise<ClientCounters> {
    return this.#call('GET', '/client', null, 10_000);
  }
}

export interface TwoHopSettings {
  readonly workers: number;
  /** taskset lists: h2's processes (client node, agent) and h1's (server node, emulator); null = unpinned */
  readonly clientCpus: string | null;
  readonly serverCpus: string | null;
  readonly tokens: TokenSettings;
  /** extra `ollana serve` flags for both nodes */
  readonly nodeArgs?: readonly string[];
  readonly log: (msg: string) => void;
}

/** What the server node's host sees of its TLS port. */
export interface ServerSockets {
  /** TCP connections established to the port right now (ss) */
  readonly established: number;
  /** connection attempts (SYNs) to the port since start (nftables counter), null without nft */
  readonly syns: number | null;
}

/** A running two-hop topology: {@link TwoHopLan.start} builds it, {@link TwoHopLan.close} removes every process and namespace. */
export class TwoHopLan {
  readonly lan: Lan;
  readonly h1: Host;
  readonly h2: Host;
  readonly emulator: HostProcess;
  readonly server: OllanaNode;
  readonly client: OllanaNode;
  readonly agentProc: HostProcess;
  readonly agent: Agent;
  readonly #nft: boolean;

  private constructor(parts: {
    lan: Lan;
    emulator: HostProcess;
    server: OllanaNode;
    client: OllanaNode;
    agentProc: HostProcess;
    socketDir: string;
    nft: boolean;
  }) {
    this.lan = parts.lan;
    this.h1 = parts.lan.hosts[0]!;
    this.h2 = parts.lan.hosts[1]!;
    this.emulator = parts.emulator;
    this.server = parts.server;
    this.client = parts.client;
    this.agentProc = parts.agentProc;
    this.agent = new Agent(join(parts.socketDir, 'agent.sock'));
    this.#nft = parts.nft;
  }

  /** Direct: the emulator at h1's LAN address, as seen from h2. */
  get directUrl(): string {
    return `http://${this.h1.addr}:11434`;
  }

  /** Two hops: the client node on h2's loopback. */
  readonly twoHopUrl = 'http://127.0.0.1:11434';

  /** Every process of the run (for /proc accounting of what is ours). */
  pids(): number[] {
    return [this.emulator.pid, this.server.proc.pid, this.client.proc.pid, this.agentProc.pid].filter(
      (p): p is number => p !== undefined,
    );
  }

  async serverSockets(): Promise<ServerSockets> {
    const ss = await this.h1.exec('ss', ['-Htn', 'state', 'established', `( sport = :${SERVER_PORT} )`]);
    const established = ss.stdout.split('\n').filter((l) => l.trim() !== '').length;
    let syns: number | null = null;
    if (this.#nft) {
      const r = await this.h1.exec('nft', ['-j', 'list', 'counter', ...NFT_TABLE.split(' '), 'conns']);
      const j = JSON.parse(r.stdout || '{}') as { nftables?: { counter?: { packets?: number } }[] };
      syns = j.nftables?.find((x) => x.counter !== undefined)?.counter?.packets ?? null;
    }
    return { established, syns };
  }

  /**
   * The nodes' log lines worth a reader's eye: warnings and errors, and the client's view of its
   * server coming and going (a server dropped for missed heartbeats cuts every stream through it).
   */
  notableLogs(): string[] {
    const out: string[] = [];
    for (const [who, node] of [
      ['server', this.server],
      ['client', this.client],
    ] as const) {
      for (const l of logLines(node.proc)) {
        if (levelOf(l) < 40 && !/ gone|found|left|refus|retry/i.test(l.msg)) continue;
        const err = l.err as { code?: string; message?: string } | undefined;
        const why = err === undefined ? '' : ` (${[err.code, err.message].filter(Boolean).join(': ').slice(0, 160)})`;
        out.push(`${new Date(l.time).toISOString()} ${who} node: ${l.msg}${why}`);
      }
    }
    return out.sort();
  }

  /**
   * Closes every connection at the server node's port from h1's kernel (`ss -K`, a reset to both
   * ends), so the client node's pool starts empty while both nodes stay warm. Resolves with how many
   * stay open (0 when the kernel supports socket destruction).
   */
  async dropServerConnections(): Promise<number> {
    await this.h1.exec('ss', ['-K', 'state', 'established', `( sport = :${SERVER_PORT} )`]);
    return (await this.serverSockets()).established;
  }

  static async start(s: TwoHopSettings): Promise<TwoHopLan> {
    const lan = await createLan({ hosts: 2, hostnames: ['lab-server', 'laptop'] });
    const socketDir = mkdtempSync(join(tmpdir(), 'ollana-two-hop-'));
    socketDirs.add(socketDir);
    try {
      const [h1, h2] = [lan.hosts[0]!, lan.hosts[1]!];
      const t = s.tokens;
      const emulator = await startEmulator(h1, {
        entry: EMULATOR_MAIN,
        cpus: s.serverCpus,
        args: [
          '--host',
          '0.0.0.0',
          '--ttft-ms',
          String(t.ttftMs),
          '--token-interval-ms',
          String(t.tokenIntervalMs),
          '--tokens',
          String(t.tokens),
          '--stamp-tokens',
        ],
      });
      const nft = await countSyns(h1);
      const [server, client] = await Promise.all([
        startNode(h1, '1000ms', undefined, {
          workers: s.workers,
          cpus: s.serverCpus,
          args: ['--mode', 'server', ...(s.nodeArgs ?? [])],
        }),
        startNode(h2, '1000ms', undefined, {
          workers: s.workers,
          cpus: s.clientCpus,
          args: ['--mode', 'client', ...(s.nodeArgs ?? [])],
        }),
      ]);
      const agentProc = spawnPinned(h2, NODE, [AGENT, '--socket', join(socketDir, 'agent.sock')], {
        cpus: s.clientCpus,
      });
      await agentProc.waitForLine((l) => l.startsWith('{"ready":true'), 20_000);
      const two = new TwoHopLan({ lan, emulator, server, client, agentProc, socketDir, nft });
      await two.#untilClientFindsServer();
      return two;
    } catch (err) {
      await lan.close(5_000);
      removeSocketDirs();
      throw err;
    }
  }

  async #untilClientFindsServer(): Promise<void> {
    const deadline = Date.now() + 30_000;
    let last = '';
    for (let i = 0; i < 300 && Date.now() < deadline; i++) {
      try {
        if ((await this.agent.client()).upstreams > 0) return;
        last = 'no server node in its route table yet';
      } catch (err) {
        last = (err as Error).message;
      }
      await sleep(100);
    }
    throw new Error(
      `the client node did not find the server node within 30 s (${last})\nclient:\n${tail(this.client.proc)}\nserver:\n${tail(this.server.proc)}`,
    );
  }

  async close(): Promise<void> {
    await this.lan.close(5_000);
    removeSocketDirs();
  }
}

/** Counts TCP SYNs to the server port inside h1 (new connections = TLS handshakes); false without nft. */
async function countSyns(h1: Host): Promise<boolean> {
  const rules = [
    `add table ${NFT_TABLE}`,
    `add counter ${NFT_TABLE} conns`,
    `add chain ${NFT_TABLE} input { type filter hook input priority 0; policy accept; }`,
    `add rule ${NFT_TABLE} input tcp dport ${SERVER_PORT} tcp flags & (syn | ack) == syn counter name conns`,
  ];
  try {
    const r = await h1.exec('sh', ['-c', `printf '%s\\n' "$@" | nft -f -`, 'sh', ...rules]);
    return r.code === 0;
  } catch {
    return false;
  }
}
