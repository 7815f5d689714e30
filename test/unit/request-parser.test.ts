/**
 * The fast front's request parser (src/proxy/fast/request-parser.ts) drives Node's own llhttp binding
 * through `_http_common`, which Node does not document: these tests hold the binding to everything
 * the front relies on, so a Node upgrade that changes it fails here first.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  PARSED_ALL,
  PARSE_FAILED,
  RequestParser,
  type ParserEvents,
  type RequestHead,
} from '../../src/proxy/fast/request-parser.ts';

interface Log {
  events: string[];
  heads: RequestHead[];
  body: Buffer[];
}

/** A parser whose events are logged; `pause` decides, per head, whether to stop after it. */
function parser(
  pause: (head: RequestHead) => boolean = () => false,
  maxHeaderSize = 64 * 1024,
): { p: RequestParser; log: Log } {
  const log: Log = { events: [], heads: [], body: [] };
  const events: ParserEvents = {
    parserBegin: () => {
      log.events.push('begin');
    },
    parserHead: (head) => {
      log.events.push(`head ${head.method} ${head.url}`);
      log.heads.push(head);
      return pause(head);
    },
    parserBody: (chunk) => {
      log.events.push(`body ${chunk.length}`);
      log.body.push(Buffer.from(chunk));
    },
    parserComplete: () => {
      log.events.push('complete');
    },
  };
  return { p: RequestParser.take(maxHeaderSize, events), log };
}

const POST =
  'POST /api/generate HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello';
const GET = 'GET /api/tags HTTP/1.1\r\nhost: b\r\n\r\n';

test('a head gives method, URL, header lines as sent, version and keep-alive', () => {
  const { p, log } = parser();
  assert.equal(p.execute(Buffer.from(POST)), PARSED_ALL);
  assert.deepEqual(log.events, ['begin', 'head POST /api/generate', 'body 5', 'complete']);
  const h = log.heads[0]!;
  assert.deepEqual(h.headers, ['Host', 'a', 'Content-Type', 'application/json', 'Content-Length', '5']);
  assert.deepEqual([h.versionMajor, h.versionMinor, h.upgrade, h.keepAlive], [1, 1, false, true]);
  assert.equal(Buffer.concat(log.body).toString(), 'hello');
  p.release();
});

test('Connection: close and HTTP/1.0 are not keep-alive; HTTP/1.0 with keep-alive is', () => {
  const { p, log } = parser();
  p.execute(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n'));
  const { p: q, log: log2 } = parser();
  q.execute(Buffer.from('GET / HTTP/1.0\r\n\r\n'));
  const { p: r, log: log3 } = parser();
  r.execute(Buffer.from('GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n'));
  assert.deepEqual([log.heads[0]!.keepAlive, log2.heads[0]!.keepAlive, log3.heads[0]!.keepAlive], [false, false, true]);
  for (const x of [p, q, r]) x.release();
});

test('pausing at a head returns where it ended; the bytes after it are parsed on the next call', () => {
  const { p, log } = parser(() => true);
  const bytes = Buffer.from(POST + GET);
  const headEnd = POST.indexOf('\r\n\r\n') + 4;
  const at = p.execute(bytes);
  assert.equal(at, headEnd);
  assert.deepEqual(log.events, ['begin', 'head POST /api/generate']);
  const next = p.execute(bytes.subarray(at));
  assert.equal(next, POST.length - headEnd + GET.indexOf('\r\n\r\n') + 4, 'the body, then the next head');
  assert.deepEqual(log.events.slice(2), ['body 5', 'complete', 'begin', 'head GET /api/tags']);
  // A request without a body completes on the next call, even an empty one.
  assert.equal(p.execute(Buffer.alloc(0)), PARSED_ALL);
  assert.equal(log.events.at(-1), 'complete');
  p.release();
});

test('a head that spans reads comes whole: URL and header lines given in parts are joined', () => {
  const { p, log } = parser();
  const long = `GET /api/tags?${'q'.repeat(5000)} HTTP/1.1\r\nHost: a\r\n${Array.from({ length: 60 }, (_, i) => `X-H${i}: ${'v'.repeat(100)}\r\n`).join('')}\r\n`;
  for (let i = 0; i < long.length; i += 700) assert.equal(p.execute(Buffer.from(long.slice(i, i + 700))), PARSED_ALL);
  assert.equal(log.heads.length, 1);
  assert.equal(log.heads[0]!.url.length, '/api/tags?'.length + 5000);
  assert.equal(log.heads[0]!.headers.length, 2 * 61);
  assert.equal(log.heads[0]!.headers.at(-1), 'v'.repeat(100));
  p.release();
});

test("bad bytes fail with llhttp's code and reason, as node:http reports them", () => {
  const cases: Array<[string, string]> = [
    [
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      'HPE_INVALID_TRANSFER_ENCODING',
    ],
    [
      'POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd',
      'HPE_UNEXPECTED_CONTENT_LENGTH',
    ],
    ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n', 'HPE_INVALID_CHUNK_SIZE'],
    ['P@ST / HTTP/1.1\r\n\r\n', 'HPE_INVALID_METHOD'],
    ['GET / HTTP/1.1\r\nX-Folded: a\r\n b\r\n\r\n', 'HPE_INVALID_HEADER_TOKEN'],
  ];
  for (const [bytes, code] of cases) {
    const { p } = parser();
    assert.equal(p.execute(Buffer.from(bytes)), PARSE_FAILED, bytes);
    assert.equal(p.error?.code, code, `${JSON.stringify(bytes)}: ${p.error?.code} ${p.error?.reason}`);
    assert.ok(typeof p.error?.reason === 'string' && p.error.reason.length > 0);
    p.release();
  }
});

test("the header size limit is llhttp's: HPE_HEADER_OVERFLOW past it", () => {
  const { p } = parser(() => false, 1024);
  assert.equal(p.execute(Buffer.from(`GET / HTTP/1.1\r\nX-Big: ${'b'.repeat(2000)}\r\n\r\n`)), PARSE_FAILED);
  assert.equal(p.error?.code, 'HPE_HEADER_OVERFLOW');
  p.release();
});

test('CONNECT and Upgrade heads stop the parse after them and say so', () => {
  for (const bytes of [
    'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\nTLS...',
    'GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nframes',
  ]) {
    const { p, log } = parser(() => true);
    const at = p.execute(Buffer.from(bytes));
    assert.equal(at, bytes.indexOf('\r\n\r\n') + 4);
    assert.equal(log.heads[0]!.upgrade, true);
    p.release();
  }
});

test('a released parser serves the next connection from a clean state, also after an error', () => {
  const { p } = parser();
  assert.equal(p.execute(Buffer.from('GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n')), PARSE_FAILED);
  p.release();
  // The pool hands the same object back: it must parse as new.
  const { p: again, log } = parser();
  assert.equal(again, p, 'taken from the pool');
  assert.equal(again.error, null);
  assert.equal(again.execute(Buffer.from(GET)), PARSED_ALL);
  assert.deepEqual(log.events, ['begin', 'head GET /api/tags', 'complete']);
  again.release();
});

test('empty lines before a request are skipped without a begin', () => {
  const { p, log } = parser();
  assert.equal(p.execute(Buffer.from('\r\n\r\n')), PARSED_ALL);
  assert.deepEqual(log.events, []);
  p.execute(Buffer.from(GET));
  assert.deepEqual(log.events, ['begin', 'head GET /api/tags', 'complete']);
  p.release();
});
