/**
 * The control endpoint in process (daemon/control-server.ts with daemon/control-client.ts), over a
 * real Unix socket: what it refuses and with which code, the socket's and token's modes, and the
 * two-line answer a stop request gets.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';
import { controlAddress, controlTokenFile } from '../../src/daemon/control.ts';
import { askToStop } from '../../src/daemon/control-client.ts';
import { ControlServer } from '../../src/daemon/control-server.ts';
import { OllanaError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';

const log = createLogger({ level: 'error', file: null, pretty: false });

async function started(t: TestContext, onStop: () => void = () => undefined) {
  const dir = mkdtempSync(join(tmpdir(), 'ollana-control-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const address = controlAddress(join(dir, 'ollana.pid'), 'linux');
  const tokenFile = controlTokenFile(dir, 'linux');
  const server = await ControlServer.start({ address, tokenFile, os: 'linux', log, onStop });
  assert.ok(server !== null);
  t.after(() => server.close(0));
  return { dir, address, tokenFile, server };
}

function ask(address: string, method: string, path: string, auth?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: address, method, path, headers: auth ? { authorization: auth } : {} });
    req.once('error', reject);
    req.once('response', (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.once('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.end();
  });
}

test('the token and the socket are for the owner only (0600)', async (t) => {
  const { address, tokenFile } = await started(t);
  assert.equal(statSync(tokenFile).mode & 0o777, 0o600);
  assert.equal(statSync(address).mode & 0o777, 0o600);
  assert.match(readFileSync(tokenFile, 'utf8'), /^[0-9a-f]{64}$/);
});

test('refused with OLN_CONTROL_REFUSED: no token, a wrong one, another path, another method; nothing stops', async (t) => {
  let stops = 0;
  const { address, tokenFile } = await started(t, () => stops++);
  const token = readFileSync(tokenFile, 'utf8');
  const cases: [string, string, string | undefined, number][] = [
    ['POST', '/ollana/v1/control/stop', undefined, 401],
    ['POST', '/ollana/v1/control/stop', `Bearer ${'0'.repeat(64)}`, 401],
    ['POST', '/ollana/v1/control/stop', `Bearer ${token.slice(0, 32)}`, 401],
    ['POST', '/ollana/v1/control/restart', `Bearer ${token}`, 404],
    ['GET', '/ollana/v1/control/stop', `Bearer ${token}`, 405],
  ];
  for (const [method, path, auth, status] of cases) {
    const r = await ask(address, method, path, auth);
    assert.equal(r.status, status, `${method} ${path} ${auth}`);
    assert.equal((JSON.parse(r.body) as { code: string }).code, 'OLN_CONTROL_REFUSED');
  }
  assert.equal(stops, 0);
});

test('a stop request: the client resolves with the cut count once the node has stopped; closing twice is harmless', async (t) => {
  const { address, tokenFile, server } = await started(t, () => {
    void server.close(3);
  });
  assert.deepEqual(await askToStop(address, tokenFile, 10_000), { cut: 3 });
  // Closing again (the node's exit path after a failed start, say) is a no-op, not a hang.
  await server.close(0);
});

test('the client: an unreadable token file or a refused token is OLN_CONTROL_REFUSED', async (t) => {
  const { dir, address, tokenFile } = await started(t);
  await assert.rejects(askToStop(address, join(dir, 'no-such-token'), 5_000), (err: unknown) => {
    return err instanceof OllanaError && err.code === 'OLN_CONTROL_REFUSED';
  });
  const other = join(dir, 'other.token');
  writeFileSync(other, 'a'.repeat(64));
  await assert.rejects(askToStop(address, other, 5_000), (err: unknown) => {
    return err instanceof OllanaError && err.code === 'OLN_CONTROL_REFUSED';
  });
  assert.ok(readFileSync(tokenFile, 'utf8').length === 64);
});
