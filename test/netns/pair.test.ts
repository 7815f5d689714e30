/**
 * Pairing by code across hosts (issue #19 part 2), for real: `ollana pair` run in two network
 * namespaces on one virtual LAN, scripted as an admin would (`--yes --code -`: the expected code read
 * from stdin once shown). The test plays the two people: it reads the code each machine shows and
 * types the other machine's code into each. Every packet stays inside this test's namespaces.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { appendFileSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createLan, netnsTest as test, type Host, type HostProcess } from '../../testkit/netns.ts';
import { MAIN, NODE, client, emulator, madeByThisFile, serve, until } from './lan-nodes.ts';

const MIDDLE = fileURLToPath(new URL('./fixtures/pair-middle.ts', import.meta.url));
const { lans, homes } = madeByThisFile();

function home(): string {
  const h = mkdtempSync(join(tmpdir(), 'ollana-lan-pair-'));
  homes.push(h);
  return h;
}

interface Pairing {
  proc: HostProcess;
  fifo: string;
  home: string;
  host: Host;
}

/**
 * `ollana pair --yes --code -` in `host` (or, with `tty`, plain `ollana pair` on a pseudo-terminal made
 * by util-linux's `script`, as a person runs it), its stdin a FIFO the test writes into.
 */
function pair(host: Host, dataDir: string, tty = false): Pairing {
  const fifo = join(dataDir, 'code.fifo');
  execFileSync('mkfifo', [fifo]);
  const cmd = [NODE, MAIN, 'pair', ...(tty ? [] : ['--yes', '--code', '-']), '--timeout', '60'];
  // <> opens the FIFO read-write: the shell does not wait for a writer, and the test's writes never block.
  const proc = tty
    ? host.spawn('sh', ['-c', 'exec script -qfec "$PAIR_CMD" /dev/null <>"$PAIR_FIFO"'], {
        env: { OLLANA_HOME: dataDir, PAIR_FIFO: fifo, PAIR_CMD: cmd.map((a) => `'${a}'`).join(' ') },
      })
    : host.spawn('sh', ['-c', 'exec "$0" "$@" <>"$PAIR_FIFO"', ...cmd], {
        env: { OLLANA_HOME: dataDir, PAIR_FIFO: fifo },
      });
  return { proc, fifo, home: dataDir, host };
}

async function shownCode(p: Pairing): Promise<string> {
  const line = await p.proc.waitForLine((t) => /^code: [0-9]{6}\r?$/.test(t), 60_000);
  return line.slice('code: '.length, 'code: '.length + 6);
}

async function listed(p: { host: Host; home: string }): Promise<string[]> {
  const r = await p.host.exec(NODE, [MAIN, 'device', 'list', '--json'], 20_000, { env: { OLLANA_HOME: p.home } });
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as { devices: { id: string; state: string }[] }).devices
    .filter((d) => d.state === 'allowed')
    .map((d) => d.id);
}

const lastCode = (p: HostProcess): string | undefined =>
  p.lines
    .map((l) => /\[(OLN_[A-Z_]+)\]/.exec(l.text)?.[1])
    .filter(Boolean)
    .at(-1);

/** Makes `a` deaf to `b` on the pairing port, both ways. */
async function deafen(a: Host, b: Host): Promise<void> {
  const nft = (...args: string[]) => a.exec('nft', args, 10_000);
  await nft('add', 'table', 'inet', 'olnpair');
  await nft('add chain inet olnpair input { type filter hook input priority 0; policy accept; }');
  const r = await nft(
    'add',
    'rule',
    'inet',
    'olnpair',
    'input',
    'ip',
    'saddr',
    b.addr,
    'udp',
    'dport',
    '11437',
    'drop',
  );
  assert.equal(r.code, 0, r.stderr);
}

describe('pairing by code between hosts', () => {
  test('two hosts pair by code; each then lists the other, and the server node serves the client node', {
    timeout: 180_000,
  }, async () => {
    const l = await createLan({ hosts: 2 });
    lans.push(l);
    const [h1, h2] = l.hosts as [Host, Host];
    await emulator(h1);
    const [hs, hc] = [home(), home()];
    const server = await serve(h1, hs, ['--heartbeat', '300ms']);
    await serve(h2, hc, ['--heartbeat', '300ms']);
    const before = await client(h2, 'list');
    assert.ok(!Array.isArray(before.models), 'not served before pairing');

    const a = pair(h1, hs);
    const b = pair(h2, hc);
    const [ca, cb] = await Promise.all([shownCode(a), shownCode(b)]);
    assert.equal(ca, cb, 'both machines show the same code');
    appendFileSync(a.fifo, `${cb}\n`);
    appendFileSync(b.fifo, `${ca}\n`);
    const [ea, eb] = await Promise.all([a.proc.exited, b.proc.exited]);
    assert.equal(ea.code, 0, a.proc.lines.map((x) => x.text).join('\n'));
    assert.equal(eb.code, 0, b.proc.lines.map((x) => x.text).join('\n'));

    const serverId = (JSON.parse(server.line) as { deviceId: string }).deviceId;
    const [la, lb] = await Promise.all([listed(a), listed(b)]);
    assert.equal(la.length, 1);
    assert.deepEqual(lb, [serverId], 'the client node allows the server node');
    const ok = await until(
      'the paired client to be served',
      () => client(h2, 'list'),
      (r) => Array.isArray(r.models),
      15_000,
    );
    assert.ok(ok.value.models.length > 0);
    assert.deepEqual(await client(h2, 'generate', '1'), { ok: 1, failed: 0, errors: [] });
  });

  test('on a terminal the person is asked, and a y pairs; the other side is scripted', {
    timeout: 180_000,
  }, async () => {
    const l = await createLan({ hosts: 2 });
    lans.push(l);
    const [h1, h2] = l.hosts as [Host, Host];
    const a = pair(h1, home(), true);
    const b = pair(h2, home());
    const [ca, cb] = await Promise.all([shownCode(a), shownCode(b)]);
    assert.equal(ca, cb);
    appendFileSync(a.fifo, 'y\n');
    appendFileSync(b.fifo, `${ca}\n`);
    const [ea, eb] = await Promise.all([a.proc.exited, b.proc.exited]);
    assert.equal(ea.code, 0, a.proc.lines.map((x) => x.text).join('\n'));
    assert.equal(eb.code, 0, b.proc.lines.map((x) => x.text).join('\n'));
    assert.ok(
      a.proc.lines.some((x) => x.text.includes(`show ${ca}? Allow it? [y/N]`)),
      'the person was asked, with the code',
    );
    const [la, lb] = await Promise.all([listed(a), listed(b)]);
    assert.equal(la.length, 1);
    assert.equal(lb.length, 1);
    assert.notEqual(la[0], lb[0], 'each allows the other');
  });

  test('a wrong code on one side refuses on both, and nothing is allowed', { timeout: 180_000 }, async () => {
    const l = await createLan({ hosts: 2 });
    lans.push(l);
    const [h1, h2] = l.hosts as [Host, Host];
    const a = pair(h1, home());
    const b = pair(h2, home());
    const [ca, cb] = await Promise.all([shownCode(a), shownCode(b)]);
    assert.equal(ca, cb);
    const wrong = String((Number(ca) + 1) % 1_000_000).padStart(6, '0');
    appendFileSync(a.fifo, `${wrong}\n`);
    appendFileSync(b.fifo, `${ca}\n`);
    const [ea, eb] = await Promise.all([a.proc.exited, b.proc.exited]);
    assert.equal(ea.code, 20);
    assert.equal(lastCode(a.proc), 'OLN_PAIR_REFUSED');
    assert.equal(eb.code, 20, 'the side given the right code learns the other refused');
    assert.equal(lastCode(b.proc), 'OLN_PAIR_REFUSED');
    assert.deepEqual(await listed(a), []);
    assert.deepEqual(await listed(b), []);
  });

  test('alone on the LAN: OLN_PAIR_TIMEOUT once --timeout has passed, nothing allowed', {
    timeout: 120_000,
  }, async () => {
    const l = await createLan({ hosts: 1 });
    lans.push(l);
    const [h1] = l.hosts as [Host];
    const dataDir = home();
    const r = await h1.exec(NODE, [MAIN, 'pair', '--yes', '--code', '123456', '--timeout', '2'], 60_000, {
      env: { OLLANA_HOME: dataDir },
    });
    assert.equal(r.code, 19, r.stderr);
    assert.match(r.stderr, /\[OLN_PAIR_TIMEOUT\]\n$/);
    assert.deepEqual(await listed({ host: h1, home: dataDir }), []);
  });

  test('a third host in the middle, with its own certificate toward each: the codes differ, both refuse, nobody is allowed', {
    timeout: 180_000,
  }, async () => {
    const l = await createLan({ hosts: 3 });
    lans.push(l);
    const [h1, h2, h3] = l.hosts as [Host, Host, Host];
    // The attacker controls the path: A and B hear only it.
    await deafen(h1, h2);
    await deafen(h2, h1);
    const m = h3.spawn(NODE, [MIDDLE, h1.addr, h2.addr]);
    await m.waitForLine((t) => t.includes('listening'), 20_000);
    const a = pair(h1, home());
    const b = pair(h2, home());
    const [ca, cb] = await Promise.all([shownCode(a), shownCode(b)]);
    // A and B each see the middle host, not each other.
    const peerOf = (p: Pairing) => p.proc.lines.find((x) => x.text.startsWith('the other machine:'))?.text ?? '';
    assert.ok(peerOf(a).includes(h3.addr), peerOf(a));
    assert.ok(peerOf(b).includes(h3.addr), peerOf(b));
    // The middle host had to commit to its certificate and nonce before it saw either victim's nonce,
    // so it cannot steer the two codes to match (1 in a million by luck).
    assert.notEqual(ca, cb, 'the codes differ');
    appendFileSync(a.fifo, `${cb}\n`);
    appendFileSync(b.fifo, `${ca}\n`);
    const [ea, eb] = await Promise.all([a.proc.exited, b.proc.exited]);
    assert.equal(ea.code, 20);
    assert.equal(eb.code, 20);
    assert.deepEqual(await listed(a), []);
    assert.deepEqual(await listed(b), []);
    const results = await until(
      'the middle host to give up on both',
      async () => m.lines.filter((x) => x.text.includes('"result"')).map((x) => JSON.parse(x.text).result),
      (r) => r.length === 2,
      20_000,
    );
    assert.deepEqual(results.value, ['OLN_PAIR_REFUSED', 'OLN_PAIR_REFUSED']);
  });

  test('a third host in the middle that swaps in its own certificate after the commitments: both end with OLN_PAIR_MISMATCH, nobody is allowed', {
    timeout: 180_000,
  }, async () => {
    const l = await createLan({ hosts: 3 });
    lans.push(l);
    const [h1, h2, h3] = l.hosts as [Host, Host, Host];
    await deafen(h1, h2);
    await deafen(h2, h1);
    const m = h3.spawn(NODE, [MIDDLE, h1.addr, h2.addr, 'substitute']);
    await m.waitForLine((t) => t.includes('listening'), 20_000);
    const a = pair(h1, home());
    const b = pair(h2, home());
    const [ea, eb] = await Promise.all([a.proc.exited, b.proc.exited]);
    assert.equal(ea.code, 22, a.proc.lines.map((x) => x.text).join('\n'));
    assert.equal(lastCode(a.proc), 'OLN_PAIR_MISMATCH');
    assert.equal(eb.code, 22, b.proc.lines.map((x) => x.text).join('\n'));
    assert.equal(lastCode(b.proc), 'OLN_PAIR_MISMATCH');
    assert.ok(
      m.lines.some((x) => x.text.includes('"substituted"')),
      'the middle host did swap a reveal',
    );
    assert.ok(!a.proc.lines.some((x) => /^code: /.test(x.text)), 'no code was shown');
    assert.deepEqual(await listed(a), []);
    assert.deepEqual(await listed(b), []);
  });
});
