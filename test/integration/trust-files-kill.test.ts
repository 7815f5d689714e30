/**
 * Issue #22 red team: a process killed (SIGKILL) at every step of writing the identity, devices.json
 * and pending.json. Every file left behind parses, no update is half-applied, nothing blocks the next
 * command (no stale lock), and the next start removes the temporary files and says what it found.
 * The kill points are a test hook (OLLANA_DEBUG_HOOKS=1 with OLLANA_DEBUG_KILL_AT=<file>:<step>).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:tls';
import { after, test } from 'node:test';
import { deviceIdFromDer } from '../../src/identity/device-id.ts';
import { readDevices, readPendingChecked } from '../../src/identity/devices.ts';
import { loadIdentity } from '../../src/identity/identity.ts';
import { freePort, removeHome, runCli, runOllana, startOllana, tempHome } from '../helpers/ollana-process.ts';

const homes: string[] = [];
after(() => { for (const h of homes) removeHome(h); });
function home(): string {
  const h = tempHome('ollana-kill-');
  homes.push(h);
  return h;
}

const killAt = (point: string): Record<string, string> => ({ OLLANA_DEBUG_HOOKS: '1', OLLANA_DEBUG_KILL_AT: point });
const temps = (h: string): string[] => readdirSync(h).filter((f) => f.endsWith('.tmp'));

/** Every trust file in `h` reads back (or is absent); throws on anything a reader would refuse. */
function allParse(h: string): void {
  readDevices(h);
  assert.equal(readPendingChecked(h).problem, null);
  loadIdentity(h);
}

test('SIGKILL at each step of making the identity: the files parse, and the next command cleans up and says so', { timeout: 120_000 }, async () => {
  for (const point of ['key.pem:temp-written', 'key.pem:in-place', 'cert.pem:temp-written', 'cert.pem:in-place']) {
    const h = home();
    const killed = await runCli(['device', 'show', '--json'], { home: h, env: killAt(point) });
    assert.equal(killed.code, null, `${point}: killed, not exited: ${killed.stderr}`);
    allParse(h);
    const left = temps(h);
    assert.equal(left.length, point.endsWith('temp-written') ? 1 : 0, `${point}: ${readdirSync(h).join(' ')}`);

    const next = await runCli(['device', 'show', '--json'], { home: h });
    assert.equal(next.code, 0, `${point}: ${next.stderr}`);
    const shown = JSON.parse(next.stdout) as { id: string; created: boolean };
    for (const f of left) assert.match(next.stderr, new RegExp(`removed what an interrupted write \\(a killed ollana\\) left in .*${f.replace(/\./g, '\\.')}`));
    if (point === 'key.pem:in-place') assert.match(next.stderr, /key\.pem \(without its cert\.pem\)/);
    assert.deepEqual(temps(h), [], `${point}: no temporary file (no private key) left`);
    assert.equal(loadIdentity(h)?.id, shown.id);
    assert.equal(shown.created, point !== 'cert.pem:in-place', `${point}: a complete identity is kept`);
  }
});

test('SIGKILL at each step of `device allow`: devices.json is the old or the new list, never half, and the next allow works', { timeout: 120_000 }, async () => {
  const h = home();
  assert.equal((await runCli(['device', 'show'], { home: h })).code, 0);
  const first = deviceIdFromDer(Buffer.from('kill first'));
  assert.equal((await runCli(['device', 'allow', first], { home: h })).code, 0);
  for (const [i, point] of ['devices.json:temp-written', 'devices.json:in-place'].entries()) {
    const id = deviceIdFromDer(Buffer.from(`kill ${i}`));
    const killed = await runCli(['device', 'allow', id], { home: h, env: killAt(point) });
    assert.equal(killed.code, null, `${point}: ${killed.stderr}`);
    allParse(h);
    const ids = readDevices(h).map((d) => d.id);
    assert.deepEqual(ids.includes(id), point === 'devices.json:in-place', `${point}: ${ids.join(' ')}`);
    assert.ok(ids.includes(first), 'an earlier device is never lost');
    // The lock died with the process: the next command gets it at once and applies its change.
    const again = await runCli(['device', 'allow', id], { home: h, timeoutMs: 20_000 });
    assert.equal(again.code, 0, again.stderr);
    assert.ok(readDevices(h).some((d) => d.id === id));
  }
  const shown = await runCli(['device', 'show'], { home: h });
  assert.match(shown.stderr, /removed what an interrupted write .*devices\.json\.\d+\.[0-9a-f]{8}\.tmp/);
  assert.deepEqual(temps(h), []);
});

test('SIGKILL while the node writes pending.json: the next start removes the temporary file, says so, and lists the device', { timeout: 120_000 }, async (t) => {
  const h = home();
  const stranger = home();
  assert.equal((await runCli(['device', 'show'], { home: stranger })).code, 0);
  const port = await freePort();
  const args = ['--mode', 'server', '--listen', `127.0.0.1:${port}`, '--ollama-url', 'http://127.0.0.1:1', '--workers', '1'];
  const node = runOllana(['serve', ...args], { home: h, env: killAt('pending.json:temp-written') });
  t.after(() => node.stop());
  await node.waitFor((l) => l.msg.includes('listening on'), 30_000, 'that it listens');
  // An unknown device knocks: the node notes it in pending.json, and dies halfway through the write.
  const socket = connect({ port, host: '127.0.0.1', rejectUnauthorized: false,
    cert: readFileSync(join(stranger, 'cert.pem')), key: readFileSync(join(stranger, 'key.pem')) });
  socket.on('error', () => undefined);
  socket.end('GET /api/tags HTTP/1.1\r\nHost: x\r\n\r\n');
  const { signal } = await Promise.race([node.exited, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`node not killed: ${JSON.stringify(node.lines)} ${node.stderr.join('\n')}`)), 15_000))]);
  socket.destroy();
  assert.equal(signal, 'SIGKILL');
  allParse(h);
  const [left] = temps(h);
  assert.match(left ?? '', /^pending\.json\.\d+\.[0-9a-f]{8}\.tmp$/);

  const next = await startOllana(args, { home: h });
  t.after(() => next.stop());
  const said = await next.waitFor((l) => l.msg.startsWith('removed what an interrupted write'), 1_000, 'what it removed');
  assert.equal(said.level, 'warn');
  assert.deepEqual(said.removed, [left]);
  assert.deepEqual(temps(h), []);
  const pending = await runCli(['device', 'pending'], { home: h });
  assert.equal(pending.code, 0, pending.stderr);
  assert.equal(pending.stderr, '');
  const socket2 = connect({ port, host: '127.0.0.1', rejectUnauthorized: false,
    cert: readFileSync(join(stranger, 'cert.pem')), key: readFileSync(join(stranger, 'key.pem')) });
  socket2.on('error', () => undefined);
  socket2.end('GET /api/tags HTTP/1.1\r\nHost: x\r\n\r\n');
  t.after(() => socket2.destroy());
  const line = await next.waitFor((l) => l.msg.startsWith('refused device'), 10_000, 'the refusal');
  const now = readPendingChecked(h);
  assert.ok(now.pending.some((p) => p.id === line.device), 'listed by the time the refusal is logged');
});
