/**
 * Every difference between the operating systems ollana runs on, in one place: which OS this is, its
 * environment and home directory (injected, so that unit tests run each OS's branch on Linux), and
 * what that OS offers (SO_REUSEPORT, POSIX signals).
 */
import { homedir } from 'node:os';

type Env = Readonly<Record<string, string | undefined>>;

export interface Platform {
  /** process.platform's value: 'linux', 'darwin', 'win32', ... */
  readonly os: NodeJS.Platform;
  readonly env: Env;
  /** The user's home directory. */
  readonly home: string;
}

const KNOWN: readonly NodeJS.Platform[] = ['aix', 'darwin', 'freebsd', 'linux', 'openbsd', 'sunos', 'win32'];

/**
 * The platform this process runs on. With OLLANA_DEBUG_HOOKS=1, OLLANA_TEST_PLATFORM names another
 * OS whose rules (paths, workers, stop) the process then follows: tests on Linux start real nodes
 * under macOS's or Windows' rules.
 */
export function hostPlatform(env: Env = process.env): Platform {
  const forced = env.OLLANA_DEBUG_HOOKS === '1' ? env.OLLANA_TEST_PLATFORM : undefined;
  const os =
    forced !== undefined && (KNOWN as readonly string[]).includes(forced)
      ? (forced as NodeJS.Platform)
      : process.platform;
  return { os, env, home: homedir() };
}

/**
 * Whether a TCP server may listen with `reusePort: true` (SO_REUSEPORT, which lets every proxy worker
 * thread have its own socket on the port). Node's net docs list Linux 3.9+, DragonFlyBSD 3.6+,
 * FreeBSD 12.0+, Solaris 11.4 and AIX 7.2.5+; elsewhere (macOS, Windows) Node raises an error for the
 * option (nodejs/node#61018).
 */
export function hasReusePort(os: NodeJS.Platform): boolean {
  return os === 'linux' || os === 'freebsd' || os === 'sunos' || os === 'aix';
}

/**
 * Whether `ollana stop` can ask a node to stop with SIGTERM. Windows has no signals between processes
 * (Node's process.kill ends the process at once there, with no drain); OLLANA_NO_SIGNALS=1 makes any
 * OS behave so, for tests and for systems where signals do not reach the node (a container's pid 1).
 * Without signals, stop uses the node's control endpoint (daemon/control-server.ts).
 */
export function hasSignals(p: Platform): boolean {
  return p.os !== 'win32' && p.env.OLLANA_NO_SIGNALS !== '1';
}

/** The OS's name for people. */
export function osName(os: NodeJS.Platform): string {
  return os === 'darwin' ? 'macOS' : os === 'win32' ? 'Windows' : os === 'linux' ? 'Linux' : os;
}
