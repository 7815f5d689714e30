/**
 * The relay's response framing (src/proxy/relay/framing.ts): the head parser and the body-end scanner
 * must agree with a strict client parser on every byte, however the bytes are split into reads, and
 * refuse what they do not fully understand.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { BodyEnd, FramingError, MAX_HEAD_BYTES, parseResponseHead } from '../../src/proxy/relay/framing.ts';

const head = (text: string, method = 'GET') => parseResponseHead(Buffer.from(text, 'latin1'), method);

/** Feeds `bytes` split at `cuts` and returns where the body ended, counted over the whole input. */
function endOf(scanner: BodyEnd, bytes: Buffer, cuts: number[]): number {
  let offset = 0;
  for (const piece of [...cuts, bytes.length].map((to, i, all) => bytes.subarray(i === 0 ? 0 : all[i - 1], to))) {
    const at = scanner.feed(piece, 0);
    if (at >= 0) return offset + at;
    offset += piece.length;
  }
  return -1;
}

test('a response head gives status, headers as sent, framing and keep-alive', () => {
  const h = head(
    'HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nDate: x\r\nTransfer-Encoding: chunked\r\n\r\n{"a"',
  );
  assert.ok(h !== null);
  assert.equal(h.status, 200);
  assert.deepEqual(h.raw, ['Content-Type', 'application/x-ndjson', 'Date', 'x', 'Transfer-Encoding', 'chunked']);
  assert.equal(h.framing, 'chunked');
  assert.equal(h.keepAlive, true);
  assert.equal(
    h.end,
    'HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\nDate: x\r\nTransfer-Encoding: chunked\r\n\r\n'.length,
  );

  const cl = head('HTTP/1.1 404 Not Found\r\ncontent-length: 5\r\nconnection: close\r\n\r\n');
  assert.deepEqual([cl?.status, cl?.framing, cl?.length, cl?.keepAlive], [404, 'length', 5, false]);
  assert.equal(head('HTTP/1.1 200 OK\r\ncontent-length: 7\r\n\r\n', 'HEAD')?.framing, 'none');
  assert.equal(head('HTTP/1.1 204 No Content\r\n\r\n')?.framing, 'none');
  assert.equal(head('HTTP/1.1 304 Not Modified\r\ncontent-length: 9\r\n\r\n')?.framing, 'none');
  assert.equal(head('HTTP/1.1 100 Continue\r\n\r\n')?.framing, 'none');
  // No length at all: the body runs to the connection's end, which is then not reused.
  const close = head('HTTP/1.1 200 OK\r\n\r\n');
  assert.deepEqual([close?.framing, close?.keepAlive], ['close', false]);
  assert.equal(head('HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\n')?.keepAlive, false);
  assert.equal(head('HTTP/1.0 200 OK\r\ncontent-length: 1\r\nConnection: Keep-Alive\r\n\r\n')?.keepAlive, true);
  // The upstream's idle time for kept connections, as Node servers announce it.
  assert.equal(head('HTTP/1.1 200 OK\r\ncontent-length: 0\r\nKeep-Alive: timeout=5\r\n\r\n')?.idleMs, 5000);
  assert.equal(head('HTTP/1.1 200 OK\r\ncontent-length: 0\r\nkeep-alive: max=100, timeout=30\r\n\r\n')?.idleMs, 30000);
  assert.equal(cl?.idleMs, null);
  // Equal repeated lengths are one length (RFC 9110 §8.6).
  assert.equal(head('HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\ncontent-length: 3\r\n\r\n')?.length, 3);
});

test('an incomplete head waits; an oversized one is refused', () => {
  assert.equal(head('HTTP/1.1 200 OK\r\ncontent-length: 5\r\n'), null);
  assert.throws(() => head(`HTTP/1.1 200 OK\r\nx: ${'a'.repeat(70_000)}`), FramingError);
  assert.throws(() => head(`HTTP/1.1 200 OK\r\nx: ${'a'.repeat(70_000)}\r\n\r\n`), FramingError);
});

test('malformed or ambiguous heads are refused, never guessed', () => {
  const bad = [
    'HTTP/2 200 OK\r\n\r\n',
    'HTTP/1.1 20 OK\r\n\r\n',
    'ICY 200 OK\r\n\r\n',
    'HTTP/1.1 200 OK\r\n folded: value\r\n\r\n', // obs-fold
    'HTTP/1.1 200 OK\r\nbad header: 1\r\n\r\n', // space in the name
    'HTTP/1.1 200 OK\r\n: empty name\r\n\r\n',
    'HTTP/1.1 200 OK\r\nno colon\r\n\r\n',
    'HTTP/1.1 200 OK\r\nx: a\nb\r\n\r\n', // bare LF inside a line
    'HTTP/1.1 200 OK\r\nx: a\x00b\r\n\r\n',
    'HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n',
    'HTTP/1.1 200 OK\r\ncontent-length: 3, 4\r\n\r\n',
    'HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n',
    'HTTP/1.1 200 OK\r\ncontent-length: 0x10\r\n\r\n',
    'HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n',
    'HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n',
    'HTTP/1.0 200 OK\r\ntransfer-encoding: chunked\r\n\r\n',
  ];
  for (const text of bad) assert.throws(() => head(text), FramingError, JSON.stringify(text));
});

const STREAM = Buffer.from(
  '7\r\n{"a":1}\r\n1a;ext=1;q="a b"\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nTrailer: x\r\n\r\n',
  'latin1',
);

test('the chunk scanner finds the end of a chunked body however the reads are split', () => {
  for (let a = 0; a <= STREAM.length; a++) {
    for (let b = a; b <= STREAM.length; b += 3) {
      assert.equal(endOf(new BodyEnd('chunked', 0), STREAM, [a, b]), STREAM.length, `cuts at ${a}, ${b}`);
    }
  }
  // What follows the end is not part of the body.
  const behind = Buffer.concat([Buffer.from('3\r\nabc\r\n0\r\n\r\n'), Buffer.from('HTTP/1.1 200 OK\r\n')]);
  assert.equal(new BodyEnd('chunked', 0).feed(behind, 0), 13);
  // From an offset, as the relay feeds the rest of the read that held the head.
  assert.equal(new BodyEnd('chunked', 0).feed(Buffer.concat([Buffer.from('HEAD'), STREAM]), 4), 4 + STREAM.length);
});

test('the scanner knows when it stands between chunks', () => {
  const s = new BodyEnd('chunked', 0);
  assert.equal(s.atChunkStart, true);
  s.feed(Buffer.from('5\r\nab'), 0);
  assert.equal(s.atChunkStart, false);
  s.feed(Buffer.from('cde\r\n'), 0);
  assert.equal(s.atChunkStart, true);
  assert.equal(new BodyEnd('length', 4).atChunkStart, false);
});

test('malformed chunk framing is refused', () => {
  const bad = [
    '\r\n', // no size
    'g\r\n', // not hex
    '3\nabc\r\n0\r\n\r\n', // bare LF after the size
    '3\r\nabcd\r\n', // data longer than its size
    '3\r\nabc\n0\r\n\r\n', // bare LF after the data
    '1000000000000\r\n', // 13 hex digits
    '3;a\nb\r\n', // LF inside an extension
    '0\r\n\n', // bare LF after the last chunk
    '0\r\nx: 1\n\r\n', // bare LF in a trailer
    '3 \r\nabc\r\n', // whitespace after the size (llhttp refuses it)
    '3;\r\nabc\r\n', // an extension without a name
    '3; a=1\r\nabc\r\n', // whitespace in an extension
    '3;a=1 \r\nabc\r\n',
    '3;a=\x80\r\nabc\r\n', // a byte outside token in a value
    '3;a="x\x01"\r\nabc\r\n', // a control byte in a quoted value
  ];
  for (const text of bad) {
    assert.throws(
      () => new BodyEnd('chunked', 0).feed(Buffer.from(text, 'latin1'), 0),
      FramingError,
      JSON.stringify(text),
    );
  }
});

test('length and empty bodies end by count; a close-delimited body never ends by itself', () => {
  const s = new BodyEnd('length', 10);
  assert.equal(s.feed(Buffer.alloc(4), 0), -1);
  assert.equal(s.feed(Buffer.alloc(8), 0), 6);
  assert.equal(new BodyEnd('length', 0).empty, true);
  assert.equal(new BodyEnd('none', 0).feed(Buffer.from('xyz'), 1), 1);
  assert.equal(new BodyEnd('close', 0).feed(Buffer.alloc(100), 0), -1);
});

interface NativeResponseParser {
  initialize(type: number, resource: object, maxHeaderSize: number, lenientFlags: number): void;
  execute(data: Buffer): number | Error;
  close(): void;
  [callback: number]: unknown;
}
const { HTTPParser } = createRequire(import.meta.url)('_http_common') as {
  HTTPParser: {
    new (): NativeResponseParser;
    RESPONSE: number;
    kOnHeaders: number;
    kOnHeadersComplete: number;
    kOnBody: number;
    kOnMessageComplete: number;
    kOnMessageBegin: number;
    kOnExecute: number;
  };
};

/** Whether Node's own HTTP client parser (llhttp, strict) takes a chunked response with this body whole. */
function llhttpAccepts(body: Buffer): boolean {
  const p = new HTTPParser();
  let complete = false;
  const noop = (): number => 0;
  for (const k of [
    HTTPParser.kOnHeaders,
    HTTPParser.kOnHeadersComplete,
    HTTPParser.kOnBody,
    HTTPParser.kOnMessageBegin,
    HTTPParser.kOnExecute,
  ])
    p[k] = noop;
  p[HTTPParser.kOnMessageComplete] = () => {
    complete = true;
  };
  p.initialize(HTTPParser.RESPONSE, {}, 0, 0);
  const r = p.execute(Buffer.concat([Buffer.from('HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n'), body]));
  p.close();
  return typeof r === 'number' && complete;
}

function scannerAccepts(body: Buffer): boolean {
  try {
    return new BodyEnd('chunked', 0).feed(body, 0) === body.length;
  } catch (err) {
    if (err instanceof FramingError) return false;
    throw err;
  }
}

test("chunk size lines and extensions: the scanner accepts exactly what Node's own client parser accepts", () => {
  // Every extension of up to 4 bytes over an alphabet of the characters that matter, behind a size.
  const alphabet = ['a', '=', '"', ';', ' ', '\t', '\\', '\x80', '\x01', '1'];
  const exts: string[] = [''];
  for (let len = 1; len <= 4; len++) {
    for (let n = 0; n < alphabet.length ** len; n++) {
      let ext = '';
      for (let k = 0, v = n; k < len; k++, v = Math.floor(v / alphabet.length)) ext += alphabet[v % alphabet.length]!;
      exts.push(ext);
    }
  }
  const disagree: string[] = [];
  for (const ext of exts) {
    const body = Buffer.from(`3${ext}\r\nabc\r\n0\r\n\r\n`, 'latin1');
    if (llhttpAccepts(body) !== scannerAccepts(body))
      disagree.push(`${JSON.stringify(ext)}: llhttp ${llhttpAccepts(body)}`);
  }
  assert.deepEqual(disagree.slice(0, 20), [], `${disagree.length} of ${exts.length} size lines judged differently`);
  assert.ok(
    exts.filter((e) => scannerAccepts(Buffer.from(`3${e}\r\nabc\r\n0\r\n\r\n`, 'latin1'))).length > 50,
    'the comparison covers accepted lines too',
  );
});

test('the chunk extension budget is per chunk: a long stream with extensions on every chunk is not cut', () => {
  const s = new BodyEnd('chunked', 0);
  const chunk = Buffer.from(`1;${'e'.repeat(1000)}\r\nx\r\n`, 'latin1');
  // 200 chunks carry 200 KB of extensions in all, three times the per-line budget.
  for (let i = 0; i < 200; i++) assert.equal(s.feed(chunk, 0), -1, `chunk ${i}`);
  assert.equal(s.feed(Buffer.from('0\r\n\r\n'), 0), 5);
  // One line over the budget is still refused.
  assert.throws(
    () => new BodyEnd('chunked', 0).feed(Buffer.from(`1;${'e'.repeat(MAX_HEAD_BYTES + 1)}\r\n`, 'latin1'), 0),
    { code: 'OLN_BAD_UPSTREAM_FRAMING', reason: 'chunk-extension-too-long' },
  );
});

test('a response head with bare LF line ends is refused at once, before its (never coming) CRLF CRLF', () => {
  const bareLf = { code: 'OLN_BAD_UPSTREAM_FRAMING', reason: 'bare-lf-in-head' };
  assert.throws(() => head('HTTP/1.1 200 OK\ncontent-length: 2\n\n{}'), bareLf);
  assert.throws(() => head('HTTP/1.1 200 OK\r\ncontent-length: 2\n'), bareLf);
  assert.equal(head('HTTP/1.1 200 OK\r\ncontent-length: 2\r'), null, 'a CR at the end of a read may still get its LF');
});
