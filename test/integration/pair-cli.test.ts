/**
 * `ollana pair`'s refusals before it sends anything, through the real CLI: a blind --yes, a code
 * that is not six digits, bad --timeout and --port values, and no terminal to ask on without --code.
 * (The exchange itself runs between network namespaces: test/netns/pair.test.ts.)
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { readDevices } from '../../src/identity/devices.ts';
import { removeHome, runCli, tempHome } from '../helpers/ollana-process.ts';

const homes: string[] = [];
after(() => {
  for (const h of homes) removeHome(h);
});
function home(): string {
  const h = tempHome('ollana-pair-cli-');
  homes.push(h);
  return h;
}

const codeOf = (stderr: string): string | undefined => /\[(OLN_[A-Z_]+)\]\n$/.exec(stderr)?.[1];

test('--yes without --code is refused: a blind yes would pair with whichever machine answered', async () => {
  const h = home();
  const r = await runCli(['pair', '--yes'], { home: h });
  assert.equal(r.code, 2);
  assert.equal(codeOf(r.stderr), 'OLN_BAD_FLAG');
  assert.equal(r.stdout, '');
  assert.deepEqual(readDevices(h), []);
});

test('bad --code, --timeout and --port values: OLN_BAD_FLAG, exit 2', async () => {
  for (const args of [
    ['--code', '12345'],
    ['--code', '12345a'],
    ['--code', '1234567'],
    ['--code', '-', '--timeout', '0'],
    ['--code', '-', '--timeout', 'soon'],
    ['--code', '-', '--port', '70000'],
  ]) {
    const r = await runCli(['pair', ...args], { home: home() });
    assert.equal(r.code, 2, args.join(' '));
    assert.equal(codeOf(r.stderr), 'OLN_BAD_FLAG', `${args.join(' ')}: ${r.stderr}`);
  }
});

test('without a terminal and without --code: OLN_USAGE, saying how to script it', async () => {
  const r = await runCli(['pair'], { home: home() });
  assert.equal(r.code, 2);
  assert.equal(codeOf(r.stderr), 'OLN_USAGE');
});

test('pair is listed in --help with its flags', async () => {
  const top = await runCli(['--help'], { home: home() });
  assert.match(top.stdout, /\bpair\b/);
  const help = await runCli(['pair', '--help'], { home: home() });
  assert.equal(help.code, 0);
  for (const flag of ['--code', '--yes', '--timeout', '--port']) assert.ok(help.stdout.includes(flag), flag);
});
