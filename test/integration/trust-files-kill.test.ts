/**
 * Issue #22 red team: a process killed (SIGKILL) at every step of writing the identity, devices.json
 * and pending.json. Every file left behind parses, no update is half-applied, nothing blocks the next
 * command (no stale lock), and the next start removes the temporary files and says what it found.
 * The kill points are a test hook (OLLANA_DEBUG_HOOKS=1 with OLLANA_DEBUG_KILL_AT=<file>:<step>).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { after, test } from 'node:test';
import { processRuns } from '../../src/daemon/process-info.ts';
import { deviceIdFromDer } from '../../src/identity/device-id.ts';
import { readDevices, readPendingChecked } from '../../src/identity/devices.ts';
import { loadIdentity } from '../../src/identity/identity.ts';
import { freePort, removeHome, runCli, startOllana, tempHome } from '../helpers/ollana-process.ts';

const homes: string[] = [];
after(() => {
  for (const h of homes) removeHome(h);
});
function home(): string {
  const h = tempHome('ollana-kill-');
  homes.push(h);
  return h;
}

const killAt = (point: string): Record<string, string> => ({ OLLANA_DEBUG_HOOKS: '1', OLLANA_DEBUG_KILL_AT: point });
/**
 * Temporary files left behind: those of a writer that is gone. A live node rewrites its pid file
 * (temp, then rename) after it says it listens, so a temp file named after a live pid is a write in
 * progress, not a leftover.
 */
const temps = (h: string): string[] =>
  readdirSync(h).filter((f) => {
    if (!f.endsWith('.tmp')) return false;
    const writer = /\.(\d+)\.(?:[0-9a-f]+\.)?tmp$/.exec(f);
    return writer === null || !processRuns(Number(writer[1]));
  });

/** Every trust file in `h` reads back (or is absent); throws on anything a reader would refuse. */
function allParse(h: string): void {
  readDevices(h);
  assert.equal(readPendingChecked(h).problem, null);
  loadIdentity(h);
}

test('SIGKILL at each step of making the identity: the files parse, and the next command cleans up and says so', {
  timeout: 120_000,
}, async () => {
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
    for (const f of left)
      assert.match(
        next.stderr,
        new RegExp(`removed what an interrupted write \\(a killed ollana\\) left in .*${f.replace(/\./g, '\\.')}`),
      );
    if (point === 'key.pem:in-place') assert.match(next.stderr, /key\.pem \(without its cert\.pem\)/);
    assert.deepEqual(temps(h), [], `${point}: no temporary file (no private key) left`);
    assert.equal(loadIdentity(h)?.id, shown.id);
    assert.equal(shown.created, point !== 'cert.pem:in-place', `${point}: a complete identity is kept`);
  }
});

test('SIGKILL at each step of `device allow`: devices.json is the old or the new list, never half, and the next allow works', {
  timeout: 120_000,
}, async () => {
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

/** A TLS connection from an unknown device (certificate of `from`), which the node refuses and notes as pending. */
function knock(port: number, from: string): TLSSocket {
  const socket = connect({
    port,
    host: '127.0.0.1',
    rejectUnauthorized: false,
    cert: readFileSync(join(from, 'cert.pem')),
    key: readFileSync(join(from, 'key.pem')),
  });
  socket.on('error', () => undefined);
  socket.end('GET /api/tags HTTP/1.1\r\nHost: x\r\n\r\n');
  return socket;
}

test('SIGKILL at each step of the node writing pending.json: the next start removes what was left, says so, and lists devices again', {
  timeout: 120_000,
}, async (t) => {
  const stranger = home();
  assert.equal((await runCli(['device', 'show'], { home: stranger })).code, 0);
  for (const point of ['pending.json:temp-written', 'pending.json:in-place']) {
    const h = home();
    const port = await freePort();
    const args = [
      '--mode',
      'server',
      '--listen',
      `127.0.0.1:${port}`,
      '--ollama-url',
      'http://127.0.0.1:1',
      '--workers',
      '1',
    ];
    const node = await startOllana(args, { home: h, env: killAt(point) });
    t.after(() => node.stop());
    // An unknown device knocks: the node notes it in pending.json, and dies at that step of the write.
    const socket = knock(port, stranger);
    t.after(() => socket.destroy());
    const timeout = setTimeout(() => node.proc.kill('SIGTERM'), 15_000);
    const { signal } = await node.exited;
    clearTimeout(timeout);
    assert.equal(signal, 'SIGKILL', `${point}: killed by its hook`);
    allParse(h);
    const left = temps(h);
    if (point.endsWith('temp-written')) assert.match(left.join(' '), /^pending\.json\.\d+\.[0-9a-f]{8}\.tmp$/);
    else
      assert.ok(readPendingChecked(h).pending.length === 1 && left.length === 0, `${point}: the new file is in place`);

    const next = await startOllana(args, { home: h });
    t.after(() => next.stop());
    // Said before "listening": what was found is all in the lines read so far.
    const said = next.lines.filter((l) => l.msg.startsWith('removed what an interrupted write'));
    assert.deepEqual(
      said.map((l) => [l.level, l.removed]),
      left.length === 0 ? [] : [['warn', left]],
      point,
    );
    assert.deepEqual(temps(h), []);
    const pending = await runCli(['device', 'pending'], { home: h });
    assert.equal(pending.code, 0, pending.stderr);
    assert.equal(pending.stderr, '', 'a file every reader accepts');
    const again = knock(port, stranger);
    t.after(() => again.destroy());
    const line = await next.waitFor((l) => l.msg.startsWith('refused device'), 10_000, 'the refusal');
    assert.ok(
      readPendingChecked(h).pending.some((p) => p.id === line.device),
      'listed by the time the refusal is logged',
    );
    await next.stop();
  }
});
