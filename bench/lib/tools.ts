/**
 * nginx and hey come from Debian. When one is missing the bench installs it with apt-get (saying
 * so), and when that cannot work (not root, no apt, no network) it reports the reason: the systems
 * and scenarios that need the tool are skipped and the report says why. Never fatal.
 */
import { existsSync, readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';

export type ToolName = 'nginx' | 'hey';

export interface ToolState {
  readonly name: ToolName;
  /** Absolute path, or null when unavailable. */
  readonly path: string | null;
  readonly version: string | null;
  /** What happened: "found", "installed with apt-get", or why it is missing. */
  readonly note: string;
}

const SEARCH = ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin', '/sbin', '/bin'];
const INSTALL_TIMEOUT_MS = 5 * 60_000;

function locate(name: string): string | null {
  for (const dir of [...(process.env.PATH ?? '').split(':'), ...SEARCH]) {
    if (dir !== '' && existsSync(`${dir}/${name}`)) return `${dir}/${name}`;
  }
  return null;
}

function versionOf(name: ToolName, path: string): string | null {
  if (name === 'nginx') {
    // nginx prints its version on stderr: "nginx version: nginx/1.22.1"
    const r = spawnSync(path, ['-v'], { encoding: 'utf8', timeout: 5_000 });
    return /nginx\/([\w.]+)/.exec(`${r.stderr}${r.stdout}`)?.[1] ?? null;
  }
  // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own format syntax, not a template
  const r = spawnSync('dpkg-query', ['-W', '-f=${Version}', 'hey'], { encoding: 'utf8', timeout: 5_000 });
  return r.status === 0 && r.stdout.trim() !== '' ? r.stdout.trim() : null;
}

function nginxServicePid(): number | null {
  try {
    const pid = Number(readFileSync('/run/nginx.pid', 'utf8').trim());
    process.kill(pid, 0);
    return pid;
  } catch {
    return null;
  }
}

function aptInstall(packages: readonly string[], log: (msg: string) => void): { ok: boolean; why: string } {
  if (typeof process.getuid === 'function' && process.getuid() !== 0)
    return { ok: false, why: 'not running as root, cannot apt-get install' };
  if (locate('apt-get') === null) return { ok: false, why: 'apt-get not found (not a Debian system?)' };
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const install = (): ReturnType<typeof spawnSync> =>
    spawnSync('apt-get', ['install', '-y', '--no-install-recommends', ...packages], {
      encoding: 'utf8',
      env,
      timeout: INSTALL_TIMEOUT_MS,
    });
  log(`bench: installing ${packages.join(' ')} with apt-get install -y (missing on this machine)`);
  let r = install();
  if (r.status !== 0) {
    log('bench: apt-get install failed; running apt-get update and trying once more');
    spawnSync('apt-get', ['update'], { encoding: 'utf8', env, timeout: INSTALL_TIMEOUT_MS });
    r = install();
  }
  if (r.status === 0) return { ok: true, why: '' };
  const err = `${String(r.stderr ?? '')}`.trim().split('\n').slice(-2).join(' ');
  return {
    ok: false,
    why: `apt-get install ${packages.join(' ')} failed (${r.error?.message ?? `exit ${r.status}`}): ${err}`,
  };
}

/** Finds (and, when `install`, installs) the tools; never throws. */
export function ensureTools(
  names: readonly ToolName[],
  install: boolean,
  log: (msg: string) => void,
): Map<ToolName, ToolState> {
  const out = new Map<ToolName, ToolState>();
  const missing = names.filter((n) => locate(n) === null);
  let installNote = '';
  if (missing.length > 0) {
    if (!install) {
      installNote = 'not installed, and installing was turned off (--no-install)';
    } else {
      const servicePidBefore = nginxServicePid();
      const r = aptInstall(missing, log);
      installNote = r.ok ? 'installed with apt-get' : r.why;
      // Debian starts nginx on port 80 after installing it, unless policy-rc.d forbids it (as in
      // containers). A service we caused must not keep running.
      const servicePid = nginxServicePid();
      if (r.ok && missing.includes('nginx') && servicePid !== null && servicePidBefore === null) {
        spawnSync(locate('nginx') ?? 'nginx', ['-s', 'quit'], { timeout: 10_000 });
        log(`bench: stopped the nginx service (pid ${servicePid}) that the package install started`);
      }
    }
  }
  for (const name of names) {
    const path = locate(name);
    const version = path === null ? null : versionOf(name, path);
    const note = path === null ? installNote || 'not found' : missing.includes(name) ? installNote : 'found';
    out.set(name, { name, path, version, note });
    if (path === null) log(`bench: ${name} is unavailable (${note}); what needs it is skipped and the report says so`);
  }
  return out;
}
