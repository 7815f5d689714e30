/**
 * A node's HTTP listener against hostile clients (issue 5, part 5): request smuggling and broken
 * framing, header and URL size limits, slow headers (slowloris) and connection floods. Real ollana
 * processes in front of the Ollama emulator; the attacks are raw bytes from
 * test/helpers/hostile-client.ts, and the emulator's request log shows what got through.
 */
import assert from 'node:assert/strict';
import { request as httpRequest, Agent } from 'node:http';
import { after, before, describe, test } from 'node:test';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { exchange, flood, openFileLimit, rssMiB, slowloris, tcp, type Exchange } from '../helpers/hostile-client.ts';
import { raw } from '../helpers/http.ts';
import { removeHome, type LogLine, type Started, startClientNode, startServerNode } from '../helpers/ollana-process.ts';

const BODY = '{"model":"llama3.2","prompt":"hi","stream":false}';
const HOST = 'Host: 127.0.0.1'; // the listeners are on loopback, which checks Host like Ollama does

let emu: Emulator;
const started: Started[] = [];

/** A server node (forwarding to the emulator) or a client node, two workers each, stopped in teardown. */
async function node(role: 'server' | 'client', args: readonly string[] = []): Promise<Started> {
  const n = await (role === 'server'
    ? startServerNode(emu.url, { workers: 2, args })
    : startClientNode({ workers: 2, args }));
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

let seq = 0;
/** A unique marker for one attack; delimited so that x1x is not found inside x12x. */
function mark(): string {
  seq += 1;
  return `x${seq}x`;
}

/** Requests the emulator saw that carry this attack's marker (its own URL or a smuggled one). */
function reached(m: string): string[] {
  return emu.requests
    .filter((r) => r.url.includes(`attack=${m}`) || r.url.includes(`smuggled=${m}`))
    .map((r) => `${r.method} ${r.url}`);
}

/** The refusals of `kind` a node accounted for in its log: lines logged at once plus the counts in summaries. */
function accounted(n: Started, kind: string): { lines: number; refusals: number } {
  const mine = n.lines.filter((l) => l.refusal === kind);
  return {
    lines: mine.length,
    refusals: mine.reduce((sum, l) => sum + (typeof l.count === 'number' ? l.count : 1), 0),
  };
}

function refusalLine(kind: string): (l: LogLine) => boolean {
  return (l) => l.refusal === kind;
}

function describeExchange(ex: Exchange): string {
  return JSON.stringify(ex.raw.toString('latin1').slice(0, 600));
}

/** One refused exchange: exactly one response with this status and a JSON error, then the server closed. */
function assertRefused(ex: Exchange, status: number, error: RegExp): void {
  assert.equal(ex.responses.length, 1, `one response, got ${describeExchange(ex)}`);
  const res = ex.responses[0]!;
  assert.equal(res.status, status, describeExchange(ex));
  assert.equal(res.headers.connection, 'close');
  assert.match((JSON.parse(res.body) as { error: string }).error, error);
  assert.equal(ex.rest, '', 'nothing after the answer');
  assert.ok(ex.closed, 'the server closed the connection');
}

const generate = (n: Started, query: string): Promise<{ status: number }> =>
  raw(`${n.url}/api/generate?${query}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: BODY,
  });

interface Vector {
  readonly name: string;
  /** The attack's bytes, sent in one write; `m` goes into its URL (and into any request it smuggles). */
  readonly bytes: (m: string) => string;
}

const post = (m: string): string =>
  `POST /api/generate?attack=${m} HTTP/1.1\r\n${HOST}\r\nContent-Type: application/json\r\n`;
const hex = (s: string): string => s.length.toString(16);
const smuggled = (m: string): string => `GET /api/tags?smuggled=${m} HTTP/1.1\r\n${HOST}\r\n\r\n`;

/** What Node 24's strict parser (llhttp) refuses, each as a request ollana would otherwise forward. */
const VECTORS: readonly Vector[] = [
  {
    name: 'Content-Length with Transfer-Encoding (CL.TE)',
    bytes: (m) =>
      `${post(m)}Content-Length: ${5 + smuggled(m).length}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n${smuggled(m)}`,
  },
  {
    name: 'Transfer-Encoding with Content-Length (TE.CL)',
    bytes: (m) =>
      `${post(m)}Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n${hex(BODY)}\r\n${BODY}\r\n0\r\n\r\n${smuggled(m)}`,
  },
  {
    name: 'two different Content-Lengths',
    bytes: (m) =>
      `${post(m)}Content-Length: ${BODY.length}\r\nContent-Length: ${BODY.length + smuggled(m).length}\r\n\r\n${BODY}${smuggled(m)}`,
  },
  {
    name: 'two equal Content-Lengths',
    bytes: (m) => `${post(m)}Content-Length: ${BODY.length}\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`,
  },
  {
    name: 'a Content-Length list',
    bytes: (m) => `${post(m)}Content-Length: ${BODY.length}, ${BODY.length}\r\n\r\n${BODY}`,
  },
  {
    name: 'Transfer-Encoding chunked twice',
    bytes: (m) =>
      `${post(m)}Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n${hex(BODY)}\r\n${BODY}\r\n0\r\n\r\n`,
  },
  {
    name: 'Transfer-Encoding not ending in chunked',
    bytes: (m) => `${post(m)}Transfer-Encoding: chunked, identity\r\n\r\n${BODY}`,
  },
  { name: 'Transfer-Encoding identity alone', bytes: (m) => `${post(m)}Transfer-Encoding: identity\r\n\r\n${BODY}` },
  {
    name: 'Transfer-Encoding with a space before the colon',
    bytes: (m) => `${post(m)}Transfer-Encoding : chunked\r\n\r\n${hex(BODY)}\r\n${BODY}\r\n0\r\n\r\n`,
  },
  {
    name: 'a chunk size that is not hex',
    bytes: (m) => `${post(m)}Transfer-Encoding: chunked\r\n\r\nzz\r\n${BODY}\r\n0\r\n\r\n`,
  },
  {
    name: 'chunk data without its CRLF (whole body already read)',
    bytes: (m) => `${post(m)}Transfer-Encoding: chunked\r\n\r\n${hex(BODY)}\r\n${BODY}X0\r\n\r\n${smuggled(m)}`,
  },
  {
    name: 'a chunk size line ending in a bare LF',
    bytes: (m) => `${post(m)}Transfer-Encoding: chunked\r\n\r\n${hex(BODY)}\n${BODY}\r\n0\r\n\r\n`,
  },
  {
    name: 'a chunk size that overflows',
    bytes: (m) => `${post(m)}Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff1\r\n${BODY}\r\n0\r\n\r\n`,
  },
  {
    name: 'a malformed trailer',
    bytes: (m) => `${post(m)}Transfer-Encoding: chunked\r\n\r\n${hex(BODY)}\r\n${BODY}\r\n0\r\nBad Trailer: x\r\n\r\n`,
  },
  {
    name: 'obs-fold (a header continued on the next line)',
    bytes: (m) => `${post(m)}Content-Length: ${BODY.length}\r\nX-Folded: a\r\n b\r\n\r\n${BODY}`,
  },
  {
    name: 'bare LF line ends',
    bytes: (m) => `POST /api/generate?attack=${m} HTTP/1.1\n${HOST}\nContent-Length: ${BODY.length}\n\n${BODY}`,
  },
  {
    name: 'a bare CR inside the header block',
    bytes: (m) => `${post(m)}Content-Length: ${BODY.length}\rX-A: b\r\n\r\n${BODY}`,
  },
  {
    name: 'a control byte in a header value',
    bytes: (m) => `${post(m)}X-A: a\x01b\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`,
  },
  {
    name: 'a NUL in a header value',
    bytes: (m) => `${post(m)}X-A: a\x00b\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`,
  },
  { name: 'a space inside a header name', bytes: (m) => `${post(m)}Content Length: ${BODY.length}\r\n\r\n${BODY}` },
  {
    name: 'an invalid method',
    bytes: (m) => `P@ST /api/generate?attack=${m} HTTP/1.1\r\n${HOST}\r\nContent-Length: ${BODY.length}\r\n\r\n${BODY}`,
  },
];

/** The ones a client node with no server must answer 400, not 503 (header and body framing). */
const CLIENT_VECTORS = new Set([
  'Content-Length with Transfer-Encoding (CL.TE)',
  'two different Content-Lengths',
  'Transfer-Encoding identity alone',
  'a chunk size that is not hex',
  'chunk data without its CRLF (whole body already read)',
  'obs-fold (a header continued on the next line)',
]);

describe('request smuggling and broken framing', () => {
  let server: Started;
  let client: Started;
  const sent = new Map<Started, number>();
  const count = (n: Started): void => {
    sent.set(n, (sent.get(n) ?? 0) + 1);
  };

  before(async () => {
    server = await node('server');
    client = await node('client');
  });

  test('control: the same request well formed reaches Ollama, so the checks below can fail', async () => {
    const m = mark();
    const ex = await exchange(tcp(server.port), [
      `${post(m)}Content-Length: ${BODY.length}\r\nConnection: close\r\n\r\n${BODY}`,
    ]);
    assert.equal(ex.responses[0]?.status, 200, describeExchange(ex));
    assert.deepEqual(reached(m), [`POST /api/generate?attack=${m}`]);
    const pipelined = await exchange(tcp(server.port), [
      `${post(m)}Content-Length: ${BODY.length}\r\n\r\n${BODY}` +
        `GET /api/tags?smuggled=${m} HTTP/1.1\r\n${HOST}\r\nConnection: close\r\n\r\n`,
    ]);
    assert.deepEqual(
      pipelined.responses.map((r) => r.status),
      [200, 200],
      'a pipelined second request is answered too',
    );
    assert.ok(reached(m).includes(`GET /api/tags?smuggled=${m}`));
  });

  for (const v of VECTORS) {
    test(`server node: ${v.name} gets 400, the connection closes, nothing reaches Ollama`, async () => {
      const m = mark();
      const ex = await exchange(tcp(server.port), [v.bytes(m)]);
      count(server);
      assertRefused(ex, 400, /^ollana: malformed HTTP request: \S/);
      // A normal request right after, on a fresh connection, goes through; by then anything the
      // attack had let through would have reached the emulator long before.
      assert.equal((await generate(server, `after=${m}`)).status, 200);
      assert.ok(emu.requests.some((r) => r.url.endsWith(`after=${m}`)));
      assert.deepEqual(reached(m), []);
    });
  }

  for (const v of VECTORS.filter((x) => CLIENT_VECTORS.has(x.name))) {
    test(`client node with no server: ${v.name} gets 400, not 503`, async () => {
      const m = mark();
      const ex = await exchange(tcp(client.port), [v.bytes(m)]);
      count(client);
      assertRefused(ex, 400, /^ollana: malformed HTTP request: \S/);
      const next = await generate(client, `after=${m}`);
      assert.equal(next.status, 503);
    });
  }

  test('split across reads: a head already forwarded is aborted at Ollama when its body turns out broken', async () => {
    const m = mark();
    const first = '{"model":"llama3.2",';
    const atOllama = new Promise<void>((resolve) => {
      const on = (rec: { url: string }): void => {
        if (rec.url.includes(`attack=${m}`)) {
          emu.events.off('request', on);
          resolve();
        }
      };
      emu.events.on('request', on);
    });
    const aborted = new Promise<void>((resolve) => {
      const on = (e: { url: string }): void => {
        if (e.url.includes(`attack=${m}`)) {
          emu.events.off('aborted', on);
          resolve();
        }
      };
      emu.events.on('aborted', on);
    });
    const answered: string[] = [];
    const onResponse = (e: { url: string; status: number }): void => {
      if (e.url.includes(`attack=${m}`)) answered.push(String(e.status));
    };
    emu.events.on('response', onResponse);
    try {
      const ex = await exchange(tcp(server.port), [
        `${post(m)}Transfer-Encoding: chunked\r\n\r\n${hex(first)}\r\n${first}\r\n`,
        () => atOllama, // the head and a first piece of the body went upstream, as a stream should
        `zz\r\n"prompt":"hi"}\r\n0\r\n\r\n${smuggled(m)}`,
      ]);
      count(server);
      assertRefused(ex, 400, /^ollana: malformed HTTP request: Invalid character in chunk size/);
      await aborted;
      assert.deepEqual(answered, [], 'Ollama never answered the broken request');
      assert.deepEqual(reached(m), [`POST /api/generate?attack=${m}`], 'the smuggled request never arrived');
    } finally {
      emu.events.off('response', onResponse);
    }
  });

  test('a response already under way is cut, never followed by a 400', async () => {
    // 403 for a foreign Host is sent once the request is read; the broken request behind it must
    // not add a second answer to the same connection.
    const m = mark();
    const ex = await exchange(tcp(server.port), [
      `GET /api/tags?attack=${m} HTTP/1.1\r\nHost: evil.example\r\n\r\n${post(m)}Transfer-Encoding: chunked\r\n\r\nzz\r\n`,
    ]);
    count(server);
    assert.equal(ex.responses.length, 1, describeExchange(ex));
    assert.equal(ex.responses[0]!.status, 403);
    assert.ok(ex.closed);
    assert.deepEqual(reached(m), []);
  });

  test('every refusal is accounted for in a few log lines: first ones at once, the rest summed up', async () => {
    for (const n of [server, client]) {
      const line = await n.waitFor(refusalLine('malformed'), 5_000, 'a malformed-request refusal');
      assert.equal(line.level, 'info');
      assert.match(
        line.msg,
        /^refused a malformed HTTP request from 127\.0\.0\.1: .+ \(HPE_[A-Z_]+\); answered 400 and closed the connection$/,
      );
      // Summaries come when each worker's 10 s window closes.
      const want = sent.get(n) ?? 0;
      const until = Date.now() + 15_000;
      while (accounted(n, 'malformed').refusals < want && Date.now() < until)
        await new Promise((r) => setTimeout(r, 200));
      const { lines, refusals } = accounted(n, 'malformed');
      assert.equal(
        refusals,
        want,
        `every refusal counted: ${JSON.stringify(n.lines.filter(refusalLine('malformed')))}`,
      );
      assert.ok(lines < want, `fewer lines (${lines}) than refusals (${want})`);
    }
  });
});

describe('header and URL size limits', () => {
  let server: Started;
  before(async () => {
    server = await node('server');
  });

  test('a 100 KiB header block gets 431, and the node serves on', async () => {
    const m = mark();
    const ex = await exchange(tcp(server.port), [
      `GET /api/tags?attack=${m} HTTP/1.1\r\n${HOST}\r\nX-Big: ${'b'.repeat(100 * 1024)}\r\n\r\n`,
    ]);
    assertRefused(ex, 431, /^ollana: request line and headers over 64 KiB/);
    const line = await server.waitFor(refusalLine('headers-too-large'), 5_000, 'the 431 refusal');
    assert.match(line.msg, /exceed 64 KiB; answered 431$/);
    assert.equal((await generate(server, `after=${m}`)).status, 200);
    assert.deepEqual(reached(m), []);
  });

  test('many small headers within 64 KiB pass; a 100 KiB URL counts into the same limit: 431', async () => {
    const fine = await raw(`${server.url}/api/tags`, {
      headers: Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`x-h${i}`, 'v'.repeat(100)])),
    });
    assert.equal(fine.status, 200);
    const m = mark();
    const ex = await exchange(tcp(server.port), [
      `GET /api/tags?attack=${m}&pad=${'u'.repeat(100 * 1024)} HTTP/1.1\r\n${HOST}\r\n\r\n`,
    ]);
    assertRefused(ex, 431, /^ollana: request line and headers over 64 KiB/);
    assert.deepEqual(reached(m), []);
  });

  test('URLs: 8192 bytes pass, 8193 get 414 with a JSON error, and the connection stays usable', async () => {
    const m = mark();
    const base = `/api/tags?attack=${m}&pad=`;
    const at = base + 'u'.repeat(8192 - base.length);
    const over = `${at}u`;
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const get = (path: string): Promise<{ status: number; body: string; reused: boolean }> =>
        new Promise((resolve, reject) => {
          const req = httpRequest(`${server.url}${path}`, { agent }, (res) => {
            let body = '';
            res.on('data', (c: Buffer) => {
              body += c.toString();
            });
            res.on('end', () => resolve({ status: res.statusCode ?? 0, body, reused: req.reusedSocket }));
          });
          req.on('error', reject);
          req.end();
        });
      const passed = await get(at);
      assert.equal(passed.status, 200);
      assert.equal(reached(m).length, 1, 'the 8192-byte URL reached Ollama');
      const refused = await get(over);
      assert.equal(refused.status, 414);
      assert.match(
        (JSON.parse(refused.body) as { error: string }).error,
        /^ollana: request URL of 8193 bytes is over the 8192-byte limit/,
      );
      assert.equal(reached(m).length, 1, 'the 8193-byte one did not');
      const again = await get('/api/tags');
      assert.equal(again.status, 200);
      assert.ok(again.reused, 'same connection after the 414');
      const line = await server.waitFor(refusalLine('bad-target'), 5_000, 'the 414 refusal');
      assert.match(line.msg, /with a 8193-byte URL \(limit 8192\); answered 414$/);
    } finally {
      agent.destroy();
    }
  });

  test('HTTP/0.9 (a request line without a version) and HTTP/2.0 in HTTP/1 syntax get 505 naming their version', async () => {
    const m = mark();
    for (const [line, version] of [
      [`GET /api/tags?attack=${m}\r\n\r\n`, 'HTTP/0.9'],
      [`GET /api/tags?attack=${m} HTTP/0.9\r\n\r\n`, 'HTTP/0.9'],
      [`GET /api/tags?attack=${m} HTTP/2.0\r\n${HOST}\r\n\r\n`, 'HTTP/2.0'],
    ] as const) {
      const ex = await exchange(tcp(server.port), [line]);
      assertRefused(ex, 505, new RegExp(`^ollana: ${version.replace('.', '\\.')} is not supported; send HTTP/1\\.1`));
    }
    const line = await server.waitFor(refusalLine('bad-version'), 5_000, 'the 505 refusal');
    assert.match(line.msg, /^refused an HTTP\/0\.9 request from 127\.0\.0\.1; answered 505$/);
    assert.deepEqual(reached(m), []);
  });

  test('targets that are not paths: OPTIONS * gets 400, CONNECT gets 405', async () => {
    const star = await exchange(tcp(server.port), [`OPTIONS * HTTP/1.1\r\n${HOST}\r\nConnection: close\r\n\r\n`]);
    assert.equal(star.responses[0]?.status, 400, describeExchange(star));
    assert.match(
      (JSON.parse(star.responses[0]!.body) as { error: string }).error,
      /^ollana: the request target "\*" is not a path; send a path such as \/api\/chat/,
    );
    const connect = await exchange(tcp(server.port), [
      `CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n`,
    ]);
    assertRefused(connect, 405, /^ollana: CONNECT is not supported/);
    await server.waitFor(refusalLine('connect-method'), 5_000, 'the CONNECT refusal');
    assert.ok(!emu.requests.some((r) => r.url === '*' || r.method === 'CONNECT'));
  });
});

describe('slow clients (slowloris)', () => {
  const TIMEOUT_MS = 2_000;
  let server: Started;
  before(async () => {
    server = await node('server', ['--request-headers-timeout', `${TIMEOUT_MS}ms`]);
  });

  test('300 connections trickling headers: others are served meanwhile, each slow one is closed after the timeout, memory stays bounded', async (t) => {
    const COUNT = 300;
    const SILENT = 50;
    const pid = server.proc.pid!;
    assert.equal((await raw(`${server.url}/api/tags`)).status, 200);
    const before = rssMiB(pid);
    const slow = await slowloris(tcp(server.port), COUNT, { everyMs: 200, silent: SILENT, maxPieces: 200 });
    let peak = before;
    let served = 0;
    let slowest = 0;
    try {
      // Other clients, one request after another, as long as the slow ones are open (bounded).
      const until = performance.now() + 20_000;
      while (slow.open() > 0 && performance.now() < until) {
        const t0 = performance.now();
        const res = served % 2 === 0 ? await raw(`${server.url}/api/tags`) : await generate(server, 'while=slowloris');
        slowest = Math.max(slowest, performance.now() - t0);
        assert.equal(res.status, 200);
        served += 1;
        peak = Math.max(peak, rssMiB(pid));
      }
      await slow.allClosed(15_000);
    } finally {
      slow.stop();
    }
    const lifetimes = slow.clients.map((c) => c.closedAt! - c.openedAt);
    const shortest = Math.min(...lifetimes);
    const longest = Math.max(...lifetimes);
    const report =
      `served ${served} (slowest ${slowest.toFixed(0)} ms); slow connections lived ${shortest.toFixed(0)}-${longest.toFixed(0)} ms; ` +
      `RSS ${before.toFixed(0)} -> peak ${peak.toFixed(0)} MiB`;
    t.diagnostic(`slowloris: ${report}`);
    assert.ok(served >= 3, `others were served meanwhile: ${report}`);
    assert.ok(slowest < 5_000, `sanity bound on their latency: ${report}`);
    assert.ok(shortest >= TIMEOUT_MS - 100, `none closed before the timeout: ${report}`);
    assert.ok(longest <= TIMEOUT_MS + 8_000, `all closed soon after it: ${report}`);
    assert.equal(
      slow.clients.filter((c) => c.received.startsWith('HTTP/1.1 408 ')).length,
      COUNT,
      'each got a 408 before the close',
    );
    assert.ok(peak - before < 150, `RSS bounded: ${report}`);
    const line = await server.waitFor(refusalLine('headers-timeout'), 5_000, 'a slow-headers refusal');
    assert.match(
      line.msg,
      /^closed a connection from 127\.0\.0\.1 that sent no complete request headers within 2 s; answered 408$/,
    );
    assert.ok(accounted(server, 'headers-timeout').lines <= 8, `a few lines for ${COUNT} refusals`);
  });

  test('the header timeout does not cut a slow answer, nor a keep-alive connection idle between requests', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    emu.set({ ttftMs: TIMEOUT_MS + 1_000 });
    try {
      const post = (): Promise<{ status: number; reused: boolean }> =>
        new Promise((resolve, reject) => {
          const req = httpRequest(
            `${server.url}/api/generate`,
            { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
            (res) => {
              res.resume();
              res.on('end', () => resolve({ status: res.statusCode ?? 0, reused: req.reusedSocket }));
            },
          );
          req.on('error', reject);
          req.end(BODY);
        });
      const t0 = performance.now();
      const slowAnswer = await post();
      assert.equal(slowAnswer.status, 200);
      assert.ok(performance.now() - t0 >= TIMEOUT_MS + 1_000, 'the answer really came after the header timeout');
      emu.set({ ttftMs: 1 });
      // Idle on a kept-alive connection for longer than the header timeout: that is keep-alive's business.
      await new Promise((resolve) => setTimeout(resolve, TIMEOUT_MS + 1_000));
      const next = await post();
      assert.equal(next.status, 200);
      assert.ok(next.reused, 'the idle connection was still open');
    } finally {
      emu.set({ ttftMs: 1 });
      agent.destroy();
    }
  });
});

describe('connection flood', () => {
  // Bounded by this machine's open-file limit: the test process holds one end of every connection.
  const COUNT = Math.min(3_000, openFileLimit() - 1_000);
  const LIMIT = Math.floor(COUNT / 3);
  let server: Started;
  before(async () => {
    assert.ok(COUNT >= 600, `the flood needs an open-file limit of at least 1600 (ulimit -n), have ${openFileLimit()}`);
    server = await node('server', ['--request-headers-timeout', '2s', '--max-connections', String(LIMIT)]);
  });

  test('thousands of connections, idle or asking: the node keeps serving, memory stays bounded, a few log lines', async (t) => {
    const pid = server.proc.pid!;
    assert.equal((await raw(`${server.url}/api/tags`)).status, 200);
    const before = rssMiB(pid);
    const t0 = performance.now();
    // Two in three ask for /api/tags and keep the connection open after the answer; the rest stay silent.
    const f = await flood(tcp(server.port), COUNT, (i) =>
      i % 3 === 2 ? null : `GET /api/tags?flood=${i} HTTP/1.1\r\n${HOST}\r\n\r\n`,
    );
    const openedIn = performance.now() - t0;
    let peak = rssMiB(pid);
    try {
      // While the flood holds its connections, new clients still get answers: at the limit the node
      // closes idle connections to make room. A refused connection is retried, a bounded number of times.
      for (let i = 0; i < 10; i++) {
        let status = 0;
        for (let attempt = 0; attempt < 20 && status !== 200; attempt++) {
          status = await raw(`${server.url}/api/tags`).then(
            (r) => r.status,
            () => 0,
          );
          if (status !== 200) await new Promise((resolve) => setTimeout(resolve, 250));
        }
        assert.equal(status, 200, `probe ${i} answered while the flood is on`);
        peak = Math.max(peak, rssMiB(pid));
      }
      const answered = f.connections.filter((c) => c.asked && c.status !== null);
      const timedOut = f.connections.filter((c) => !c.asked && c.status !== null);
      const refused = f.connections.filter((c) => c.refused);
      const report =
        `${COUNT} connections opened in ${openedIn.toFixed(0)} ms with --max-connections ${LIMIT}: ` +
        `${answered.length} requests answered, ${timedOut.length} silent ones timed out (408), ${refused.length} closed without a byte; ` +
        `RSS ${before.toFixed(0)} -> peak ${peak.toFixed(0)} MiB`;
      t.diagnostic(`flood: ${report}`);
      assert.ok(answered.length > 0, `some flood requests were answered: ${report}`);
      assert.deepEqual([...new Set(answered.map((c) => c.status))], [200], `every answer a 200: ${report}`);
      assert.ok(
        timedOut.every((c) => c.status === 408),
        `silent ones get a 408 or nothing: ${report}`,
      );
      assert.ok(refused.length > 0, `the connection limit acted: ${report}`);
      assert.ok(peak - before < 300, `RSS bounded: ${report}`);
      const line = await server.waitFor(refusalLine('connection-limit'), 5_000, 'the connection-limit warning');
      assert.equal(line.level, 'warn');
      assert.match(
        line.msg,
        new RegExp(
          `^connection limit reached: the node holds ${LIMIT} connections \\(--max-connections ${LIMIT}\\); ` +
            'refused one from 127\\.0\\.0\\.1 and closed the idle ones',
        ),
      );
      assert.ok(accounted(server, 'connection-limit').lines <= 8, `a few lines for ${refused.length} refusals`);
    } finally {
      f.stop();
    }
    assert.equal((await raw(`${server.url}/api/tags`)).status, 200, 'served after the flood');
    assert.ok(!server.lines.some((l) => /died|restarting/.test(l.msg)), 'no worker died');
  });
});
