/**
 * The systems under test, behind one interface so the scenarios do not care what they measure:
 * direct (the emulator itself), one hop (an ollana server node), nginx, and
 * an optional second ollana (one-hop-b) for A/B tuning runs. Adding a system = adding a SystemDef.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { startChild, stopChild, waitForLine, waitUntil, type Child } from './children.ts';
import type { RunningEmulator } from './emulator.ts';
import { nginxConf } from './nginx-conf.ts';
import type { BenchOptions, SystemId } from './options.ts';
import { processTree } from './proc-stats.ts';
import type { ToolName, ToolState } from './tools.ts';

export interface SystemUnderTest {
  readonly id: SystemId;
  readonly label: string;
  /** Base URL clients talk to, no trailing slash. */
  readonly url: string;
  /** Processes whose CPU and memory are the system's own cost; empty for direct. */
  pids(): readonly number[];
  /** Stops it; resolves with a problem to report (a non-zero exit), or null. */
  stop(): Promise<string | null>;
}

export interface SystemContext {
  readonly options: BenchOptions;
  readonly emulator: RunningEmulator;
  readonly tools: ReadonlyMap<ToolName, ToolState>;
  /** taskset CPU list for systems under test, or null when not pinning. */
  readonly sutCpus: string | null;
  /** Scratch directory of this bench run. */
  readonly workDir: string;
  /** Where `node --cpu-prof` writes, or null. */
  readonly profileDir: string | null;
}

export interface SystemDef {
  readonly id: SystemId;
  readonly label: string;
  /** Why this system cannot run here, or null when it can. */
  unavailable(ctx: SystemContext): string | null;
  start(ctx: SystemContext, workers: number): Promise<SystemUnderTest>;
}

const READY_TIMEOUT_MS = 30_000;

/** A free loopback port (tiny race between close and reuse; fine on a bench machine). */
export async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', resolve);
  });
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

async function getJson(url: string): Promise<unknown> {
  const res = await fetch(url, { signal: AbortSignal.timeout(2_000) });
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return res.json();
}

const direct: SystemDef = {
  id: 'direct',
  label: 'direct (emulator)',
  unavailable: () => null,
  start: async (ctx) => ({
    id: 'direct',
    label: 'direct (emulator)',
    url: ctx.emulator.url,
    pids: () => [],
    stop: async () => null,
  }),
};

interface OllanaVariant {
  readonly root: string;
  readonly args: readonly string[];
  readonly nodeArgs: readonly string[];
}

function ollanaDef(id: 'one-hop' | 'one-hop-b', label: string, variant: (o: BenchOptions) => OllanaVariant): SystemDef {
  return {
    id,
    label,
    unavailable: (ctx) => {
      const o = ctx.options;
      return id === 'one-hop-b' &&
        o.ollanaBRoot === null &&
        o.ollanaBArgs.length === 0 &&
        o.ollanaBNodeArgs.length === 0
        ? 'give --ollana-b-root, --ollana-b-args or --ollana-b-node-args to define it'
        : null;
    },
    async start(ctx, workers) {
      const port = await freePort();
      const home = mkdtempSync(join(ctx.workDir, `${id}-home-`));
      const prof =
        ctx.profileDir === null ? [] : ['--cpu-prof', '--cpu-prof-dir', join(ctx.profileDir, `${id}-w${workers}`)];
      const v = variant(ctx.options);
      const child = startChild(
        id,
        process.execPath,
        [
          ...v.nodeArgs,
          ...prof,
          join(v.root, 'bin/ollana.mjs'),
          'serve',
          '--mode',
          'server',
          '--listen',
          `127.0.0.1:${port}`,
          '--ollama-url',
          ctx.emulator.url,
          '--workers',
          String(workers),
          '--log-level',
          ctx.options.ollanaLogLevel,
          ...noLanFlags(v.root),
          ...v.args,
        ],
        // OLLANA_HOME: pid file and identity in a scratch dir, so runs never collide with a real node.
        { cpus: ctx.sutCpus, env: { OLLANA_HOME: home, OLLANA_DISCOVERY: 'off' } },
      );
      const url = `http://127.0.0.1:${port}`;
      try {
        // Ready = every proxy worker listens. The status endpoint says so at any log level, where the
        // "listening" log line exists only at info and below.
        await waitUntil(
          child,
          async () => {
            const status = (await getJson(`${url}/ollana/v1/status`)) as { workers?: { live?: number } };
            return status.workers?.live === workers;
          },
          READY_TIMEOUT_MS,
          `${workers} live workers in /ollana/v1/status`,
        );
      } catch (err) {
        await stopChild(child, 2_000, 'SIGKILL');
        throw err;
      }
      return {
        id,
        label: `${label}, ${workers} worker${workers === 1 ? '' : 's'}`,
        url,
        // Every process of the node: a launcher that stayed as its parent would count too.
        pids: () => processTree(child.pid),
        stop: () => stopOllana(child),
      };
    },
  };
}

const discoveryFlag = new Map<string, readonly string[]>();

/**
 * Benchmark traffic stays on loopback: LAN discovery (UDP multicast/broadcast on the machine's
 * interfaces) is turned off where this checkout of ollana knows the flag; older ones have none.
 */
/** --slots for an emulator without a slot limit: more than any bench keeps in flight. */
export const UNLIMITED_SLOTS = 1024;

function noLanFlags(root: string): readonly string[] {
  let flags = discoveryFlag.get(root);
  if (flags === undefined) {
    const help = spawnSync(process.execPath, [join(root, 'bin/ollana.mjs'), 'serve', '--help'], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    flags = [
      ...(/--discovery <value>/.test(help.stdout ?? '') ? ['--discovery', 'off'] : []),
      // One hop is measured in plain HTTP against plain-HTTP nginx; TLS costs are the two-hop bench's.
      ...(/--insecure-http/.test(help.stdout ?? '') ? ['--insecure-http'] : []),
      // The emulator runs every request at once (no slot limit): tell the fair-share scheduler so, and
      // the bench measures its free-slot path (the fairness scenario sets slots of its own).
      ...(/--slots/.test(help.stdout ?? '') ? ['--slots', String(UNLIMITED_SLOTS)] : []),
    ];
    discoveryFlag.set(root, flags);
  }
  return flags;
}

async function stopOllana(child: Child): Promise<string | null> {
  // SIGTERM drains (nothing is in flight between measurements) and exits 0.
  const code = await stopChild(child, 20_000);
  return code === 0 ? null : `${child.name} exited with ${code} on SIGTERM\n${child.tail()}`;
}

const twoHop: SystemDef = {
  id: 'two-hop',
  label: 'two hops (client node, server node)',
  // A client node finds server nodes only by UDP discovery, which runs only inside network namespaces,
  // never here on the machine's loopback: two hops have their own bench.
  unavailable: () =>
    'measured by npm run bench:two-hop (a client node finds its server node by LAN discovery, so two hops run in network namespaces)',
  start: () => Promise.reject(new Error('two hops run in npm run bench:two-hop')),
};

const nginx: SystemDef = {
  id: 'nginx',
  label: 'nginx',
  unavailable: (ctx) => {
    const t = ctx.tools.get('nginx');
    return t?.path ? null : `nginx unavailable: ${t?.note ?? 'not checked'}`;
  },
  async start(ctx, workers) {
    const bin = ctx.tools.get('nginx')!.path!;
    const port = await freePort();
    const dir = mkdtempSync(join(ctx.workDir, 'nginx-'));
    for (const sub of ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, sub));
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, nginxConf({ dir, port, upstreamPort: ctx.emulator.port, workers }));
    const child = startChild('nginx', bin, ['-p', dir, '-c', conf, '-g', 'daemon off;'], { cpus: ctx.sutCpus });
    const url = `http://127.0.0.1:${port}`;
    const errorLog = (): string => {
      try {
        return readFileSync(join(dir, 'error.log'), 'utf8').slice(-2000);
      } catch {
        return '';
      }
    };
    try {
      await waitUntil(
        child,
        async () => {
          const res = await fetch(`${url}/api/version`, { signal: AbortSignal.timeout(2_000) });
          await res.arrayBuffer();
          // All workers up too: the master forks them right after binding.
          return res.ok && processTree(child.pid).length >= workers + 1;
        },
        READY_TIMEOUT_MS,
        'an answer through nginx',
      );
    } catch (err) {
      await stopChild(child, 2_000, 'SIGKILL');
      throw new Error(`${(err as Error).message}\nnginx error.log: ${errorLog()}`);
    }
    const version = ctx.tools.get('nginx')!.version;
    return {
      id: 'nginx',
      label: `nginx ${version ?? ''}, ${workers} worker${workers === 1 ? '' : 's'}`.replace('  ', ' '),
      url,
      pids: () => processTree(child.pid),
      async stop() {
        // SIGQUIT = graceful shutdown for nginx (SIGTERM is its fast one; either is fine when idle).
        const code = await stopChild(child, 10_000, 'SIGQUIT');
        return code === 0 ? null : `nginx exited with ${code}\n${errorLog()}`;
      },
    };
  },
};

/** A reference proxy of bench/lib run as a child: prints {"port":P} when all its workers listen. */
function referenceDef(id: 'naive' | 'raw', label: string, file: string): SystemDef {
  const entry = fileURLToPath(new URL(file, import.meta.url));
  return {
    id,
    label,
    unavailable: () => null,
    async start(ctx, workers) {
      const port = await freePort();
      const child = startChild(
        id,
        process.execPath,
        [entry, '--port', String(port), '--upstream', ctx.emulator.url, '--workers', String(workers)],
        { cpus: ctx.sutCpus },
      );
      await waitForLine(child, (l) => (l.startsWith('{"port"') ? true : undefined), READY_TIMEOUT_MS, 'ready line');
      return {
        id,
        label: `${label}, ${workers} worker${workers === 1 ? '' : 's'}`,
        url: `http://127.0.0.1:${port}`,
        pids: () => [child.pid],
        async stop() {
          const code = await stopChild(child, 10_000);
          return code === 0 ? null : `${id} proxy exited with ${code}\n${child.tail()}`;
        },
      };
    },
  };
}

export const SYSTEMS: ReadonlyMap<SystemId, SystemDef> = new Map<SystemId, SystemDef>([
  ['direct', direct],
  [
    'one-hop',
    ollanaDef('one-hop', 'ollana one hop', (o) => ({
      root: o.ollanaRoot,
      args: o.ollanaArgs,
      nodeArgs: o.ollanaNodeArgs,
    })),
  ],
  [
    'one-hop-b',
    ollanaDef('one-hop-b', 'ollana one hop (variant b)', (o) => ({
      root: o.ollanaBRoot ?? o.ollanaRoot,
      args: o.ollanaBArgs,
      nodeArgs: o.ollanaBNodeArgs,
    })),
  ],
  ['two-hop', twoHop],
  ['nginx', nginx],
  ['naive', referenceDef('naive', 'minimal node:http + undici proxy (reference)', './naive-proxy.ts')],
  ['raw', referenceDef('raw', 'byte relay on net sockets (reference)', './raw-proxy.ts')],
]);
