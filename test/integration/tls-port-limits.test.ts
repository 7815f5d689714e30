/**
 * A server node's TLS port against clients that cost an attacker nothing (issue #22, items 4, 10
 * and 13): connections that never send a ClientHello, held and reopened to fill the connection cap;
 * a fresh self-signed certificate on every connection; handshakes that time out. Real ollana
 * processes, real TLS on loopback; the allowed client is a device with its own certificate.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { after, before, describe, test } from 'node:test';
import { Client, request } from 'undici';
import { deviceIdFromDer } from '../../src/identity/device-id.ts';
import { createSelfSigned } from '../../src/identity/self-signed.ts';
import { HANDSHAKE_TIMEOUT_MS, pinnedConnector, type TlsIdentity } from '../../src/net/tls.ts';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import { reopeningFlood } from '../helpers/hostile-client.ts';
import { removeHome, runCli, tempHome, type Started, startServerNode } from '../helpers/ollana-process.ts';

let emu: Emulator;
const homes: string[] = [];
const started: Started[] = [];

async function identity(home: string): Promise<TlsIdentity> {
  const r = await runCli(['device', 'show', '--json'], { home });
  assert.equal(r.code, 0, r.stderr);
  const id = (JSON.parse(r.stdout) as { id: string }).id;
  return {
    id,
    certPem: readFileSync(join(home, 'cert.pem'), 'utf8'),
    keyPem: readFileSync(join(home, 'key.pem'), 'utf8'),
  };
}

/** A server node on loopback that allows `allowed`; its identity is made first. */
async function serverNode(
  allowed: TlsIdentity | null,
  args: readonly string[] = [],
): Promise<{ node: Started; id: string; home: string }> {
  const home = tempHome('ollana-tlslim-s-');
  homes.push(home);
  const id = (await identity(home)).id;
  if (allowed !== null) {
    const r = await runCli(['device', 'allow', allowed.id], { home });
    assert.equal(r.code, 0, r.stderr);
  }
  const node = await startServerNode(emu.url, { workers: 2, tls: true, args, home });
  started.push(node);
  return { node, id, home };
}

/** One request on a fresh pinned TLS connection (a new handshake each time), failing after `ms`. */
async function freshRequest(node: Started, self: TlsIdentity, serverId: string, ms: number): Promise<number> {
  const dispatcher = new Client(node.url, { connect: pinnedConnector({ self, expectedId: serverId, timeoutMs: ms }) });
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      request(`${node.url}/api/version`, { dispatcher, headersTimeout: ms, bodyTimeout: ms }).then(async (res) => {
        await res.body.text();
        return res.statusCode;
      }),
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no answer within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    dispatcher.destroy().catch(() => undefined);
  }
}

before(async () => {
  emu = await startEmulator({ port: 0, tokenIntervalMs: 0 });
});

after(async () => {
  for (const n of started) await n.stop();
  await emu?.close();
  for (const h of homes) removeHome(h);
});

describe('TLS handshakes that never finish', () => {
  test('a handshake timeout is logged as one, not as a malformed request answered 400', async () => {
    const { node } = await serverNode(null);
    const socket = netConnect({ port: node.port, host: '127.0.0.1' });
    socket.on('error', () => undefined);
    const got: Buffer[] = [];
    socket.on('data', (c: Buffer) => got.push(c));
    const t0 = performance.now();
    await once(socket, 'connect');
    await Promise.race([
      once(socket, 'close'),
      new Promise((_, reject) =>
        setTimeout(
          () => reject(new Error('the silent connection was never closed')),
          HANDSHAKE_TIMEOUT_MS + 5_000,
        ).unref(),
      ),
    ]);
    const lived = performance.now() - t0;
    assert.ok(
      lived >= HANDSHAKE_TIMEOUT_MS - 200 && lived < HANDSHAKE_TIMEOUT_MS + 3_000,
      `closed after ${lived.toFixed(0)} ms`,
    );
    const line = await node.waitFor((l) => /TLS handshake failed/.test(l.msg), 5_000, 'the handshake refusal');
    assert.match(
      line.msg,
      new RegExp(`no handshake within ${HANDSHAKE_TIMEOUT_MS / 1000} s, ERR_TLS_HANDSHAKE_TIMEOUT`),
    );
    assert.deepEqual(
      node.lines.filter((l) => l.refusal === 'malformed').map((l) => l.msg),
      [],
      'not called a malformed request',
    );
    assert.equal(
      Buffer.concat(got).toString('latin1').includes('HTTP/1.1 400'),
      false,
      'no HTTP answer to a client that spoke no TLS',
    );
  });
});

describe('refused certificates from one host', () => {
  test('200 fresh certificates from one address: a few log lines and pending entries, a summary, and another host still heard', async () => {
    const { node, home } = await serverNode(null);
    const COUNT = 200;
    const certs = await Promise.all(Array.from({ length: COUNT }, (_, i) => createSelfSigned(`ollana forged-${i}`, 1)));
    for (const c of certs) {
      const s = tlsConnect({
        port: node.port,
        host: '127.0.0.1',
        rejectUnauthorized: false,
        cert: c.certPem,
        key: c.keyPem,
      });
      s.on('error', () => undefined);
      s.resume();
      await once(s, 'close');
    }
    // A real device on another address, after the flood: still reported and listed.
    const real = await createSelfSigned('ollana real-device', 1);
    const realId = deviceIdFromDer(new X509Certificate(real.certPem).raw);
    const tcp = netConnect({ port: node.port, host: '127.0.0.1', localAddress: '127.0.0.2' });
    const s = tlsConnect({ socket: tcp, rejectUnauthorized: false, cert: real.certPem, key: real.keyPem });
    s.on('error', () => undefined);
    s.resume();
    await once(s, 'close');
    await node.waitFor((l) => l.msg.startsWith(`refused device ${realId}`), 5_000, "the real device's refusal");
    const refusedLines = node.lines.filter((l) => /^refused device /.test(l.msg));
    // Four per source per minute, in each of the two workers, plus the real device.
    assert.ok(refusedLines.length <= 2 * 4 + 1, `${refusedLines.length} refusal lines for ${COUNT} certificates`);
    // pending.json is written shortly after a change: polled, a bounded number of times.
    let text = '';
    for (let i = 0; i < 50 && !text.includes(realId); i++) {
      if (i > 0) await new Promise((r) => setTimeout(r, 100));
      const pending = await runCli(['device', 'pending', '--json'], { home });
      assert.equal(pending.code, 0, pending.stderr);
      text = JSON.stringify(JSON.parse(pending.stdout) as unknown);
    }
    assert.ok(text.includes(realId), 'the real device is pending');
    assert.ok((text.match(/"id"/g) ?? []).length <= 2 * 4 + 1, `pending: ${text.slice(0, 300)}`);
    // The rest are summed up per source (once a minute, and when the worker stops).
    await node.stop();
    const held = node.lines.filter((l) => /^held back \d+ more refused TLS connections from 127\.0\.0\.1 /.test(l.msg));
    assert.ok(held.length >= 1, 'a summary line');
    assert.equal(
      held.reduce((n, l) => n + Number(l.count), 0) + refusedLines.length - 1,
      COUNT,
      'every refusal accounted for',
    );
  });
});

describe('connection cap against connections that never send a ClientHello', () => {
  test('a held and reopened flood over the cap: an allowed device still gets every request through', async (t) => {
    const c = await createSelfSigned('ollana allowed', 1);
    const allowed: TlsIdentity = {
      id: deviceIdFromDer(new X509Certificate(c.certPem).raw),
      certPem: c.certPem,
      keyPem: c.keyPem,
    };
    const LIMIT = 200;
    const { node, id } = await serverNode(allowed, ['--max-connections', String(LIMIT)]);
    assert.equal(await freshRequest(node, allowed, id, 5_000), 200, 'served before the flood');
    // 1.2 x the cap, each reopened 200 ms after the node closes it; bounded in count.
    const flood = reopeningFlood(node.port, Math.floor(LIMIT * 1.2), 200, 40_000);
    try {
      const t0 = performance.now();
      while (flood.opened < LIMIT * 1.2 && performance.now() - t0 < 5_000) await new Promise((r) => setTimeout(r, 50));
      await new Promise((r) => setTimeout(r, 500)); // the flood in place (a bounded settle, not a condition the test asserts)
      const N = 40;
      let ok = 0;
      const failures: string[] = [];
      for (let i = 0; i < N; i++) {
        try {
          if ((await freshRequest(node, allowed, id, 3_000)) === 200) ok += 1;
        } catch (err) {
          failures.push((err as Error).message);
        }
      }
      const report =
        `${ok}/${N} requests of the allowed device succeeded on fresh TLS connections while ${flood.held()} silent connections ` +
        `were held (${flood.opened} opened, ${flood.closedByServer} closed by the node) against --max-connections ${LIMIT}`;
      t.diagnostic(report);
      assert.equal(ok, N, `${report}; failures: ${[...new Set(failures)].join('; ')}`);
    } finally {
      flood.stop();
    }
    const line = await node.waitFor((l) => l.refusal === 'handshake-evicted', 5_000, 'the eviction logged');
    assert.match(line.msg, /had not completed its TLS handshake to make room/);
  });
});

describe('trust changes under live streams', () => {
  test('`ollana device disable` while that device streams: the stream is cut within a second, Ollama sees the abort, nothing hangs', async (t) => {
    const c = await createSelfSigned('ollana streamer', 1);
    const device: TlsIdentity = {
      id: deviceIdFromDer(new X509Certificate(c.certPem).raw),
      certPem: c.certPem,
      keyPem: c.keyPem,
    };
    const { node, id, home } = await serverNode(device);
    const dispatcher = new Client(node.url, {
      connect: pinnedConnector({ self: device, expectedId: id, timeoutMs: 5_000 }),
    });
    try {
      const aborted = new Promise<void>((resolve) => {
        const on = (e: { url: string }): void => {
          if (e.url === '/api/generate') {
            emu.events.off('aborted', on);
            resolve();
          }
        };
        emu.events.on('aborted', on);
      });
      const res = await request(`${node.url}/api/generate`, {
        dispatcher,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'llama3.2', prompt: 'long', emulator_tokens: 100_000, emulator_interval_ms: 10 }),
      });
      assert.equal(res.statusCode, 200);
      let lines = 0;
      let cutAt = 0;
      const reading = (async () => {
        for await (const chunk of res.body) {
          lines += (chunk as Buffer).toString().split('\n').length - 1;
        }
      })();
      const outcome = reading.then(
        () => 'ended',
        (err: Error) => `cut: ${err.message}`,
      );
      while (lines < 5) await new Promise((r) => setTimeout(r, 20));
      const r = await runCli(['device', 'disable', device.id], { home });
      assert.equal(r.code, 0, r.stderr);
      const t0 = performance.now();
      const how = await Promise.race([
        outcome,
        new Promise<string>((resolve) => setTimeout(() => resolve('still streaming after 5 s'), 5_000)),
      ]);
      cutAt = performance.now() - t0;
      t.diagnostic(`stream ${how} ${cutAt.toFixed(0)} ms after \`device disable\` returned, after ${lines} lines`);
      assert.match(how, /^cut: /);
      assert.ok(cutAt < 2_000, `cut ${cutAt.toFixed(0)} ms after the command (changes apply within a second)`);
      await Promise.race([
        aborted,
        new Promise((_, reject) => setTimeout(() => reject(new Error('Ollama saw no abort')), 5_000)),
      ]);
      // And a new connection of that device is refused.
      await assert.rejects(
        freshRequest(node, device, id, 3_000).then((status) => {
          if (status !== 200) throw new Error(`refused: ${status}`);
        }),
        /refused: 403/,
      );
    } finally {
      await dispatcher.destroy().catch(() => undefined);
    }
  });
});
