/**
 * How long and how many client connections a node keeps: --max-connections counts every connection
 * of the node, whichever proxy worker the kernel gave it to, and at the limit the idle ones are closed
 * in every worker to make room; --keep-alive-timeout bounds how long one stays idle between requests.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { keptAlive, tcp, type KeptAlive } from '../helpers/hostile-client.ts';
import { removeHome, type Started, startServerNode } from '../helpers/ollana-process.ts';

let emu: Emulator;
const started: Started[] = [];

async function node(args: readonly string[], env: Record<string, string> = {}): Promise<Started> {
  const n = await startServerNode(emu.url, { args, env });
  started.push(n);
  return n;
}

before(async () => {
  emu = await startEmulator({ tokens: 2, tokenIntervalMs: 1, ttftMs: 1 });
});

after(async () => {
  for (const n of started) {
    await n.stop();
    removeHome(n.home);
  }
  await emu?.close();
});

/** Resolves once every connection is closed, or rejects after `ms` saying how many are still open. */
async function allClosed(conns: readonly KeptAlive[], ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () =>
        reject(
          new Error(
            `${conns.filter((c) => c.closedAt === null).length} of ${conns.length} connections still open after ${ms} ms`,
          ),
        ),
      ms,
    );
  });
  try {
    await Promise.race([Promise.all(conns.map((c) => c.closed)), late]);
  } finally {
    clearTimeout(timer);
  }
}

describe('--max-connections is per node', () => {
  const LIMIT = 40;
  let n: Started;
  before(async () => {
    // Four workers: with a per-worker share of 10, forty connections spread by the kernel would
    // almost surely put an eleventh on one of them.
    n = await node(['--workers', '4', '--max-connections', String(LIMIT)]);
  });

  test('the limit holds connections wherever the kernel puts them; past it, one is refused and the idle ones of every worker close', async () => {
    const conns: KeptAlive[] = [];
    try {
      for (let i = 0; i < LIMIT; i++) {
        const status = await keptAlive(tcp(n.port))
          .then((c) => {
            conns.push(c);
            return c.ask(`/api/tags?conn=${i}`);
          })
          .catch((err: Error) => `refused or closed: ${err.message}`);
        assert.equal(status, 200, `connection ${i + 1} of ${LIMIT} answered`);
      }
      // Each one still open and usable: none was refused or closed to make room below the limit.
      const again = await Promise.all(
        conns.map((c, i) => c.ask(`/api/tags?again=${i}`).catch((err: Error) => `connection ${i}: ${err.message}`)),
      );
      assert.deepEqual(
        again.filter((s) => s !== 200),
        [],
        `all ${LIMIT} connections served twice`,
      );

      const over = await keptAlive(tcp(n.port));
      await over.closed;
      assert.equal(over.unasked, '', 'the connection past the limit was closed without a byte');
      // The node makes room: every idle connection closes, in every worker, not only in the one that refused.
      await allClosed(conns, 10_000);
      const line = await n.waitFor((l) => l.refusal === 'connection-limit', 5_000, 'the connection-limit warning');
      assert.equal(line.level, 'warn');
      assert.match(
        line.msg,
        new RegExp(
          `^connection limit reached: the node holds ${LIMIT} connections \\(--max-connections ${LIMIT}\\); ` +
            'refused one from 127\\.0\\.0\\.1 and closed the idle ones to make room',
        ),
      );

      const next = await keptAlive(tcp(n.port));
      conns.push(next);
      assert.equal(await next.ask('/api/tags?after=1'), 200, 'served once room was made');
    } finally {
      for (const c of conns) c.destroy();
    }
  });
});

describe("a dead worker's connections", () => {
  const LIMIT = 12;
  let n: Started;
  before(async () => {
    n = await node(['--workers', '2', '--max-connections', String(LIMIT)], { OLLANA_DEBUG_HOOKS: '1' });
  });

  test('closed with its thread, they no longer count against the limit', async () => {
    const conns: KeptAlive[] = [];
    try {
      for (let i = 0; i < LIMIT - 1; i++) {
        const c = await keptAlive(tcp(n.port));
        conns.push(c);
        assert.equal(await c.ask(`/api/tags?held=${i}`), 200);
      }
      // The last place: a crash request, which kills whichever worker it lands on with its connections.
      const crash = await keptAlive(tcp(n.port));
      conns.push(crash);
      crash.write('POST /ollana/v1/debug/crash HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\n\r\n');
      await crash.closed;
      await n.waitFor((l) => /proxy worker \d+ restarted/.test(l.msg), 15_000, 'the worker restart');
      const survivors = conns.filter((c) => c.closedAt === null).length;
      // Room again for as many as died with the worker: all accepted and served, none refused.
      for (let i = survivors; i < LIMIT - 1; i++) {
        const c = await keptAlive(tcp(n.port));
        conns.push(c);
        assert.equal(await c.ask(`/api/tags?fresh=${i}`), 200, `fresh connection ${i} served`);
      }
      // The last place: the status request, which sees the node full and nothing of the dead worker.
      const status = await keptAlive(tcp(n.port));
      conns.push(status);
      status.write('GET /ollana/v1/status HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
      await status.closed;
      const report = JSON.parse(status.unasked.slice(status.unasked.indexOf('{'))) as {
        connections: { open: number; max: number };
      };
      assert.deepEqual(report.connections, { open: LIMIT, max: LIMIT });
    } finally {
      for (const c of conns) c.destroy();
    }
  });
});

describe('idle keep-alive connections', () => {
  const KEEP_ALIVE_MS = 1_000;
  const HEADERS_MS = 1_000;
  let n: Started;
  before(async () => {
    n = await node([
      '--workers',
      '2',
      '--keep-alive-timeout',
      `${KEEP_ALIVE_MS}ms`,
      '--request-headers-timeout',
      `${HEADERS_MS}ms`,
    ]);
  });

  test('one that sends nothing after its answer is closed once --keep-alive-timeout has passed, not before', async () => {
    const c = await keptAlive(tcp(n.port));
    try {
      assert.equal(await c.ask('/api/tags?idle=1'), 200);
      const answeredAt = performance.now();
      await Promise.race([
        c.closed,
        new Promise((_, reject) => setTimeout(() => reject(new Error('still open after 15 s')), 15_000)),
      ]);
      assert.ok(
        c.closedAt! - answeredAt >= KEEP_ALIVE_MS - 100,
        `closed ${(c.closedAt! - answeredAt).toFixed(0)} ms after the answer`,
      );
    } finally {
      c.destroy();
    }
  });

  test('one that sends only empty lines (CRLF) between requests is closed too, with a 408 and one log line', async () => {
    const c = await keptAlive(tcp(n.port));
    let timer: NodeJS.Timeout | undefined;
    try {
      assert.equal(await c.ask('/api/tags?trickle=1'), 200);
      const answeredAt = performance.now();
      // Node's parser skips empty lines between requests, but each one is traffic that resets the
      // socket's idle timer. Bounded: 15 s of them at most.
      let sent = 0;
      timer = setInterval(() => {
        if (sent++ < 75) c.write('\r\n');
      }, 200);
      await Promise.race([
        c.closed,
        new Promise((_, reject) =>
          setTimeout(() => reject(new Error(`still open after ${sent} empty lines (15 s)`)), 15_000),
        ),
      ]);
      assert.ok(c.closedAt! - answeredAt >= KEEP_ALIVE_MS - 100, 'not closed before the keep-alive timeout');
      assert.match(
        c.unasked,
        /^408 \{"error":"ollana: no request within \d+(\.\d+)? s on an idle connection that sent only empty lines/,
      );
      const line = await n.waitFor((l) => l.refusal === 'idle-trickle', 5_000, 'the idle-trickle refusal');
      assert.equal(line.level, 'info');
      assert.match(
        line.msg,
        /^closed a connection from 127\.0\.0\.1 that sent only empty lines after its last request for \d+(\.\d+)? s \(--keep-alive-timeout 1 s\); answered 408$/,
      );
    } finally {
      clearInterval(timer);
      c.destroy();
    }
  });

  test('a client that sends one stray CRLF and then a request, within the timeout, is served on the same connection', async () => {
    const c = await keptAlive(tcp(n.port));
    try {
      assert.equal(await c.ask('/api/tags?stray=1'), 200);
      await new Promise((resolve) => setTimeout(resolve, KEEP_ALIVE_MS / 4));
      c.write('\r\n');
      await new Promise((resolve) => setTimeout(resolve, KEEP_ALIVE_MS / 4));
      assert.equal(await c.ask('/api/tags?stray=2'), 200);
      assert.equal(c.closedAt, null);
    } finally {
      c.destroy();
    }
  });

  test('a response that takes longer than both timeouts is not cut, and the connection is reused after it', async () => {
    const c = await keptAlive(tcp(n.port));
    emu.set({ ttftMs: KEEP_ALIVE_MS + HEADERS_MS + 2_000 });
    try {
      assert.equal(await c.ask('/api/tags?first=1'), 200);
      const t0 = performance.now();
      const slow = await new Promise<number>((resolve, reject) => {
        // /api/generate waits ttftMs before answering; sent raw on the same connection.
        const body = '{"model":"llama3.2","prompt":"hi","stream":false}';
        c.write(
          `POST /api/generate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
        );
        const poll = setInterval(() => {
          const m = /^(\d{3}) /.exec(c.unasked);
          if (m !== null) {
            clearInterval(poll);
            resolve(Number(m[1]));
          }
          if (c.closedAt !== null) {
            clearInterval(poll);
            reject(new Error(`closed during the slow answer after ${(performance.now() - t0).toFixed(0)} ms`));
          }
        }, 50);
      });
      assert.equal(slow, 200);
      assert.ok(performance.now() - t0 >= KEEP_ALIVE_MS + HEADERS_MS + 2_000 - 100, 'the answer really was slow');
      assert.equal(await c.ask('/api/tags?after=1'), 200, 'the same connection serves the next request');
    } finally {
      emu.set({ ttftMs: 1 });
      c.destroy();
    }
  });
});
