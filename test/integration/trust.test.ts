/**
 * Trust on one host (issue #5): a server node's port speaks TLS, asks every client for its device
 * certificate and admits only allowed devices, before reading a byte of HTTP. Driven through the real
 * CLI (`ollana serve`, `ollana device ...`, `ollana status`) and real TLS sockets; the emulator's request
 * log shows what reached "Ollama". Multi-host pairing and pinning are in test/netns/trust.test.ts.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { after, before, test } from 'node:test';
import { Client, request } from 'undici';
import { pinnedConnector, type TlsIdentity } from '../../src/net/tls.ts';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { exchange as hostileExchange, rssMiB, slowloris, tcp, tlsAs } from '../helpers/hostile-client.ts';
import { freePort, removeHome, runCli, tempHome, type Started, startServerNode } from '../helpers/ollana-process.ts';

let emu: Emulator;
let server: Started;
let serverHome: string;
let clientHome: string;
let serverId: string;
let client: TlsIdentity;
const homes: string[] = [];

/** `ollana device show --json` in a data dir: creates the identity on first use. */
async function deviceShow(home: string): Promise<TlsIdentity> {
  const r = await runCli(['device', 'show', '--json'], { home });
  assert.equal(r.code, 0, r.stderr);
  const id = (JSON.parse(r.stdout) as { id: string }).id;
  return {
    id,
    certPem: readFileSync(join(home, 'cert.pem'), 'utf8'),
    keyPem: readFileSync(join(home, 'key.pem'), 'utf8'),
  };
}

async function device(
  home: string,
  ...args: string[]
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return runCli(['device', ...args], { home });
}

/** Requests that reached the emulator on `path` (ollana's own health checks use other paths). */
function reached(path: string): number {
  return emu.requests.filter((r) => r.url === path).length;
}

/** One request over a fresh pinned TLS connection as device `self`. */
async function asDevice(
  self: TlsIdentity,
  path = '/api/ps',
  expectedId = serverId,
): Promise<{ status: number; refused: string | null; body: string }> {
  const dispatcher = new Client(server.url, { connect: pinnedConnector({ self, expectedId, timeoutMs: 5_000 }) });
  try {
    const res = await request(`${server.url}${path}`, { dispatcher });
    const body = await res.body.text();
    const refused = res.headers['ollana-refused'];
    return { status: res.statusCode, refused: typeof refused === 'string' ? refused : null, body };
  } finally {
    await dispatcher.close().catch(() => undefined);
  }
}

/** Raw TLS connection as `self` (null: no certificate). */
function tlsSocket(self: TlsIdentity | null, session?: Buffer): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({
      host: '127.0.0.1',
      port: server.port,
      rejectUnauthorized: false,
      session,
      ...(self === null ? {} : { cert: self.certPem, key: self.keyPem }),
    });
    s.once('secureConnect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Sends one keep-alive GET on an open socket and reads the whole response text. */
function exchange(s: TLSSocket, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer): void => {
      text += d.toString();
      const head = text.indexOf('\r\n\r\n');
      const len = /content-length: (\d+)/i.exec(text);
      if (head >= 0 && len !== null && text.length >= head + 4 + Number(len[1])) {
        cleanup();
        resolve(text);
      }
    };
    const onEnd = (): void => {
      cleanup();
      resolve(text);
    };
    const cleanup = (): void => {
      s.off('data', onData);
      s.off('end', onEnd);
      s.off('error', reject);
    };
    s.on('data', onData);
    s.once('end', onEnd);
    s.once('error', reject);
    s.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
  });
}

/** Polls `check` every 100 ms until it holds; resolves with the time it took, rejects after `limitMs`. */
async function until(check: () => Promise<boolean>, limitMs: number, what: string): Promise<number> {
  const t0 = Date.now();
  for (let i = 0; i < limitMs / 100; i++) {
    if (await check()) return Date.now() - t0;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`not within ${limitMs} ms: ${what}`);
}

before(async () => {
  emu = await startEmulator({ port: 0, tokenIntervalMs: 0 });
  serverHome = tempHome('ollana-trust-s-');
  clientHome = tempHome('ollana-trust-c-');
  homes.push(serverHome, clientHome);
  serverId = (await deviceShow(serverHome)).id;
  client = await deviceShow(clientHome);
  server = await startServerNode(emu.url, { workers: 2, tls: true, home: serverHome });
});

after(async () => {
  await server?.stop();
  await emu?.close();
  for (const h of homes) removeHome(h);
});

test('the server node listens with TLS under its device id', () => {
  assert.match(server.url, /^https:\/\//);
  const line = server.lines.find((l) => l.msg.includes('listening on'));
  assert.equal(line?.deviceId, serverId);
});

test('plain HTTP to the TLS port is refused and reaches nothing', async () => {
  const before = reached('/api/ps');
  const answer = await new Promise<string>((resolve, reject) => {
    let text = '';
    const s = netConnect({ host: '127.0.0.1', port: server.port }, () =>
      s.write('GET /api/ps HTTP/1.1\r\nHost: x\r\n\r\n'),
    );
    s.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    s.once('close', () => resolve(text));
    s.once('error', reject);
    setTimeout(() => {
      s.destroy();
      reject(new Error('plain HTTP connection was left open'));
    }, 15_000).unref();
  });
  assert.doesNotMatch(answer, /^HTTP\//, 'no HTTP answer on the TLS port');
  assert.equal(reached('/api/ps'), before);
  await server.waitFor((l) => /TLS handshake failed/.test(l.msg), 5_000, 'the refusal logged');
});

test('a TLS client without a device certificate gets a 403 that says what to use instead', async () => {
  const before = reached('/api/ps');
  const s = await tlsSocket(null);
  const text = await exchange(s, '/api/ps');
  s.destroy();
  assert.match(text, /^HTTP\/1\.1 403/);
  assert.match(text, /ollana-refused: no-certificate/i);
  assert.match(text, /node-to-node port/);
  assert.equal(reached('/api/ps'), before);
});

test('an unknown device is refused after the handshake; the server lists it as pending', async () => {
  const before = reached('/api/ps');
  const r = await asDevice(client);
  assert.equal(r.status, 403);
  assert.equal(r.refused, 'unknown');
  assert.ok(r.body.includes(`ollana device allow ${client.id}`), r.body);
  assert.equal(reached('/api/ps'), before, 'nothing reached Ollama');
  await server.waitFor(
    (l) => l.msg.includes(`refused device ${client.id}`) && l.msg.includes(`ollana device allow ${client.id}`),
    5_000,
    'one clear line with the command',
  );
  const pending = await until(
    async () => {
      const p = await device(serverHome, 'pending', '--json');
      return p.code === 0 && p.stdout.includes(client.id);
    },
    5_000,
    'the device listed by `ollana device pending`',
  );
  assert.ok(pending >= 0);
});

test('pairing: `ollana device allow <id>` admits the device within a second, without a restart', async (t) => {
  const r = await device(serverHome, 'allow', client.id);
  assert.equal(r.code, 0, r.stderr);
  const took = await until(async () => (await asDevice(client)).status === 200, 5_000, 'the allowed device served');
  t.diagnostic(`allowed after ${took} ms`);
  assert.ok(took < 2_000, `allow took ${took} ms to apply`);
  const before = reached('/api/ps');
  const ok = await asDevice(client);
  assert.equal(ok.status, 200);
  assert.ok(Array.isArray((JSON.parse(ok.body) as { models: unknown }).models));
  assert.equal(reached('/api/ps'), before + 1);
});

interface Counts {
  done: number;
  resumed: number;
  requests: number;
}

/**
 * The server node's TLS handshake counters and forwarded requests (status totals), read as the allowed
 * client device: the read itself adds one full handshake and no forwarded request.
 */
async function handshakes(): Promise<Counts> {
  const r = await asDevice(client, '/ollana/v1/status');
  assert.equal(r.status, 200, r.body);
  const t = (
    JSON.parse(r.body) as { workers: { totals: { tlsHandshakes: number; tlsResumed: number; requests: number } } }
  ).workers.totals;
  return { done: t.tlsHandshakes, resumed: t.tlsResumed, requests: t.requests };
}

const delta = (a: Counts, b: Counts): Counts => ({
  done: b.done - a.done,
  resumed: b.resumed - a.resumed,
  requests: b.requests - a.requests,
});

test('TLS sessions resume: the handshake is paid once per client, whichever worker answers', async () => {
  const before = await handshakes();
  const first = await tlsSocket(client);
  assert.match(await exchange(first, '/api/ps'), /^HTTP\/1\.1 200/);
  // TLS 1.3 tickets arrive after the handshake, with the first answer.
  const session = first.getSession();
  first.destroy();
  assert.ok(session !== undefined, 'a session ticket');
  let resumed = 0;
  for (let i = 0; i < 8; i++) {
    const s = await tlsSocket(client, session);
    if (s.isSessionReused()) resumed += 1;
    assert.match(
      await exchange(s, '/api/ps'),
      /^HTTP\/1\.1 200/,
      'a resumed session is still admitted by its certificate',
    );
    s.destroy();
  }
  assert.equal(resumed, 8, 'every later connection resumed (the two workers share ticket keys)');
  // The status counts what the server saw: these 9 connections, plus the full handshake of the status
  // request that reads it (each asDevice connects afresh, without a ticket).
  const now = await handshakes();
  assert.deepEqual(delta(before, now), { done: 10, resumed: 8, requests: 9 });
});

test('a pinned client resumes its TLS session on new connections and is still served', async () => {
  const before = await handshakes();
  const dispatcher = new Client(server.url, {
    connect: pinnedConnector({ self: client, expectedId: serverId, timeoutMs: 5_000 }),
  });
  try {
    for (let i = 0; i < 4; i++) {
      // connection: close makes every request open a new connection, resumed from the previous ticket.
      const res = await request(`${server.url}/api/ps`, { dispatcher, headers: { connection: 'close' } });
      await res.body.text();
      assert.equal(res.statusCode, 200, `request ${i + 1} on a resumed session`);
    }
  } finally {
    await dispatcher.close();
  }
  // The connector's 4 connections (the first full, the others resumed from the ticket it keeps, with
  // the SecureContext every connector of this identity shares) and the full one of the status read.
  assert.deepEqual(delta(before, await handshakes()), { done: 5, resumed: 3, requests: 4 });
});

test('a connection ahead (warm) takes a session ticket and forwards nothing; the first request resumes from it', async () => {
  const before = await handshakes();
  const reachedBefore = reached('/api/ps');
  const connector = pinnedConnector({ self: client, expectedId: serverId, timeoutMs: 5_000 });
  assert.equal(await connector.warm(server.url), true, 'the connector holds a ticket');
  const warmed = await handshakes();
  assert.deepEqual(
    delta(before, warmed),
    { done: 2, resumed: 0, requests: 0 },
    'one full handshake ahead (and the status read), no request',
  );
  const dispatcher = new Client(server.url, { connect: connector });
  try {
    const res = await request(`${server.url}/api/ps`, { dispatcher });
    await res.body.text();
    assert.equal(res.statusCode, 200);
  } finally {
    await dispatcher.close();
  }
  assert.deepEqual(
    delta(warmed, await handshakes()),
    { done: 2, resumed: 1, requests: 1 },
    "the first request's connection resumed",
  );
  assert.equal(reached('/api/ps'), reachedBefore + 1);
});

test('a connection ahead that stalls or is cancelled is given up and leaves no socket open', async () => {
  // A TCP listener that accepts and never speaks TLS: the handshake cannot finish.
  const accepted: Socket[] = [];
  const silent = createNetServer((s) => {
    accepted.push(s);
    s.on('error', () => undefined);
    s.resume();
  });
  silent.listen(0, '127.0.0.1');
  await once(silent, 'listening');
  const origin = `https://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  try {
    const closed = (s: Socket): Promise<void> =>
      s.destroyed ? Promise.resolve() : once(s, 'close').then(() => undefined);
    const ac = new AbortController();
    const cancelled = pinnedConnector({ self: client, expectedId: serverId, timeoutMs: 30_000 }).warm(
      origin,
      ac.signal,
    );
    await until(async () => accepted.length === 1, 5_000, 'the connection accepted');
    ac.abort();
    await assert.rejects(cancelled, (err: Error & { code?: string }) => err.code === 'ABORT_ERR');
    await closed(accepted[0]!);
    await assert.rejects(
      pinnedConnector({ self: client, expectedId: serverId, timeoutMs: 300 }).warm(origin),
      (err: Error & { code?: string }) => err.code === 'OLN_UPSTREAM_CONNECT_TIMEOUT',
    );
    assert.equal(accepted.length, 2);
    await closed(accepted[1]!);
  } finally {
    silent.close();
    for (const s of accepted) s.destroy();
  }
});

test('a server that is not the device expected gets nothing: the pin fails before any request', async () => {
  const before = reached('/api/ps');
  const isPinMismatch = (err: Error & { code?: string }): boolean => {
    assert.equal(err.code, 'OLN_PIN_MISMATCH');
    assert.match(err.message, /nothing was sent/);
    return true;
  };
  await assert.rejects(asDevice(client, '/api/ps', client.id), isPinMismatch);
  // Every connector of an identity shares one SecureContext: one holding this server's session ticket
  // does not let another connector, pinned to another id, resume past its pin check.
  assert.equal(await pinnedConnector({ self: client, expectedId: serverId, timeoutMs: 5_000 }).warm(server.url), true);
  await assert.rejects(
    pinnedConnector({ self: client, expectedId: client.id, timeoutMs: 5_000 }).warm(server.url),
    isPinMismatch,
  );
  await assert.rejects(asDevice(client, '/api/ps', client.id), isPinMismatch);
  assert.equal(reached('/api/ps'), before);
});

test('smuggling over TLS, as an allowed device: 400, the connection closes, nothing reaches Ollama', async () => {
  const ex = await hostileExchange(tlsAs(server.port, client), [
    'POST /api/generate?smuggled=tls HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '0\r\n\r\nGET /api/ps?smuggled=inner HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n',
  ]);
  assert.equal(ex.responses[0]?.status, 400);
  assert.equal(ex.responses.length, 1, 'nothing answered after the refusal');
  assert.ok(ex.closed, 'the connection is closed');
  assert.ok(!emu.requests.some((r) => r.url.includes('smuggled')), 'neither request reached Ollama');
});

test('stalled handshakes and slow headers on the TLS port are cut; the node serves others meanwhile', async (t) => {
  const pid = server.proc.pid!;
  const before = rssMiB(pid);
  // 100 TCP connections that never start TLS (cut by the 5 s handshake timeout), and 50 allowed
  // devices that trickle their headers after the handshake (cut by the 10 s header timeout).
  const stalled = await slowloris(tcp(server.port), 100, { everyMs: 60_000, silent: 100 });
  const slow = await slowloris(tlsAs(server.port, client), 50, { everyMs: 500, maxPieces: 200 });
  try {
    let served = 0;
    while ((stalled.open() > 0 || slow.open() > 0) && served < 200) {
      assert.equal((await asDevice(client)).status, 200);
      served += 1;
      await new Promise((r) => setTimeout(r, 50));
    }
    await Promise.all([stalled.allClosed(20_000), slow.allClosed(20_000)]);
    const lived = slow.clients.map((c) => (c.closedAt ?? 0) - c.openedAt);
    t.diagnostic(
      `served ${served} requests meanwhile; slow TLS clients lived ${Math.round(Math.min(...lived))}-${Math.round(Math.max(...lived))} ms; ` +
        `RSS ${before} -> ${rssMiB(pid)} MiB`,
    );
    assert.ok(served > 0, 'others were served while the slow ones were open');
    assert.ok(
      slow.clients.every((c) => c.received.startsWith('HTTP/1.1 408')),
      'slow headers get 408',
    );
    assert.ok(rssMiB(pid) - before < 150, 'memory stays bounded');
  } finally {
    stalled.stop();
    slow.stop();
  }
});

test('`ollana device disable` cuts the live connections of that device and refuses new ones', async (t) => {
  const live = await tlsSocket(client);
  assert.match(await exchange(live, '/api/ps'), /^HTTP\/1\.1 200/);
  const closed = new Promise<void>((resolve) => live.once('close', () => resolve()));
  const r = await device(serverHome, 'disable', client.id);
  assert.equal(r.code, 0, r.stderr);
  const t0 = Date.now();
  await Promise.race([
    closed,
    new Promise((_r, reject) => setTimeout(() => reject(new Error('live connection not cut')), 5_000).unref()),
  ]);
  t.diagnostic(`live connection cut after ${Date.now() - t0} ms`);
  const again = await asDevice(client);
  assert.equal(again.status, 403);
  assert.equal(again.refused, 'disabled');
});

test("`ollana status` reaches the TLS port with the node's own certificate", async () => {
  const r = await runCli(['status', '--json', '--listen', `127.0.0.1:${server.port}`], { home: serverHome });
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as { node: { id: string }; trust: { tls: boolean; disabled: number } };
  assert.equal(s.node.id, serverId);
  assert.equal(s.trust.tls, true);
  assert.equal(s.trust.disabled, 1);
  const human = await runCli(['status', '--listen', `127.0.0.1:${server.port}`], { home: serverHome });
  assert.equal(human.code, 0, human.stderr);
  assert.ok(human.stdout.includes(`device id ${serverId}`), human.stdout);
  assert.match(human.stdout, /listening on 127\.0\.0\.1:\d+ \(TLS\)/);
  assert.match(human.stdout, /trust: 0 allowed device\(s\), 1 disabled, 0 pending/);
});

test('--insecure-http on a LAN address is refused with the reason', async () => {
  const home = tempHome('ollana-trust-x-');
  homes.push(home);
  const r = await runCli(
    [
      'serve',
      '--mode',
      'server',
      '--insecure-http',
      '--listen',
      `0.0.0.0:${await freePort()}`,
      '--ollama-url',
      emu.url,
    ],
    { home },
  );
  assert.notEqual(r.code, 0);
  assert.match(r.stderr + r.stdout, /--insecure-http would serve plain HTTP on 0\.0\.0\.0:\d+.*loopback --listen/);
});
