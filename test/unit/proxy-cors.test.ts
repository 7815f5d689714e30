import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hostname } from 'node:os';
import { hostAllowedOnLoopback, OriginPolicy } from '../../src/proxy/listen/cors.ts';

const ALLOWED_BY_DEFAULT = [
  'http://localhost',
  'https://localhost',
  'http://localhost:3000',
  'https://localhost:8443',
  'http://127.0.0.1',
  'https://127.0.0.1',
  'http://127.0.0.1:5173',
  'http://0.0.0.0',
  'https://0.0.0.0:1',
  'app://x',
  'app://obsidian.md',
  'file://',
  'tauri://localhost',
  'vscode-webview://abc',
  'vscode-file://vscode-app',
  'HTTP://LOCALHOST:3000',
];
const REFUSED_BY_DEFAULT = [
  'https://evil.example',
  'http://evil.example:3000',
  'http://localhost.evil.example',
  'http://127.0.0.1.nip.io',
  'http://127.0.0.2',
  'http://192.168.1.5:3000',
  'chrome-extension://abcdef',
  'moz-extension://x',
  'null',
  '',
  'ftp://localhost',
  'http://[::1]:3000',
  'xapp://x',
];

test('default origins: localhost, 127.0.0.1, 0.0.0.0 on any port and the app schemes', () => {
  const policy = new OriginPolicy([]);
  for (const origin of ALLOWED_BY_DEFAULT) assert.equal(policy.allows(origin, undefined), true, origin);
  for (const origin of REFUSED_BY_DEFAULT) assert.equal(policy.allows(origin, undefined), false, origin);
});

test('extra origins are added to the defaults, exact or with * wildcards', () => {
  const policy = new OriginPolicy(['chrome-extension://*', 'https://app.example.com', 'https://*.corp.example']);
  assert.equal(policy.allows('chrome-extension://abcdefghijklmnop', undefined), true);
  assert.equal(policy.allows('https://app.example.com', undefined), true);
  assert.equal(policy.allows('HTTPS://APP.EXAMPLE.COM', undefined), true);
  assert.equal(policy.allows('https://chat.corp.example', undefined), true);
  assert.equal(policy.allows('http://localhost:3000', undefined), true, 'defaults must stay');
  assert.equal(policy.allows('https://app.example.com.evil', undefined), false);
  assert.equal(policy.allows('https://corp.example', undefined), false);
  assert.equal(policy.allows('moz-extension://abc', undefined), false);
  assert.equal(policy.allows('https://evil.example', undefined), false);
});

test('regex characters in an extra origin are literal', () => {
  const policy = new OriginPolicy(['https://a.b', 'https://x.y:*']);
  assert.equal(policy.allows('https://aXb', undefined), false);
  assert.equal(policy.allows('https://xxy:1', undefined), false);
  assert.equal(policy.allows('https://x.y:1', undefined), true);
});

test('"*" allows every origin', () => {
  const policy = new OriginPolicy(['*']);
  for (const origin of ['https://evil.example', 'chrome-extension://x', 'null']) {
    assert.equal(policy.allows(origin, undefined), true, origin);
  }
});

test('a same-origin request (Origin matches Host) is allowed', () => {
  const policy = new OriginPolicy([]);
  assert.equal(policy.allows('http://192.168.1.5:11435', '192.168.1.5:11435'), true);
  assert.equal(policy.allows('https://Ollana.Lan:8443', 'ollana.lan:8443'), true);
  assert.equal(policy.allows('http://192.168.1.5:11435', '192.168.1.6:11435'), false);
  assert.equal(policy.allows('http://192.168.1.5', '192.168.1.5:11435'), false);
  assert.equal(policy.allows('https://evil.example', 'ollana.lan:11435'), false);
});

const HOSTS_ALLOWED: readonly (string | undefined)[] = [
  undefined,
  '',
  'localhost',
  'LOCALHOST:8080',
  'localhost:11434',
  '127.0.0.1',
  '127.0.0.1:11434',
  '127.9.9.9:1',
  '[::1]:11434',
  '[::1]',
  '::1',
  '0.0.0.0:11434',
  '10.1.2.3',
  '172.16.0.1:80',
  '172.31.255.255',
  '192.168.0.10:11434',
  '169.254.1.1',
  '[fd12::1]:1',
  '[fe80::1]',
  'foo.local',
  'foo.local:11434',
  'x.internal',
  'app.localhost:3000',
  hostname(),
  `${hostname().toUpperCase()}:11434`,
];
const HOSTS_REFUSED = [
  'evil.example.com',
  'evil.example.com:11434',
  '8.8.8.8',
  '8.8.8.8:11434',
  '172.32.0.1',
  '192.169.0.1',
  '11.0.0.1',
  '[2001:db8::1]:11434',
  'localhost.evil.com',
  'local',
  'internal',
  'evil-local',
  'xlocalhost',
];

test('hostAllowedOnLoopback lets local names and private addresses through', () => {
  for (const host of HOSTS_ALLOWED) assert.equal(hostAllowedOnLoopback(host), true, String(host));
});

test('hostAllowedOnLoopback refuses names of other machines (DNS rebinding)', () => {
  for (const host of HOSTS_REFUSED) assert.equal(hostAllowedOnLoopback(host), false, host);
});

test('hostAllowedOnLoopback gives the same verdicts when allowed and refused values alternate', () => {
  // The last allowed value is remembered; a refused one in between must never ride on it.
  for (let i = 0; i < 3; i++) {
    for (const [a, r] of HOSTS_ALLOWED.map((h, j) => [h, HOSTS_REFUSED[j % HOSTS_REFUSED.length]!] as const)) {
      assert.equal(hostAllowedOnLoopback(a), true, String(a));
      assert.equal(hostAllowedOnLoopback(r), false, r);
      assert.equal(hostAllowedOnLoopback(r), false, `${r}, asked twice`);
      assert.equal(hostAllowedOnLoopback(a), true, String(a));
    }
  }
});
