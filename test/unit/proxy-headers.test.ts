import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { downstreamResponseHeaders, upstreamRequestHeaders } from '../../src/proxy/http/headers.ts';

/**
 * An IncomingMessage-like request: rawHeaders as given, headers lower-cased and joined the way Node
 * joins them (", " for most; host keeps the first), socket with a peer address.
 */
function fakeRequest(rawHeaders: string[], remoteAddress: string | null = '10.0.0.5'): IncomingMessage {
  const headers: Record<string, string> = {};
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!.toLowerCase();
    const value = rawHeaders[i + 1]!;
    if (headers[name] === undefined) headers[name] = value;
    else if (name !== 'host') headers[name] = `${headers[name]}, ${value}`;
  }
  // A destroyed socket has no remoteAddress: null stands for that.
  return { rawHeaders, headers, socket: { remoteAddress: remoteAddress ?? undefined } } as unknown as IncomingMessage;
}

/** The flat [name, value, ...] array as pairs, which reads better in a failing diff. */
function pairs(flat: readonly string[]): [string, string][] {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
}

test('end-to-end headers pass untouched, in order, with their case and duplicates', () => {
  const req = fakeRequest([
    'Host',
    '127.0.0.1:11434',
    'Authorization',
    'Bearer sk-123',
    'Content-Type',
    'application/json',
    'Content-Encoding',
    'gzip',
    'User-Agent',
    'ollama-js/0.6',
    'X-Custom',
    'one',
    'x-custom',
    'two',
    'Accept',
    '*/*',
  ]);
  assert.deepEqual(pairs(upstreamRequestHeaders(req, 'http')), [
    ['Authorization', 'Bearer sk-123'],
    ['Content-Type', 'application/json'],
    ['Content-Encoding', 'gzip'],
    ['User-Agent', 'ollama-js/0.6'],
    ['X-Custom', 'one'],
    ['x-custom', 'two'],
    ['Accept', '*/*'],
    ['x-forwarded-for', '10.0.0.5'],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', '127.0.0.1:11434'],
    ['forwarded', 'for=10.0.0.5;proto=http;host="127.0.0.1:11434"'],
  ]);
});

test('hop-by-hop headers, Host, Origin and Expect are dropped', () => {
  const req = fakeRequest([
    'Host',
    'h:1',
    'Connection',
    'keep-alive',
    'Keep-Alive',
    'timeout=5',
    'Proxy-Connection',
    'keep-alive',
    'Proxy-Authenticate',
    'Basic',
    'Proxy-Authorization',
    'Basic abc',
    'TE',
    'trailers',
    'Trailer',
    'X-Sum',
    'Transfer-Encoding',
    'chunked',
    'Upgrade',
    'websocket',
    'Origin',
    'http://localhost:3000',
    'Expect',
    '100-continue',
    'Content-Type',
    'text/plain',
  ]);
  const names = pairs(upstreamRequestHeaders(req, 'https')).map(([n]) => n);
  assert.deepEqual(names, ['Content-Type', 'x-forwarded-for', 'x-forwarded-proto', 'x-forwarded-host', 'forwarded']);
});

test('headers named in Connection are dropped, case-insensitively, across several Connection lines', () => {
  const req = fakeRequest([
    'Connection',
    'X-Secret, close',
    'connection',
    ' x-other ',
    'X-Secret',
    's',
    'X-OTHER',
    'o',
    'X-Kept',
    'k',
  ]);
  const out = pairs(upstreamRequestHeaders(req, 'http'));
  assert.deepEqual(
    out.filter(([n]) => n.startsWith('X-')),
    [['X-Kept', 'k']],
  );
});

test('an existing X-Forwarded-For is appended to, joining duplicate lines', () => {
  const one = pairs(upstreamRequestHeaders(fakeRequest(['X-Forwarded-For', '1.1.1.1']), 'http'));
  assert.deepEqual(
    one.filter(([n]) => n.toLowerCase() === 'x-forwarded-for'),
    [['x-forwarded-for', '1.1.1.1, 10.0.0.5']],
  );
  const two = pairs(
    upstreamRequestHeaders(fakeRequest(['x-forwarded-for', '1.1.1.1, 2.2.2.2', 'X-Forwarded-For', '3.3.3.3']), 'http'),
  );
  assert.deepEqual(
    two.filter(([n]) => n.toLowerCase() === 'x-forwarded-for'),
    [['x-forwarded-for', '1.1.1.1, 2.2.2.2, 3.3.3.3, 10.0.0.5']],
  );
});

test('incoming X-Forwarded-Proto/Host are replaced and Forwarded is appended to', () => {
  const req = fakeRequest([
    'X-Forwarded-Proto',
    'https',
    'X-Forwarded-Host',
    'spoofed',
    'Forwarded',
    'for=1.1.1.1;proto=https',
  ]);
  assert.deepEqual(pairs(upstreamRequestHeaders(req, 'http')), [
    ['x-forwarded-for', '10.0.0.5'],
    ['x-forwarded-proto', 'http'],
    ['forwarded', 'for=1.1.1.1;proto=https, for=10.0.0.5;proto=http'],
  ]);
});

test('Forwarded quotes and brackets an IPv6 client', () => {
  const out = pairs(upstreamRequestHeaders(fakeRequest(['Host', '[::1]:11434'], '::1'), 'http'));
  assert.deepEqual(out, [
    ['x-forwarded-for', '::1'],
    ['x-forwarded-proto', 'http'],
    ['x-forwarded-host', '[::1]:11434'],
    ['forwarded', 'for="[::1]";proto=http;host="[::1]:11434"'],
  ]);
  const mapped = pairs(upstreamRequestHeaders(fakeRequest([], '::ffff:192.168.1.9'), 'https'));
  assert.deepEqual(
    mapped.find(([n]) => n === 'forwarded'),
    ['forwarded', 'for="[::ffff:192.168.1.9]";proto=https'],
  );
});

test('quotes and backslashes in Host cannot break out of the Forwarded host parameter', () => {
  const out = pairs(upstreamRequestHeaders(fakeRequest(['Host', 'a"b\\c']), 'http'));
  assert.deepEqual(
    out.find(([n]) => n === 'forwarded'),
    ['forwarded', 'for=10.0.0.5;proto=http;host="abc"'],
  );
});

test('an unknown peer address is written as unknown', () => {
  const out = pairs(upstreamRequestHeaders(fakeRequest([], null), 'http'));
  assert.deepEqual(out, [
    ['x-forwarded-for', 'unknown'],
    ['x-forwarded-proto', 'http'],
    ['forwarded', 'for=unknown;proto=http'],
  ]);
});

test('downstreamResponseHeaders drops hop-by-hop headers and accepts Buffers and strings', () => {
  const raw = [
    Buffer.from('Content-Type'),
    Buffer.from('application/x-ndjson'),
    Buffer.from('Transfer-Encoding'),
    Buffer.from('chunked'),
    Buffer.from('Connection'),
    Buffer.from('keep-alive'),
    Buffer.from('Keep-Alive'),
    Buffer.from('timeout=4'),
    'Date',
    'Mon, 01 Jan 2024 00:00:00 GMT',
    Buffer.from('Set-Cookie'),
    Buffer.from('a=1'),
    'set-cookie',
    'b=2',
    Buffer.from('X-Name'),
    Buffer.from([0x63, 0x61, 0x66, 0xe9]), // latin1 "café"
  ];
  assert.deepEqual(pairs(downstreamResponseHeaders(raw, null)), [
    ['Content-Type', 'application/x-ndjson'],
    ['Date', 'Mon, 01 Jan 2024 00:00:00 GMT'],
    ['Set-Cookie', 'a=1'],
    ['set-cookie', 'b=2'],
    ['X-Name', 'caf\u00e9'],
  ]);
});

test('downstreamResponseHeaders drops the names the caller lists and those in Connection', () => {
  const raw = [
    'Connection',
    'X-Hop, close',
    'X-Hop',
    '1',
    'Content-Length',
    '10',
    'Access-Control-Allow-Origin',
    '*',
    'X-Keep',
    'k',
  ];
  const drop = new Set(['access-control-allow-origin', 'content-length']);
  assert.deepEqual(pairs(downstreamResponseHeaders(raw, drop)), [['X-Keep', 'k']]);
  assert.deepEqual(pairs(downstreamResponseHeaders(raw, null)), [
    ['Content-Length', '10'],
    ['Access-Control-Allow-Origin', '*'],
    ['X-Keep', 'k'],
  ]);
});

test('downstreamResponseHeaders honours every Connection line, not just the last', () => {
  const raw = ['Connection', 'X-A', 'Connection', 'X-B', 'X-A', 'a', 'X-B', 'b', 'X-C', 'c'];
  assert.deepEqual(pairs(downstreamResponseHeaders(raw, null)), [['X-C', 'c']]);
});

test('downstreamResponseHeaders drops a header named by a Connection line that comes after it', () => {
  const raw = [
    Buffer.from('X-A'),
    Buffer.from('a'),
    Buffer.from('X-Keep'),
    Buffer.from('k'),
    Buffer.from('X-B'),
    Buffer.from('b'),
    Buffer.from('connection'),
    Buffer.from('x-b, X-A'),
  ];
  assert.deepEqual(pairs(downstreamResponseHeaders(raw, null)), [['X-Keep', 'k']]);
});
