/**
 * Which host a request is for (RFC 9112 §3.2): more than one Host header, or none on HTTP/1.1, is a
 * bad request, answered 400 with ollana's JSON error before anything reaches Ollama (Node's own
 * answer to a missing Host had no body and logged nothing); an absolute-form target (`GET http://host/api/tags`) is
 * accepted, and then its authority, not the Host header, is the host the request is for: the
 * loopback Host check (DNS rebinding) applies to it, and Ollama gets an ordinary path.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { exchange, tcp, type Exchange } from '../helpers/hostile-client.ts';
import { removeHome, type Started, startServerNode } from '../helpers/ollana-process.ts';

let emu: Emulator;
let server: Started;

before(async () => {
  emu = await startEmulator({ tokens: 2, tokenIntervalMs: 1, ttftMs: 1 });
  // A loopback listener, so the node checks Host the way Ollama does on a loopback bind.
  server = await startServerNode(emu.url, { workers: 2 });
});

after(async () => {
  await server?.stop();
  if (server) removeHome(server.home);
  await emu?.close();
});

let seq = 0;
function mark(): string {
  seq += 1;
  return `h${seq}h`;
}

/** What reached the emulator with this marker in its URL, as "METHOD url". */
function reached(m: string): string[] {
  return emu.requests.filter((r) => r.url.includes(`attack=${m}`)).map((r) => `${r.method} ${r.url}`);
}

function show(ex: Exchange): string {
  return JSON.stringify(ex.raw.toString('latin1').slice(0, 600));
}

function errorOf(ex: Exchange): string {
  return (JSON.parse(ex.responses[0]!.body) as { error: string }).error;
}

describe('duplicate Host headers', () => {
  const cases: ReadonlyArray<readonly [string, string]> = [
    ['the allowed one first', 'Host: 127.0.0.1\r\nHost: evil.example\r\n'],
    ['the foreign one first', 'Host: evil.example\r\nHost: 127.0.0.1\r\n'],
    ['the same value twice', 'Host: 127.0.0.1\r\nHost: 127.0.0.1\r\n'],
    ['names in different case', 'Host: 127.0.0.1\r\nhOST: 127.0.0.1\r\n'],
  ];
  for (const [name, hosts] of cases) {
    test(`${name}: 400 with a JSON error, the connection closes, nothing reaches Ollama`, async () => {
      const m = mark();
      const ex = await exchange(tcp(server.port), [`GET /api/tags?attack=${m} HTTP/1.1\r\n${hosts}\r\n`]);
      assert.equal(ex.responses.length, 1, show(ex));
      assert.equal(ex.responses[0]!.status, 400, show(ex));
      assert.equal(ex.responses[0]!.headers.connection, 'close');
      assert.match(errorOf(ex), /^ollana: the request has 2 Host headers; an HTTP request names exactly one host/);
      assert.ok(ex.closed, 'the server closed the connection');
      assert.deepEqual(reached(m), []);
    });
  }

  test('a Host value that is not a host[:port] gets 400 too', async () => {
    const m = mark();
    const ex = await exchange(tcp(server.port), [
      `GET /api/tags?attack=${m} HTTP/1.1\r\nHost: 127.0.0.1/x@evil\r\n\r\n`,
    ]);
    assert.equal(ex.responses[0]?.status, 400, show(ex));
    assert.match(errorOf(ex), /^ollana: the Host header "127\.0\.0\.1\/x@evil" is not a host name or address/);
    assert.deepEqual(reached(m), []);
  });

  test('each refusal is logged as one line saying what was wrong', async () => {
    const line = await server.waitFor((l) => l.refusal === 'bad-host', 5_000, 'a bad-host refusal');
    assert.equal(line.level, 'info');
    assert.match(
      line.msg,
      /^refused a request from 127\.0\.0\.1 with (2 Host headers|an invalid Host header); answered 400$/,
    );
  });
});

describe('no Host header', () => {
  test('HTTP/1.1 without Host: 400 with a JSON error saying what to send, the connection closes, nothing reaches Ollama', async () => {
    const m = mark();
    const ex = await exchange(tcp(server.port), [`GET /api/tags?attack=${m} HTTP/1.1\r\nAccept: */*\r\n\r\n`]);
    assert.equal(ex.responses.length, 1, show(ex));
    assert.equal(ex.responses[0]!.status, 400, show(ex));
    assert.equal(ex.responses[0]!.headers.connection, 'close');
    assert.match(ex.responses[0]!.headers['content-type'] ?? '', /^application\/json/);
    assert.match(errorOf(ex), /^ollana: the HTTP\/1\.1 request has no Host header; .*send Host: <host>:<port>/);
    assert.ok(ex.closed, 'the server closed the connection');
    assert.deepEqual(reached(m), []);
  });

  test('under /v1/ the error comes in the OpenAI shape', async () => {
    const m = mark();
    const ex = await exchange(tcp(server.port), [`GET /v1/models?attack=${m} HTTP/1.1\r\n\r\n`]);
    assert.equal(ex.responses[0]?.status, 400, show(ex));
    const body = JSON.parse(ex.responses[0]!.body) as { error: { message: string; type: string } };
    assert.equal(body.error.type, 'invalid_request_error');
    assert.match(body.error.message, /no Host header/);
    assert.deepEqual(reached(m), []);
  });

  test('HTTP/1.0 without Host is still served (Host is optional before HTTP/1.1)', async () => {
    const m = mark();
    const ex = await exchange(tcp(server.port), [`GET /api/tags?attack=${m} HTTP/1.0\r\n\r\n`]);
    assert.equal(ex.responses[0]?.status, 200, show(ex));
    assert.ok(Array.isArray((JSON.parse(ex.responses[0]!.body) as { models?: unknown }).models));
    assert.deepEqual(reached(m), [`GET /api/tags?attack=${m}`]);
  });

  test('the refusals are logged, one line per worker and window, saying what was missing', async () => {
    for (let i = 0; i < 3; i++) await exchange(tcp(server.port), [`GET /api/tags HTTP/1.1\r\n\r\n`]);
    const line = await server.waitFor((l) => l.refusal === 'missing-host', 5_000, 'a missing-host refusal');
    assert.equal(line.level, 'info');
    assert.match(line.msg, /^refused an HTTP\/1\.1 request from 127\.0\.0\.1 without a Host header; answered 400$/);
    // 2 workers, each logs its first refusal of a kind and then counts for 10 s.
    const lines = server.lines.filter((l) => l.refusal === 'missing-host' && l.count === undefined);
    assert.ok(lines.length >= 1 && lines.length <= 2, `${lines.length} lines for 4 or more refusals`);
  });
});

describe('absolute-form request targets', () => {
  test('accepted: Ollama gets the path, and the node answers as for the origin form', async () => {
    const m = mark();
    const ex = await exchange(tcp(server.port), [
      `GET http://127.0.0.1:${server.port}/api/tags?attack=${m} HTTP/1.1\r\nHost: 127.0.0.1:${server.port}\r\nConnection: close\r\n\r\n`,
    ]);
    assert.equal(ex.responses[0]?.status, 200, show(ex));
    assert.ok(Array.isArray((JSON.parse(ex.responses[0]!.body) as { models?: unknown }).models));
    assert.deepEqual(reached(m), [`GET /api/tags?attack=${m}`]);
  });

  test('the authority replaces the Host header: what Ollama is told about the host is the authority', async () => {
    const m = mark();
    const ex = await exchange(tcp(server.port), [
      `GET http://localhost:${server.port}/api/tags?attack=${m} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
    ]);
    assert.equal(ex.responses[0]?.status, 200, show(ex));
    const rec = emu.requests.find((r) => r.url.includes(`attack=${m}`));
    assert.ok(rec !== undefined, 'the request reached Ollama');
    assert.equal(rec.headers['x-forwarded-host'], `localhost:${server.port}`);
    assert.match(String(rec.headers.forwarded), new RegExp(`host="localhost:${server.port}"`));
  });

  test('a foreign authority on a loopback listener is refused like a foreign Host (403), whatever the Host header says', async () => {
    const m = mark();
    const ex = await exchange(tcp(server.port), [
      `GET http://evil.example/api/tags?attack=${m} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
    ]);
    assert.equal(ex.responses[0]?.status, 403, show(ex));
    assert.deepEqual(reached(m), []);
    // And the other way round: an allowed authority is not refused for a foreign Host header.
    const m2 = mark();
    const ok = await exchange(tcp(server.port), [
      `GET http://127.0.0.1/api/tags?attack=${m2} HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n`,
    ]);
    assert.equal(ok.responses[0]?.status, 200, show(ok));
    assert.deepEqual(reached(m2), [`GET /api/tags?attack=${m2}`]);
  });

  test("ollana's own paths answer in absolute form too, and are never forwarded", async () => {
    const ex = await exchange(tcp(server.port), [
      `GET http://127.0.0.1/ollana/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
    ]);
    assert.equal(ex.responses[0]?.status, 200, show(ex));
    assert.equal((JSON.parse(ex.responses[0]!.body) as { ok?: unknown }).ok, true);
    assert.ok(!emu.requests.some((r) => r.url.includes('/ollana/')), 'nothing under /ollana/ reached Ollama');
  });

  test('an empty authority or one with user info gets 400', async () => {
    for (const target of ['http:///api/tags', 'http://user:pw@127.0.0.1/api/tags']) {
      const m = mark();
      const ex = await exchange(tcp(server.port), [
        `GET ${target}?attack=${m} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n`,
      ]);
      assert.equal(ex.responses[0]?.status, 400, `${target}: ${show(ex)}`);
      assert.match(errorOf(ex), /^ollana: the request target .* has (an empty host|user info)/);
      assert.deepEqual(reached(m), []);
    }
  });
});
