/**
 * Run by `npm test` before the tests (pretest): the network-namespace tests need root, `ip`
 * (iproute2), `unshare` (util-linux) and `nft` (nftables); the metrics test needs Prometheus'
 * `promtool` (Debian's `prometheus` package: about 19 MB to download, 96 MB installed, 20-40 s; the
 * only Debian package that ships promtool); the Wireshark dissector's test needs `tshark` (with
 * dumpcap, to capture inside a namespace); the service test needs `systemd-analyze` (systemd, ~3 MB,
 * present on most Debian systems already). As root on a machine with apt-get, the
 * missing ones are installed; otherwise this says what is missing, and those tests are reported
 * skipped one by one with the reason (testkit/netns.ts netnsTest), never left out of the count.
 * OLLANA_TEST_NO_INSTALL=1 turns the installing off.
 */
import { execFileSync } from 'node:child_process';

const TOOLS = [
  { command: 'ip', pkg: 'iproute2' },
  { command: 'unshare', pkg: 'util-linux' },
  { command: 'nft', pkg: 'nftables' },
  { command: 'promtool', pkg: 'prometheus' },
  { command: 'tshark', pkg: 'tshark' },
  // test/integration/service-cli.test.ts checks the units `ollana service` writes with `systemd-analyze verify`.
  { command: 'systemd-analyze', pkg: 'systemd' },
] as const;

/**
 * Answers tshark's install-time question (may non-root users capture?) so apt never waits on it: no,
 * the tests capture as root.
 */
const DEBCONF_PRESEED = 'wireshark-common wireshark-common/install-setuid boolean false\n';

function installed(command: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${command}`], { stdio: 'ignore', timeout: 5_000 });
    return true;
  } catch {
    return false;
  }
}

function say(text: string): void {
  process.stdout.write(`npm test: ${text}\n`);
}

function main(): void {
  if (process.platform !== 'linux') {
    say('the network-namespace tests need Linux; they will be reported as skipped');
    return;
  }
  const missing = TOOLS.filter((t) => !installed(t.command));
  if (missing.length === 0) return;
  const pkgs = missing.map((t) => t.pkg);
  const what = missing.map((t) => `\`${t.command}\` (${t.pkg})`).join(', ');
  const root = process.getuid?.() === 0;
  if (!root || process.env.OLLANA_TEST_NO_INSTALL === '1' || !installed('apt-get')) {
    const why = !root
      ? 'this is not root'
      : process.env.OLLANA_TEST_NO_INSTALL === '1'
        ? 'OLLANA_TEST_NO_INSTALL=1'
        : 'there is no apt-get';
    say(
      `the network-namespace, metrics and dissector tests need ${what}, which ${missing.length === 1 ? 'is' : 'are'} missing, and ${why}: ` +
        `the network-namespace tests will be reported as skipped, the metrics test fails without promtool. To run them: as root, \`apt-get install ${pkgs.join(' ')}\` (or your system's packages), then \`npm test\``,
    );
    return;
  }
  say(`installing ${pkgs.join(' ')}: the network-namespace, metrics and dissector tests need ${what}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  try {
    if (pkgs.includes('tshark') && installed('debconf-set-selections')) {
      execFileSync('debconf-set-selections', [], {
        input: DEBCONF_PRESEED,
        stdio: ['pipe', 'ignore', 'inherit'],
        timeout: 30_000,
      });
    }
    execFileSync('apt-get', ['update', '-qq'], { stdio: ['ignore', 'ignore', 'inherit'], env, timeout: 300_000 });
    execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...pkgs], {
      stdio: ['ignore', 'ignore', 'inherit'],
      env,
      timeout: 600_000,
    });
  } catch (err) {
    say(
      `could not install ${pkgs.join(' ')} (${(err as Error).message.split('\n')[0]}); the tests that need them will be reported as skipped`,
    );
  }
}

main();
