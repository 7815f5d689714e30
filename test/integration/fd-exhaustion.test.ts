/**
 * Out of file descriptors (EMFILE): every socket, thread and file read takes one, and a flood of
 * connections can use them all. The node must say once what happened and what to do, neither crash
 * nor give up on a thread that cannot start meanwhile, and carry on when descriptors are free again.
 * The processes run under a low `ulimit -n`.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { test } from 'node:test';
import { startEmulator } from '../../testkit/ollama-emulator.ts';
import { keptAlive, parseResponses, tcp, type KeptAlive } from '../helpers/hostile-client.ts';
import { MAIN, freePort, removeHome, tempHome } from '../helpers/ollana-process.ts';

interface Line {
  readonly event?: string;
  readonly level?: string;
  readonly msg?: string;
  readonly [k: string]: unknown;
}

/** Runs `node <script> ...args` under `ulimit -n <limit>`; resolves with its JSON lines once it exits (killed after deadlineMs). */
function runLimited(
  limit: number,
  script: string,
  args: readonly string[],
  deadlineMs: number,
): Promise<{ code: number | null; lines: Line[]; stderr: string }> {
  const proc = spawn('bash', ['-c', `ulimit -n ${limit} && exec "$0" "$@"`, process.execPath, script, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Line[] = [];
  let stderr = '';
  createInterface({ input: proc.stdout }).on('line', (text) => {
    try {
      lines.push(JSON.parse(text) as Line);
    } catch {
      lines.push({ msg: text });
    }
  });
  proc.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const timer = setTimeout(() => proc.kill('SIGKILL'), deadlineMs);
  return new Promise((resolve) =>
    proc.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, lines, stderr });
    }),
  );
}

test('an actor thread that dies while the process is out of descriptors is restarted once they are free, without a crash loop', {
  timeout: 60_000,
}, async () => {
  const HOLD_MS = 8_000;
  const script = fileURLToPath(new URL('../fixtures/fd-exhaustion/actor-child.ts', import.meta.url));
  const { code, lines, stderr } = await runLimited(128, script, [String(HOLD_MS)], 45_000);
  const show = `${lines.map((l) => JSON.stringify(l)).join('\n')}\n${stderr}`;
  const at = (event: string): number => lines.findIndex((l) => l.event === event);
  assert.ok(
    at('exhausted') >= 0 && lines[at('exhausted')]!.code === 'EMFILE',
    `the child used up its descriptors: ${show}`,
  );
  assert.equal(at('fatal'), -1, `the thread was not given up on: ${show}`);
  assert.equal(code, 0, show);
  // While out of descriptors: one clear error, whatever the number of attempts (the other error line
  // is the thread's own death, before the first attempt).
  const during = lines.slice(at('exhausted'), at('freed'));
  const errors = during.filter((l) => l.level === 'error' && /file descriptors/.test(String(l.msg)));
  assert.equal(errors.length, 1, `one error line while out of descriptors: ${show}`);
  assert.equal(during.filter((l) => l.level === 'error').length, 2, `and no line per attempt: ${show}`);
  assert.match(
    String(errors[0]!.msg),
    /^the test actor cannot start: this process is out of file descriptors \(the limit is 128\); raise the open-file limit \(ulimit -n/,
  );
  assert.ok(
    lines.slice(0, at('exhausted')).some((l) => l.event === 'message'),
    `the thread ran before: ${show}`,
  );
  assert.ok(
    during.every((l) => l.event !== 'message'),
    `no run in between: ${show}`,
  );
  // Once they are free, it runs again and says so.
  const after = lines.slice(at('freed'));
  assert.ok(
    after.some((l) => l.event === 'message'),
    `the thread ran again: ${show}`,
  );
  assert.ok(
    after.some(
      (l) =>
        l.level === 'info' && /^the test actor runs again: file descriptors are available again$/.test(String(l.msg)),
    ),
    show,
  );
});

interface LimitedNode {
  readonly port: number;
  readonly url: string;
  readonly lines: Line[];
  exited(): boolean;
  waitFor(pred: (l: Line) => boolean, timeoutMs: number, what: string): Promise<Line>;
  stop(): Promise<void>;
}

/** `ollana serve ...args` under `ulimit -n <limit>`, resolved once it listens (the helper in ollana-process.ts cannot wrap the command). */
async function serveLimited(limit: number, args: readonly string[], env: Record<string, string>): Promise<LimitedNode> {
  const home = tempHome();
  const proc = spawn('bash', ['-c', `ulimit -n ${limit} && exec "$0" "$@"`, process.execPath, MAIN, 'serve', ...args], {
    env: { ...process.env, OLLANA_HOME: home, OLLANA_LOG: 'info', OLLANA_DISCOVERY: 'off', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Line[] = [];
  let stderr = '';
  const waiters = new Set<{ pred: (l: Line) => boolean; resolve: (l: Line) => void }>();
  createInterface({ input: proc.stdout }).on('line', (text) => {
    let line: Line;
    try {
      line = JSON.parse(text) as Line;
    } catch {
      line = { msg: text };
    }
    lines.push(line);
    for (const w of waiters)
      if (w.pred(line)) {
        waiters.delete(w);
        w.resolve(line);
      }
  });
  proc.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exit = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  const node: Omit<LimitedNode, 'port' | 'url'> = {
    lines,
    exited: () => proc.exitCode !== null || proc.signalCode !== null,
    waitFor(pred, timeoutMs, what) {
      const seen = lines.find(pred);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const entry = {
          pred,
          resolve: (l: Line) => {
            clearTimeout(timer);
            resolve(l);
          },
        };
        const timer = setTimeout(() => {
          waiters.delete(entry);
          reject(
            new Error(
              `ollana did not log ${what} within ${timeoutMs} ms:\n${lines.map((l) => JSON.stringify(l).slice(0, 400)).join('\n')}\n${stderr}`,
            ),
          );
        }, timeoutMs);
        waiters.add(entry);
      });
    },
    async stop() {
      if (!node.exited()) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
        await exit;
        clearTimeout(timer);
      }
      removeHome(home);
    },
  };
  try {
    const line = await node.waitFor(
      (l) => typeof l.msg === 'string' && l.msg.includes('listening on'),
      30_000,
      'that it listens',
    );
    return { ...node, port: Number(line.port), url: String(line.url) };
  } catch (err) {
    await node.stop();
    throw err;
  }
}

interface Flood {
  /** What each connection received (a response, or nothing). */
  readonly received: string[];
  stop(): void;
}

/** Opens connections asking for /api/tags, `batch` every 10 ms, until stopped (at most `max`); keeps them open. */
function floodUntilStopped(port: number, max: number, batch = 20): Flood {
  const sockets: Socket[] = [];
  const received: string[] = [];
  let running = true;
  void (async () => {
    while (running && sockets.length < max) {
      for (let i = 0; i < batch; i++) {
        const socket = connect(port, '127.0.0.1');
        const slot = received.push('') - 1;
        socket.on('error', () => undefined);
        socket.on('data', (c: Buffer) => {
          received[slot] += c.toString('latin1');
        });
        socket.write(`GET /api/tags?flood=${slot} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
        sockets.push(socket);
      }
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  })();
  return {
    received,
    stop() {
      running = false;
      for (const s of sockets) s.destroy();
    },
  };
}

test('a node out of descriptors answers 503 saying so, keeps its status, and gets a crashed worker back once they are free', {
  timeout: 150_000,
}, async (t) => {
  const emu = await startEmulator({ tokens: 2, tokenIntervalMs: 1, ttftMs: 1 });
  t.after(() => emu.close());
  const n = await serveLimited(
    64,
    [
      '--mode',
      'server',
      '--insecure-http',
      '--ollama-url',
      emu.url,
      '--listen',
      `127.0.0.1:${await freePort()}`,
      '--workers',
      '2',
    ],
    { OLLANA_DEBUG_HOOKS: '1' },
  );
  t.after(() => n.stop());
  const show = (): string => n.lines.map((l) => JSON.stringify(l).slice(0, 300)).join('\n');

  // Opened while descriptors are still free: for status requests, and one to crash a worker with.
  const spare: KeptAlive[] = [];
  for (let i = 0; i < 4; i++) {
    const c = await keptAlive(tcp(n.port));
    spare.push(c);
    assert.equal(await c.ask('/api/tags?spare=1'), 200);
  }
  t.after(() => {
    for (const c of spare) c.destroy();
  });
  const crash = spare.pop()!;

  const flood = floodUntilStopped(n.port, 20_000);
  try {
    // The headline, whatever fails first: connections the node cannot accept are closed unanswered.
    const headline = await n.waitFor(
      (l) => /^this process is out of file descriptors/.test(String(l.msg)),
      30_000,
      'the out-of-descriptors line',
    );
    assert.equal(headline.level, 'error');
    assert.match(
      String(headline.msg),
      /^this process is out of file descriptors \(the limit is 64\): new client connections are closed unanswered, .*; raise the open-file limit \(ulimit -n/,
    );
    const line = await n.waitFor((l) => l.refusal === 'out-of-files', 30_000, 'that it is out of file descriptors');
    assert.equal(line.level, 'error');
    assert.match(
      String(line.msg),
      /could not open a connection to Ollama at \S+: this process is out of file descriptors \(the limit is 64\); raise the open-file limit \(ulimit -n/,
    );

    // The status endpoint still answers (the supervisor's memory reading needs a descriptor too).
    const status = spare[0]!;
    status.write('GET /ollana/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    for (let i = 0; i < 100 && !/^\d{3} \{/.test(status.unasked); i++) await new Promise((r) => setTimeout(r, 100));
    assert.match(status.unasked, /^200 \{/, `status answered: ${status.unasked.slice(0, 300)}`);
    assert.equal(
      typeof (JSON.parse(status.unasked.slice(4)) as { memory: { rssBytes: unknown } }).memory.rssBytes,
      'number',
    );

    // A worker dies while the flood holds the descriptors: its replacement cannot start yet.
    crash.write('POST /ollana/v1/debug/crash HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n');
    await n.waitFor((l) => /proxy worker \d+ died/.test(String(l.msg)), 15_000, 'the worker death');
    await new Promise((resolve) => setTimeout(resolve, 8_000));
  } finally {
    flood.stop();
  }
  const answers = flood.received.flatMap((r) => parseResponses(Buffer.from(r, 'latin1')).responses);
  const refused = answers.filter((a) => a.status === 503);
  t.diagnostic(`flood: ${flood.received.length} connections, ${answers.length} answers, ${refused.length} of them 503`);
  assert.ok(refused.length > 0, 'some flood requests found no descriptor for the upstream connection');
  assert.ok(
    refused.every((a) =>
      /^\{"error":"ollana: this node is out of file descriptors and cannot reach Ollama at \S+ now; retry shortly/.test(
        a.body,
      ),
    ),
    refused[0]?.body,
  );
  assert.deepEqual(
    answers.filter((a) => a.status !== 200 && a.status !== 503).map((a) => `${a.status} ${a.body}`),
    [],
  );

  // Descriptors free again: the worker comes back, and the node serves as before.
  await n.waitFor((l) => /proxy worker \d+ restarted/.test(String(l.msg)), 30_000, 'the worker restart');
  await n.waitFor(
    (l) => l.level === 'info' && /^file descriptors are available again/.test(String(l.msg)),
    15_000,
    'that descriptors are free again',
  );
  const after = await keptAlive(tcp(n.port));
  t.after(() => after.destroy());
  assert.equal(await after.ask('/api/tags?after=1'), 200);
  assert.ok(!n.exited(), `the node is still running: ${show()}`);
  assert.ok(
    !n.lines.some((l) => /giving up|keeps failing|stopped answering/.test(String(l.msg))),
    `no thread given up on, Ollama not declared gone: ${show()}`,
  );
  // A few lines, not one per refused request or per attempt: the headline, each worker's first 503
  // and its summaries, each thread that could not start, and the lines saying it is over.
  const fdLines = n.lines.filter((l) => /file descriptors/.test(String(l.msg)));
  t.diagnostic(
    `lines about descriptors: ${fdLines.map((l) => `${l.level}: ${String(l.msg).slice(0, 90)}`).join(' | ')}`,
  );
  assert.ok(fdLines.filter((l) => l.level === 'error').length <= 10, `a few error lines about descriptors: ${show()}`);
  assert.ok(
    !n.lines.some((l) => l.msg === 'upstream failed before responding' && l.code === 'EMFILE'),
    `no line per request: ${show()}`,
  );
});
