/** The request-target and Host rules of RFC 9112 §3.2-3.3 as ollana applies them (request-target.ts). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { hostLines, parseTarget, validHostValue } from '../../src/proxy/listen/request-target.ts';

test('origin form passes as it is', () => {
  assert.deepEqual(parseTarget('/api/tags?x=1'), { form: 'origin' });
});

test('absolute form splits into authority and path; an empty path is /, a bare query gets one', () => {
  assert.deepEqual(parseTarget('http://127.0.0.1:11434/api/tags?x=1'), {
    form: 'absolute',
    authority: '127.0.0.1:11434',
    path: '/api/tags?x=1',
  });
  assert.deepEqual(parseTarget('HTTPS://Host.Local'), { form: 'absolute', authority: 'Host.Local', path: '/' });
  assert.deepEqual(parseTarget('http://h?x=1'), { form: 'absolute', authority: 'h', path: '/?x=1' });
  assert.deepEqual(parseTarget('http://[::1]:11434/api/ps'), {
    form: 'absolute',
    authority: '[::1]:11434',
    path: '/api/ps',
  });
});

test('targets ollana refuses, each with its reason', () => {
  assert.deepEqual(parseTarget('*'), { form: 'bad', why: 'is not a path' });
  assert.deepEqual(parseTarget('ftp://h/x'), { form: 'bad', why: 'is not a path' });
  assert.deepEqual(parseTarget('http:///api/tags'), { form: 'bad', why: 'has an empty host' });
  assert.deepEqual(parseTarget('http://u:p@h/api/tags'), { form: 'bad', why: 'has user info (user@ before the host)' });
  assert.deepEqual(parseTarget('http://h"x/api/tags'), { form: 'bad', why: 'has an invalid host' });
});

test("Host lines are counted whatever their case; values are checked like Go's net/http does", () => {
  assert.equal(hostLines(['Host', 'a', 'Accept', '*/*', 'HOST', 'b']), 2);
  assert.equal(hostLines(['Accept', '*/*']), 0);
  for (const ok of ['localhost', '127.0.0.1:11434', '[::1]:11434', 'my-box.local', ''])
    assert.ok(validHostValue(ok), ok);
  for (const bad of ['a b', 'h/x', 'u@h', 'h"', 'h\\x']) assert.ok(!validHostValue(bad), bad);
});
