import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseOllamaHost } from '../../src/config/ollama-host.ts';
import { OllanaError } from '../../src/errors.ts';

// [OLLAMA_HOST value, expected origin, expected basePath]. Mirrors ollama envconfig/config_test.go
// TestHost, plus ConnectableHost's mapping of listen-everywhere hosts to loopback.
const CASES: readonly (readonly [string | undefined, string, string])[] = [
  [undefined, 'http://127.0.0.1:11434', ''],
  ['', 'http://127.0.0.1:11434', ''],
  ['   ', 'http://127.0.0.1:11434', ''],
  ['1.2.3.4', 'http://1.2.3.4:11434', ''],
  ['1.2.3.4:1234', 'http://1.2.3.4:1234', ''],
  ['example.com', 'http://example.com:11434', ''],
  ['example.com:1234', 'http://example.com:1234', ''],
  ['http://1.2.3.4', 'http://1.2.3.4:80', ''],
  ['http://1.2.3.4:4321', 'http://1.2.3.4:4321', ''],
  ['https://1.2.3.4', 'https://1.2.3.4:443', ''],
  ['https://1.2.3.4:4321', 'https://1.2.3.4:4321', ''],
  ['http://h', 'http://h:80', ''],
  ['https://h', 'https://h:443', ''],
  ['ollama.com', 'https://ollama.com:443', ''],
  ['"ollama.com"', 'https://ollama.com:443', ''],
  [' 1.2.3.4 ', 'http://1.2.3.4:11434', ''],
  ['"1.2.3.4"', 'http://1.2.3.4:11434', ''],
  [' " 1.2.3.4 " ', 'http://1.2.3.4:11434', ''],
  ["'1.2.3.4'", 'http://1.2.3.4:11434', ''],
  ['https://example.com/ollama', 'https://example.com:443', '/ollama'],
  ['https://example.com/ollama/', 'https://example.com:443', '/ollama'],
  ['example.com:8080/a/b', 'http://example.com:8080', '/a/b'],
  ['[::1]', 'http://[::1]:11434', ''],
  ['[::1]:1337', 'http://[::1]:1337', ''],
  ['http://[fe80::1]', 'http://[fe80::1]:80', ''],
  ['::1', 'http://[::1]:11434', ''],
  ['fd00::5', 'http://[fd00::5]:11434', ''],
  ['1.2.3.4:66000', 'http://1.2.3.4:11434', ''],
  ['1.2.3.4:-1', 'http://1.2.3.4:11434', ''],
  ['1.2.3.4:abc', 'http://1.2.3.4:11434', ''],
  ['http://1.2.3.4:99999', 'http://1.2.3.4:80', ''],
  ['1.2.3.4:', 'http://1.2.3.4:11434', ''],
  [':1234', 'http://127.0.0.1:1234', ''],
  [':66000', 'http://127.0.0.1:11434', ''],
  ['0.0.0.0', 'http://127.0.0.1:11434', ''],
  ['0.0.0.0:8080', 'http://127.0.0.1:8080', ''],
  ['::', 'http://[::1]:11434', ''],
  ['[::]', 'http://[::1]:11434', ''],
  ['[::]:9000', 'http://[::1]:9000', ''],
  ['HTTP://Example.com:1', 'http://Example.com:1', ''],
];

for (const [raw, origin, basePath] of CASES) {
  test(`parseOllamaHost(${JSON.stringify(raw)}) -> ${origin}${basePath}`, () => {
    assert.deepEqual(parseOllamaHost(raw), { origin, basePath });
  });
}

const BAD: readonly (readonly [string, RegExp])[] = [
  ['ftp://x', /uses the scheme "ftp"/],
  ['unix:///tmp/ollama.sock', /uses the scheme "unix"/],
  ['exa mple.com', /"exa mple\.com" is not a host name or IP address/],
  ['user@host:1', /"user@host" is not a host name or IP address/],
  ['[::1', /never closed with \]/],
  ['[::1]x', /unexpected "x" after the IPv6 address/],
  ['http://ho$t', /"ho\$t" is not a host name or IP address/],
];

for (const [raw, why] of BAD) {
  test(`parseOllamaHost(${JSON.stringify(raw)}) throws OLN_BAD_OLLAMA_URL naming the value`, () => {
    assert.throws(
      () => parseOllamaHost(raw),
      (err: unknown) => {
        assert.ok(err instanceof OllanaError);
        assert.equal(err.code, 'OLN_BAD_OLLAMA_URL');
        assert.ok(err.message.startsWith(`OLLAMA_HOST "${raw}" `), err.message);
        assert.match(err.message, why);
        assert.match(err.message, /http:\/\/127\.0\.0\.1:11434/); // says what a good value looks like
        return true;
      },
    );
  });
}

test('parseOllamaHost names the given source in its errors', () => {
  assert.throws(() => parseOllamaHost('ftp://x', '--ollama-url'), {
    name: 'OllanaError',
    code: 'OLN_BAD_OLLAMA_URL',
    message: '--ollama-url "ftp://x" uses the scheme "ftp"; Ollama speaks http or https, e.g. http://127.0.0.1:11434',
  });
});
