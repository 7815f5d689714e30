/**
 * Runs the real `ollana` CLI as a child process (process.execPath + bin/ollana.mjs, which runs the build in dist/), reads its JSON log
 * lines, and waits for milestones in them. Every process started here is killed in teardown.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

export const MAIN = fileURLToPath(new URL('../../bin/ollana.mjs', import.meta.url));

export interface LogLine {
  readonly level: string;
  readonly msg: string;
  readonly [key: string]: unknown;
}

export interface OllanaProcess {
  readonly proc: ChildProcess;
  readonly home: string;
  readonly lines: LogLine[];
  readonly stderr: string[];
  /** Resolves with the first log line (past or future) that matches, or rejects after timeoutMs. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs?: number, what?: string): Promise<LogLine>;
  /** SIGTERM, then wait for exit (SIGKILL after the deadline); resolves with the exit code. */
  stop(deadlineMs?: number): Promise<number | null>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface Started extends OllanaProcess {
  readonly url: string;
  readonly port: number;
}

export function tempHome(prefix = 'ollana-test-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A port that was free a moment ago (ollana claims ports exclusively, so races show as OLN_PORT_IN_USE). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen({ host, port: 0 }, resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export function runOllana(
  args: readonly string[],
  opts: { env?: Record<string, string>; home?: string } = {},
): OllanaProcess {
  const home = opts.home ?? tempHome();
  const proc = spawn(process.execPath, [MAIN, ...args], {
    // Discovery off unless a test turns it on: outside a test's own network namespaces, a node must
    // send nothing to the machine's real network.
    env: { ...process.env, OLLANA_HOME: home, OLLANA_LOG: 'info', OLLANA_DISCOVERY: 'off', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: LogLine[] = [];
  const stderr: string[] = [];
  const waiters = new Set<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }>();
  createInterface({ input: proc.stdout! }).on('line', (text) => {
    let line: LogLine;
    try {
      line = JSON.parse(text) as LogLine;
    } catch {
      line = { level: 'raw', msg: text };
    }
    lines.push(line);
    for (const w of waiters)
      if (w.pred(line)) {
        waiters.delete(w);
        w.resolve(line);
      }
  });
  createInterface({ input: proc.stderr! }).on('line', (text) => stderr.push(text));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }));
  });

  const result: OllanaProcess = {
    proc,
    home,
    lines,
    stderr,
    exited,
    waitFor(pred, timeoutMs = 15_000, what = 'a matching log line') {
      const seen = lines.find(pred);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const entry = {
          pred,
          resolve: (l: LogLine) => {
            clearTimeout(timer);
            resolve(l);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(entry);
          reject(
            new Error(
              `ollana did not log ${what} within ${timeoutMs} ms; stdout:\n${lines.map((l) => JSON.stringify(l)).join('\n')}\nstderr:\n${stderr.join('\n')}`,
            ),
          );
        }, timeoutMs);
        waiters.add(entry);
        void exited.then(({ code, signal }) => {
          if (!waiters.has(entry)) return;
          waiters.delete(entry);
          clearTimeout(timer);
          reject(
            new Error(
              `ollana exited (${signal ?? code}) before logging ${what}; stdout:\n${lines.map((l) => JSON.stringify(l)).join('\n')}\nstderr:\n${stderr.join('\n')}`,
            ),
          );
        });
      });
    },
    async stop(deadlineMs = 10_000) {
      if (proc.exitCode !== null || proc.signalCode !== null) return proc.exitCode;
      proc.kill('SIGTERM');
      const timer = setTimeout(() => proc.kill('SIGKILL'), deadlineMs);
      const { code } = await exited;
      clearTimeout(timer);
      return code;
    },
  };
  return result;
}

/**
 * The emulator runs every request at once unless started with --num-parallel: a server node in front
 * of it is told so (--slots 1024) unless the test sets --slots itself (the fair-share tests do).
 */
export function withSlots(args: readonly string[]): readonly string[] {
  return args.includes('--slots') ? args : [...args, '--slots', '1024'];
}

/** Starts `ollana serve ...args` and waits until it logs that it listens. */
export async function startOllana(
  args: readonly string[],
  opts: { env?: Record<string, string>; home?: string } = {},
): Promise<Started> {
  const p = runOllana(['serve', ...withSlots(args)], opts);
  const line = await p.waitFor(
    (l) => typeof l.msg === 'string' && l.msg.includes('listening on'),
    20_000,
    'that it listens',
  );
  return Object.assign(p, { url: String(line.url), port: Number(line.port) });
}

export interface NodeOptions {
  /** --workers; left out: the default. */
  readonly workers?: number;
  /** A server node: serve the LAN over TLS instead of --insecure-http (plain HTTP on loopback). */
  readonly tls?: boolean;
  /** More flags, after the usual ones (a repeated flag's last value wins). */
  readonly args?: readonly string[];
  readonly env?: Record<string, string>;
  readonly home?: string;
}

function usual(mode: 'server' | 'client', o: NodeOptions): Promise<string[]> {
  return freePort().then((port) => [
    '--mode',
    mode,
    '--listen',
    `127.0.0.1:${port}`,
    ...(o.workers === undefined ? [] : ['--workers', String(o.workers)]),
  ]);
}

/**
 * Starts a server node on a free loopback port that forwards to the Ollama at `ollamaUrl`, with
 * discovery off (runOllana's environment) and, unless `tls`, plain HTTP (--insecure-http).
 */
export async function startServerNode(ollamaUrl: string, o: NodeOptions = {}): Promise<Started> {
  const args = [...(await usual('server', o)), '--ollama-url', ollamaUrl];
  if (o.tls !== true) args.push('--insecure-http');
  return startOllana([...args, ...(o.args ?? [])], { env: o.env, home: o.home });
}

/** Starts a client node on a free loopback port, with discovery off (runOllana's environment). */
export async function startClientNode(o: NodeOptions = {}): Promise<Started> {
  return startOllana([...(await usual('client', o)), ...(o.args ?? [])], { env: o.env, home: o.home });
}

/** Runs the CLI to completion (for commands that exit: stop, status, serve -d, bad flags). */
export async function runCli(
  args: readonly string[],
  opts: { env?: Record<string, string>; home?: string; timeoutMs?: number } = {},
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const home = opts.home ?? tempHome();
  const proc = spawn(process.execPath, [MAIN, ...args], {
    env: { ...process.env, OLLANA_HOME: home, OLLANA_DISCOVERY: 'off', ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  proc.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  proc.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => proc.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
  const code = await new Promise<number | null>((resolve) => proc.once('close', (c) => resolve(c)));
  clearTimeout(timer);
  return { code, stdout, stderr };
}

export function removeHome(home: string): void {
  rmSync(home, { recursive: true, force: true });
}
