/**
 * `ollana doctor` through the real CLI on this machine, with discovery off (runCli's default): nothing
 * goes to the LAN, the hearing check says so. What the other checks find depends on the machine, so
 * this holds the shape: every check once, the Ollama it was pointed at, the exit status agreeing with
 * the report, one line per check for people, and a bad --wait refused with its code. The checks' logic
 * is in test/unit/doctor-checks.test.ts; the faults made for real in test/netns/doctor.test.ts.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import type { DoctorReport } from '../../src/doctor/types.ts';
import { findCheck } from '../../src/doctor/types.ts';
import { startEmulator } from '../../testkit/ollama-emulator.ts';
import { removeHome, runCli, tempHome } from '../helpers/ollana-process.ts';

const homes: string[] = [];
after(() => {
  for (const h of homes) removeHome(h);
});
function home(): string {
  const h = tempHome('ollana-doctor-');
  homes.push(h);
  return h;
}

test('doctor --json: every check once, the Ollama asked, no LAN traffic with discovery off, exit 1 exactly when a check failed', async () => {
  const emu = await startEmulator({ tokens: 1, tokenIntervalMs: 1, ttftMs: 0 });
  try {
    const h = home();
    const made = await runCli(['device', 'show'], { home: h });
    assert.equal(made.code, 0, made.stderr);
    const r = await runCli(['doctor', '--json', '--ollama-url', emu.url], { home: h });
    const report = JSON.parse(r.stdout) as DoctorReport;
    assert.deepEqual(
      report.checks.map((c) => c.id),
      [
        'ollama',
        'ports',
        'firewall',
        'interfaces',
        'multicast-route',
        'hearing',
        'identity',
        'pending',
        'fd-limit',
        'clock',
      ],
    );
    const ollama = findCheck(report, 'ollama');
    assert.equal(ollama?.status, 'ok', ollama?.summary);
    assert.equal(ollama?.details.clientNode, false);
    assert.equal(findCheck(report, 'hearing')?.status, 'skip');
    assert.equal(findCheck(report, 'hearing')?.details.checked, false);
    const identity = findCheck(report, 'identity');
    assert.equal(identity?.status, 'ok', identity?.summary);
    assert.equal(identity?.details.keyMode, '600');
    assert.equal(
      report.ok,
      report.checks.every((c) => c.status !== 'fail'),
    );
    assert.equal(r.code, report.ok ? 0 : 1);

    const text = await runCli(['doctor', '--ollama-url', emu.url], { home: h });
    assert.equal(text.code, r.code);
    const lines = text.stdout.trim().split('\n');
    assert.equal(lines.length, report.checks.length + 1, text.stdout);
    assert.ok(
      lines.slice(0, -1).every((l) => /^(ok {2}|WARN|FAIL|-- {2}) \S/.test(l)),
      text.stdout,
    );
  } finally {
    await emu.close();
  }
});

test('doctor --wait out of range is OLN_BAD_FLAG (exit 2)', async () => {
  const r = await runCli(['doctor', '--wait', '5m'], { home: home() });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /\[OLN_BAD_FLAG\]\n$/);
});
