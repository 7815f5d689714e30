/**
 * Virtual LAN harness for multi-host tests (issue #4): Linux network namespaces joined by a bridge.
 *
 * Topology of one {@link Lan} (tag = `<creator pid>x<random>`):
 *
 *   netns `oln<tag>b`  : bridge `br0` (STP off, IGMP snooping off, bridge-nf-call-* = 0), ports `vh1..vhN`
 *   netns `oln<tag>hN` : `lo` + `eth0` (veth peer of `vhN`), address `10.211.<c>.<N+1>/24`,
 *                        routes `224.0.0.0/4 dev eth0` and `255.255.255.255/32 dev eth0`, NO default route.
 *
 * The /24 exists only inside these namespaces and no namespace has a default route or a link to the
 * machine's own namespace, so nothing sent inside can reach a real network. Never send to a LAN address
 * from the test process itself: use {@link Host.spawn} / {@link Host.exec} (they run inside the host).
 *
 * Needs root, iproute2 (`ip`), util-linux (`unshare`), and `nft` for the nftables helpers.
 * Kernel notes (found on the dev box): `sch_netem` and the `dummy` link type are not available; `tbf` is.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { test, type TestFn, type TestOptions } from 'node:test';

/** Prefix of every namespace this harness creates (`oln<pid>x<rand>b`, `oln<pid>x<rand>h<N>`). */
export const NS_PREFIX = 'oln';

const NAME_RE = /^oln(\d+)x[0-9a-f]+(?:b|h\d+)$/;
const NFT_TABLE = 'inet oln';
const IP_TIMEOUT_MS = 10_000;

/** Which output stream a captured line came from. */
export type Stream = 'stdout' | 'stderr';

/** A process running inside a host namespace (see {@link Host.spawn}). */
export interface HostProcess {
  /** Pid of the command itself (`ip netns exec`, `unshare` and `sh` all exec into it). */
  readonly pid: number | undefined;
  /** Every line printed so far, stdout and stderr interleaved in arrival order. */
  readonly lines: readonly { readonly stream: Stream; readonly text: string }[];
  /**
   * Resolves with the first line at index >= `since` in {@link lines} (past or future) matching `pred`.
   * Rejects after `timeoutMs` (default 5000), or as soon as the process has exited without a match.
   * Pass `since: p.lines.length` to only consider lines printed from now on.
   */
  waitForLine(pred: (text: string, stream: Stream) => boolean, timeoutMs?: number, since?: number): Promise<string>;
  /** Sends a signal (default SIGTERM); false if the process already exited. */
  kill(signal?: NodeJS.Signals): boolean;
  /** SIGTERM, then SIGKILL after `deadlineMs` (default 3000); resolves once it has exited. */
  stop(deadlineMs?: number): Promise<ExitInfo>;
  /** Resolves once the process exited and its output was fully read. Never rejects. */
  readonly exited: Promise<ExitInfo>;
}

/** How a process ended. `error` is set when it could not be started at all. */
export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly error?: Error;
}

/** Result of {@link Host.exec}. */
export interface ExecResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Options for commands run inside a host. `env` is merged over process.env (a value of undefined
 * removes that variable; NODE_TEST_CONTEXT is always removed so child node processes are not test runners).
 */
export interface RunOptions {
  readonly env?: Record<string, string | undefined>;
  readonly cwd?: string;
}

/** One machine on the virtual LAN. */
export interface Host {
  /** 1-based position in {@link Lan.hosts}. */
  readonly index: number;
  /** Network namespace name (`oln<tag>h<index>`). */
  readonly name: string;
  /** Hostname seen by processes started with spawn/exec (own UTS namespace), e.g. `lab-h1`. */
  readonly hostname: string;
  /** IPv4 address of `eth0` (`<subnet>.<index+1>`). */
  readonly addr: string;
  /** Interface name inside the host namespace: always `eth0`. */
  readonly iface: string;
  /** Namespace holding the bridge. */
  readonly bridgeNs: string;
  /** Bridge-side veth end of this host (`vh<index>`, in {@link bridgeNs}); {@link cut} downs it. */
  readonly bridgePort: string;
  /**
   * Starts `cmd args...` inside this host: `ip netns exec <ns> unshare --uts -- sh -c
   * 'echo "$0" > /proc/sys/kernel/hostname && exec "$@"' <hostname> <cmd> <args...>`.
   * Output is captured line by line. The process is killed by {@link Lan.close}.
   */
  spawn(cmd: string, args: readonly string[], opts?: RunOptions): HostProcess;
  /**
   * Runs a one-shot command inside this host (same wrapper as spawn) and collects its output.
   * Rejects (after SIGKILL) if it runs longer than `timeoutMs` (default 10000). A non-zero exit
   * code does not reject: check `code`.
   */
  exec(cmd: string, args: readonly string[], timeoutMs?: number, opts?: RunOptions): Promise<ExecResult>;
}

/** A virtual LAN created by {@link createLan}. */
export interface Lan {
  /** Per-run tag, `<creator pid>x<random hex>`. */
  readonly tag: string;
  /** Namespace holding `br0`. */
  readonly bridgeNs: string;
  /** The LAN's subnet, e.g. `10.211.37.0/24`. */
  readonly subnet: string;
  /** Directed broadcast address of the subnet, e.g. `10.211.37.255`. */
  readonly broadcast: string;
  /** The hosts, `hosts[i].index === i + 1`. */
  readonly hosts: readonly Host[];
  /** Every namespace of this LAN (bridge first). */
  readonly namespaces: readonly string[];
  /**
   * Stops every process started through the hosts (SIGTERM, SIGKILL after `deadlineMs`, default 3000;
   * then SIGKILL anything else still inside the namespaces) and deletes all namespaces. Idempotent.
   */
  close(deadlineMs?: number): Promise<void>;
}

/** Options of {@link createLan}. */
export interface LanOptions {
  /** Number of hosts (1..200). */
  readonly hosts: number;
  /** Private /24, e.g. `10.211.7.0/24` (default: `10.211.<random>.0/24`). */
  readonly subnet?: string;
  /** Hostnames per host (default `lab-h<index>`); duplicates are allowed on purpose. */
  readonly hostnames?: readonly string[];
}

// ---------------------------------------------------------------------------------------------------
// command helpers

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(
  cmd: string,
  args: readonly string[],
  opts: { input?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? IP_TIMEOUT_MS);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.on('error', () => {
      /* EPIPE if the command exits early; its code says why */
    });
    child.stdin.end(opts.input ?? '');
  });
}

async function must(cmd: string, args: readonly string[], input?: string): Promise<string> {
  const r = await run(cmd, args, { input });
  if (r.code !== 0) {
    throw new Error(
      `\`${cmd} ${args.join(' ')}\` failed (${r.code}): ${r.stderr.trim()}${input ? `\ninput:\n${input}` : ''}`,
    );
  }
  return r.stdout;
}

/** `ip -n <ns> -batch -` with one command per line (stops at the first failing line). */
function ipBatch(ns: string, lines: readonly string[]): Promise<string> {
  return must('ip', ['-n', ns, '-batch', '-'], `${lines.join('\n')}\n`);
}

function nsExecSh(ns: string, script: string): Promise<string> {
  return must('ip', ['netns', 'exec', ns, 'sh', '-ec', script]);
}

function listNamespaces(): string[] {
  let out = '';
  try {
    out = execFileSync('ip', ['netns', 'list'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: IP_TIMEOUT_MS,
    });
  } catch {
    return [];
  }
  return out
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0] ?? '')
    .filter((n) => n !== '');
}

function pidsIn(ns: string): number[] {
  try {
    const out = execFileSync('ip', ['netns', 'pids', ns], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      timeout: IP_TIMEOUT_MS,
    });
    return out
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((p) => Number.isInteger(p) && p > 0 && p !== process.pid);
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killQuietly(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, signal);
  } catch {
    /* already gone */
  }
}

/** Synchronous teardown of namespaces: SIGKILL whatever runs inside, then `ip netns del`. */
function destroyNamespacesSync(names: readonly string[]): void {
  for (const ns of names) for (const pid of pidsIn(ns)) killQuietly(pid, 'SIGKILL');
  for (const ns of names) {
    try {
      execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore', timeout: IP_TIMEOUT_MS });
    } catch {
      /* not there (any more) */
    }
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------
// process-exit safety net

interface LiveLan {
  namespaces: readonly string[];
  procs: Set<ChildProcess>;
}
const live = new Set<LiveLan>();
let hooksInstalled = false;
const SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

function emergencyCleanup(): void {
  for (const l of live) {
    for (const p of l.procs) if (p.exitCode === null && p.signalCode === null) killQuietly(p.pid, 'SIGKILL');
    destroyNamespacesSync(l.namespaces);
  }
  live.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  emergencyCleanup();
  uninstallHooks();
  // Nobody else handles it: re-raise so the default action (terminate) happens.
  if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
}

function installHooks(): void {
  if (hooksInstalled) return;
  hooksInstalled = true;
  process.on('exit', emergencyCleanup);
  for (const s of SIGNALS) process.on(s, onSignal);
}

function uninstallHooks(): void {
  if (!hooksInstalled) return;
  hooksInstalled = false;
  process.off('exit', emergencyCleanup);
  for (const s of SIGNALS) process.off(s, onSignal);
}

// ---------------------------------------------------------------------------------------------------
// public API

/**
 * Deletes namespaces named `oln<pid>x...` whose creator pid is no longer alive (left by a crashed
 * earlier run), after SIGKILLing any process still inside them. Namespaces of live runs (including
 * this process) are untouched. Returns the names deleted. Called once automatically by createLan.
 */
export function cleanupStale(): string[] {
  const stale = listNamespaces().filter((n) => {
    const m = NAME_RE.exec(n);
    if (!m) return false;
    const pid = Number(m[1]);
    return pid !== process.pid && !alive(pid);
  });
  destroyNamespacesSync(stale);
  return stale;
}

/**
 * Why the harness cannot run here (not root, `ip`/`unshare`/`nft` missing), or undefined if it can.
 * Use as `test('...', { skip: netnsSkipReason() }, ...)`. `nft: false` skips the nft check. Under CI=true
 * it is always undefined: CI runs as root with the tools installed, so a missing piece must fail loudly.
 */
export function netnsSkipReason(opts: { nft?: boolean } = {}): string | undefined {
  // In CI (root, tools installed by .ci/run) these tests must run: never skip there, fail instead.
  if (process.env.CI === 'true') return undefined;
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  const tools = ['ip', 'unshare', ...(opts.nft === false ? [] : ['nft'])];
  for (const t of tools) {
    try {
      execFileSync(t, ['--version'], { stdio: 'ignore', timeout: 5000 });
    } catch {
      try {
        execFileSync(t, ['-V'], { stdio: 'ignore', timeout: 5000 });
      } catch {
        return `\`${t}\` is not installed`;
      }
    }
  }
  return undefined;
}

let skipReason: string | undefined | null = null;

/**
 * node:test's `test` for tests that need network namespaces: where they cannot run, each one is
 * reported skipped with the reason, so the runner's `skipped` count shows it. (A skipped `describe`
 * registers none of its tests: the summary would count them nowhere.)
 */
export function netnsTest(name: string, options: TestOptions | TestFn, fn?: TestFn): Promise<void> {
  const [opts, body] = typeof options === 'function' ? [{}, options] : [options, fn];
  if (skipReason === null) skipReason = netnsSkipReason();
  return test(name, skipReason === undefined ? opts : { ...opts, skip: skipReason }, body);
}

function parseSubnet(subnet: string): [number, number, number] {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\.0)?(?:\/24)?$/.exec(subnet);
  if (!m) throw new Error(`subnet must look like 10.211.7.0/24, got ${subnet}`);
  const [a, b, c] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const priv = a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168);
  if (!priv || b > 255 || c > 255) throw new Error(`subnet must be a private IPv4 /24, got ${subnet}`);
  return [a, b, c];
}

let staleCleaned = false;

/**
 * Creates the namespaces, bridge and veth links of a virtual LAN (see the file comment for the
 * topology) and returns once every link is up. On failure everything created so far is removed.
 * Always `close()` it (t.after / finally); a process 'exit'/SIGINT/SIGTERM/SIGHUP hook also removes it.
 */
export async function createLan(opts: LanOptions): Promise<Lan> {
  const n = opts.hosts;
  if (!Number.isInteger(n) || n < 1 || n > 200) throw new Error(`hosts must be 1..200, got ${n}`);
  if (!staleCleaned) {
    staleCleaned = true;
    cleanupStale();
  }
  const rand = randomBytes(4);
  const tag = `${process.pid}x${rand.toString('hex')}`;
  const [a, b, c] = opts.subnet !== undefined ? parseSubnet(opts.subnet) : [10, 211, 1 + (rand[0]! % 254)];
  const prefix = `${a}.${b}.${c}`;
  const bridgeNs = `${NS_PREFIX}${tag}b`;
  const hostNs = Array.from({ length: n }, (_, i) => `${NS_PREFIX}${tag}h${i + 1}`);
  const namespaces = [bridgeNs, ...hostNs];
  const state: LiveLan = { namespaces, procs: new Set() };
  live.add(state);
  installHooks();

  try {
    for (const ns of namespaces) await must('ip', ['netns', 'add', ns]);

    // Bridge namespace: a plain learning bridge that floods multicast (no IGMP snooping, so no querier
    // is needed) and never hands bridged frames to iptables (br_netfilter's bridge-nf-call-* are per netns).
    await nsExecSh(
      bridgeNs,
      [
        'for f in /proc/sys/net/bridge/bridge-nf-call-iptables /proc/sys/net/bridge/bridge-nf-call-ip6tables /proc/sys/net/bridge/bridge-nf-call-arptables; do',
        '  if [ -w "$f" ]; then echo 0 > "$f"; fi',
        'done',
      ].join('\n'),
    );
    await ipBatch(bridgeNs, [
      'link set lo up',
      'link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0',
      ...hostNs.flatMap((ns, i) => [
        `link add vh${i + 1} type veth peer name eth0 netns ${ns}`,
        `link set vh${i + 1} master br0`,
        `link set vh${i + 1} up`,
      ]),
      'link set br0 up',
    ]);

    await Promise.all(
      hostNs.map(async (ns, i) => {
        // Answer broadcast pings (diagnostics only; the namespace default is 1 = ignore).
        await nsExecSh(ns, 'echo 0 > /proc/sys/net/ipv4/icmp_echo_ignore_broadcasts');
        await ipBatch(ns, [
          'link set lo up',
          `addr add ${prefix}.${i + 2}/24 brd + dev eth0`,
          'link set eth0 up',
          // Without these, multicast / limited-broadcast sends fail with ENETUNREACH (there is no default route).
          'route add 224.0.0.0/4 dev eth0',
          'route add 255.255.255.255/32 dev eth0',
        ]);
      }),
    );
    await Promise.all(hostNs.map((ns, i) => waitLinkUp(bridgeNs, ns, `vh${i + 1}`)));
  } catch (err) {
    live.delete(state);
    if (live.size === 0) uninstallHooks();
    destroyNamespacesSync(namespaces);
    throw err;
  }

  let closing: Promise<void> | undefined;

  const hosts: Host[] = hostNs.map((ns, i) => {
    const hostname = opts.hostnames?.[i] ?? `lab-h${i + 1}`;
    const start = (cmd: string, args: readonly string[], o: RunOptions | undefined, stdin: 'ignore' | 'pipe') => {
      if (closing) throw new Error(`LAN ${tag} is closed`);
      const env: Record<string, string | undefined> = { ...process.env, ...o?.env };
      delete env.NODE_TEST_CONTEXT; // child node processes must not talk the test-runner protocol
      const child = spawn(
        'ip',
        [
          'netns',
          'exec',
          ns,
          'unshare',
          '--uts',
          '--',
          'sh',
          '-c',
          'echo "$0" > /proc/sys/kernel/hostname && exec "$@"',
          hostname,
          cmd,
          ...args,
        ],
        {
          env,
          cwd: o?.cwd,
          stdio: [stdin, 'pipe', 'pipe'],
        },
      );
      state.procs.add(child);
      child.once('close', () => state.procs.delete(child));
      return child;
    };
    return {
      index: i + 1,
      name: ns,
      hostname,
      addr: `${prefix}.${i + 2}`,
      iface: 'eth0',
      bridgeNs,
      bridgePort: `vh${i + 1}`,
      spawn: (cmd, args, o) => wrapProcess(start(cmd, args, o, 'ignore'), `${hostname}: ${cmd}`),
      exec: async (cmd, args, timeoutMs = 10_000, o) => {
        const p = wrapProcess(start(cmd, args, o, 'ignore'), `${hostname}: ${cmd}`);
        let timedOut = false;
        const timer = setTimeout(() => {
          timedOut = true;
          p.kill('SIGKILL');
        }, timeoutMs);
        const ex = await p.exited;
        clearTimeout(timer);
        const stdout = p.lines
          .filter((l) => l.stream === 'stdout')
          .map((l) => `${l.text}\n`)
          .join('');
        const stderr = p.lines
          .filter((l) => l.stream === 'stderr')
          .map((l) => `${l.text}\n`)
          .join('');
        if (ex.error) throw ex.error;
        if (timedOut)
          throw new Error(
            `${hostname}: \`${cmd} ${args.join(' ')}\` timed out after ${timeoutMs} ms\nstdout:\n${stdout}stderr:\n${stderr}`,
          );
        return { code: ex.code, stdout, stderr };
      },
    };
  });

  const close = (deadlineMs = 3000): Promise<void> => {
    closing ??= (async () => {
      const procs = [...state.procs];
      const done = procs.map(
        (p) =>
          new Promise<void>((r) => {
            if (p.exitCode !== null || p.signalCode !== null) r();
            else p.once('close', () => r());
          }),
      );
      for (const p of procs) killQuietly(p.pid, 'SIGTERM');
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all(done),
        new Promise<void>((r) => {
          timer = setTimeout(r, deadlineMs);
        }),
      ]);
      clearTimeout(timer);
      for (const p of procs) if (p.exitCode === null && p.signalCode === null) killQuietly(p.pid, 'SIGKILL');
      // Leftovers (children of the commands): everything in our namespaces is ours.
      for (let i = 0; i < 50; i++) {
        const rest = namespaces.flatMap(pidsIn);
        if (rest.length === 0) break;
        for (const pid of rest) killQuietly(pid, 'SIGKILL');
        await sleep(20);
      }
      live.delete(state);
      if (live.size === 0) uninstallHooks();
      destroyNamespacesSync(namespaces);
    })();
    return closing;
  };

  return { tag, bridgeNs, subnet: `${prefix}.0/24`, broadcast: `${prefix}.255`, hosts, namespaces, close };
}

/**
 * Runs `fn` with a fresh LAN and always closes it (with `closeDeadlineMs`, see {@link Lan.close}),
 * also when `fn` throws (the error is rethrown).
 */
export async function withLan<T>(opts: LanOptions, fn: (lan: Lan) => Promise<T>, closeDeadlineMs?: number): Promise<T> {
  const lan = await createLan(opts);
  try {
    return await fn(lan);
  } finally {
    await lan.close(closeDeadlineMs);
  }
}

function wrapProcess(child: ChildProcess, what: string): HostProcess {
  const lines: { stream: Stream; text: string }[] = [];
  const waiters = new Set<() => void>();
  let info: ExitInfo | undefined;
  let resolveExit!: (i: ExitInfo) => void;
  const exited = new Promise<ExitInfo>((r) => {
    resolveExit = r;
  });
  const finish = (i: ExitInfo) => {
    if (info) return;
    info = i;
    resolveExit(i);
    for (const w of [...waiters]) w();
  };
  for (const stream of ['stdout', 'stderr'] as const) {
    const rl = createInterface({ input: child[stream]!, crlfDelay: Infinity });
    rl.on('line', (text) => {
      lines.push({ stream, text });
      for (const w of [...waiters]) w();
    });
  }
  child.once('error', (error) => finish({ code: null, signal: null, error }));
  child.once('close', (code, signal) => finish({ code, signal }));

  const dump = () =>
    lines
      .slice(-40)
      .map((l) => `  [${l.stream}] ${l.text}`)
      .join('\n');
  const proc: HostProcess = {
    get pid() {
      return child.pid;
    },
    lines,
    exited,
    waitForLine(pred, timeoutMs = 5000, since = 0) {
      return new Promise((resolve, reject) => {
        let next = since;
        let timer: NodeJS.Timeout | undefined;
        const check = () => {
          for (; next < lines.length; next++) {
            const l = lines[next]!;
            if (pred(l.text, l.stream)) {
              waiters.delete(check);
              clearTimeout(timer);
              resolve(l.text);
              return;
            }
          }
          if (info) {
            waiters.delete(check);
            clearTimeout(timer);
            reject(
              new Error(
                `${what} exited (${info.signal ?? info.code}${info.error ? `, ${info.error.message}` : ''}) without printing the expected line; output:\n${dump()}`,
              ),
            );
          }
        };
        timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${what} did not print the expected line within ${timeoutMs} ms; output:\n${dump()}`));
        }, timeoutMs);
        waiters.add(check);
        check();
      });
    },
    kill(signal = 'SIGTERM') {
      if (info || child.exitCode !== null || child.signalCode !== null) return false;
      return child.kill(signal);
    },
    async stop(deadlineMs = 3000) {
      if (!proc.kill('SIGTERM')) return exited;
      const timer = setTimeout(() => proc.kill('SIGKILL'), deadlineMs);
      const i = await exited;
      clearTimeout(timer);
      return i;
    },
  };
  return proc;
}

async function waitLinkUp(bridgeNs: string, hostNs: string, port: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  for (let i = 0; i < 200 && Date.now() < deadline; i++) {
    const [br, host] = await Promise.all([
      run('bridge', ['-n', bridgeNs, '-j', 'link', 'show', 'dev', port]),
      run('ip', ['-n', hostNs, '-j', 'link', 'show', 'dev', 'eth0']),
    ]);
    const brState = br.code === 0 ? (JSON.parse(br.stdout || '[]') as { state?: string }[])[0]?.state : undefined;
    const hostUp =
      host.code === 0 &&
      (JSON.parse(host.stdout || '[]') as { flags?: string[] }[])[0]?.flags?.includes('LOWER_UP') === true;
    last = `bridge port ${port}: ${brState ?? br.stderr.trim()}, ${hostNs} eth0 LOWER_UP: ${hostUp}`;
    if (brState === 'forwarding' && hostUp) return;
    await sleep(20);
  }
  throw new Error(`link did not come up within ${timeoutMs} ms (${last})`);
}

/**
 * Pulls the host's cable: sets its bridge-side veth end down (in the bridge namespace), so frames to
 * and from the host are dropped; its own eth0 loses carrier but keeps its address and routes.
 */
export async function cut(host: Host): Promise<void> {
  await ipBatch(host.bridgeNs, [`link set ${host.bridgePort} down`]);
}

/** Plugs the cable back in ({@link cut} undone) and waits (bounded) until the bridge port forwards again. */
export async function heal(host: Host): Promise<void> {
  await ipBatch(host.bridgeNs, [`link set ${host.bridgePort} up`]);
  await waitLinkUp(host.bridgeNs, host.name, host.bridgePort);
}

/** Loads an nft script inside the host namespace after making sure table `inet oln` and its input/output chains exist. */
async function nft(host: Host, rules: readonly string[]): Promise<void> {
  await must(
    'ip',
    ['netns', 'exec', host.name, 'nft', '-f', '-'],
    `${[
      `add table ${NFT_TABLE}`,
      `add chain ${NFT_TABLE} input { type filter hook input priority 0; policy accept; }`,
      `add chain ${NFT_TABLE} output { type filter hook output priority 0; policy accept; }`,
      ...rules,
    ].join('\n')}\n`,
  );
}

/**
 * Inside the host: drops all UDP to 224.0.0.0/4, incoming and outgoing
 * (`nft add rule inet oln input|output ip daddr 224.0.0.0/4 meta l4proto udp drop`).
 */
export async function dropMulticast(host: Host): Promise<void> {
  await nft(
    host,
    ['input', 'output'].map((chain) => `add rule ${NFT_TABLE} ${chain} ip daddr 224.0.0.0/4 meta l4proto udp drop`),
  );
}

/**
 * Inside the host: drops `percent`% of UDP datagrams (to destination port `port`, or all UDP),
 * incoming and outgoing, at random (`nft add rule inet oln input udp dport 11436 numgen random mod 100 < 30 drop`;
 * 100 drops every one).
 * Stacks with earlier rules; use {@link clearRules} to reset.
 */
export async function dropRandomUdp(host: Host, percent: number, port?: number): Promise<void> {
  if (!Number.isInteger(percent) || percent < 0 || percent > 100)
    throw new Error(`percent must be an integer 0..100, got ${percent}`);
  if (port !== undefined && (!Number.isInteger(port) || port < 1 || port > 65535)) throw new Error(`bad port ${port}`);
  const match = port === undefined ? 'meta l4proto udp' : `udp dport ${port}`;
  // nft's numgen comparison takes 0..99: 100% is a plain drop rule.
  const random = percent === 100 ? '' : ` numgen random mod 100 < ${percent}`;
  await nft(
    host,
    ['input', 'output'].map((chain) => `add rule ${NFT_TABLE} ${chain} ${match}${random} drop`),
  );
}

/** Inside the host: removes every rule added by the nft helpers (deletes table `inet oln`). */
export async function clearRules(host: Host): Promise<void> {
  // add + delete in one transaction: works whether or not the table exists.
  await must(
    'ip',
    ['netns', 'exec', host.name, 'nft', '-f', '-'],
    `add table ${NFT_TABLE}\ndelete table ${NFT_TABLE}\n`,
  );
}
