/**
 * The node's local control endpoint, for stopping it where signals are missing (Windows, or
 * OLLANA_NO_SIGNALS=1): HTTP over a Unix socket beside the pid file (ollana.pid: ollana.control.sock) (a named pipe on Windows), guarded
 * by a token the node writes to its data directory (0600) at start. Only a user who can read the data
 * directory can stop the node; on Unix the socket itself is 0600 too.
 *
 * POST /ollana/v1/control/stop with `Authorization: Bearer <token>` answers 202 at once with an
 * NDJSON line {"state":"stopping","pid":N}, and a second line {"state":"stopped","pid":N,"cut":N} once
 * the node has drained, right before it exits.
 */
import { createHash } from 'node:crypto';
import { posix, win32 } from 'node:path';

export const CONTROL_STOP_PATH = '/ollana/v1/control/stop';
export const CONTROL_TOKEN_FILE = 'control.token';

/** One line of the stop answer. */
export interface ControlLine {
  readonly state: 'stopping' | 'stopped';
  readonly pid: number;
  /** In-flight requests the drain timeout cut (on "stopped"). */
  readonly cut?: number;
}

/** Where the node that owns `pidFile` listens for control requests on `os`. */
export function controlAddress(pidFile: string, os: NodeJS.Platform): string {
  if (os === 'win32') {
    const key = createHash('sha256').update(win32.resolve(pidFile).toLowerCase()).digest('hex').slice(0, 24);
    return `\\\\.\\pipe\\ollana-${key}`;
  }
  return posix.join(posix.dirname(pidFile), `${posix.basename(pidFile).replace(/\.pid$/, '')}.control.sock`);
}

/** The token file in the data directory. */
export function controlTokenFile(dataDir: string, os: NodeJS.Platform): string {
  return (os === 'win32' ? win32 : posix).join(dataDir, CONTROL_TOKEN_FILE);
}

/**
 * Unix socket paths are limited (104 bytes on macOS, 108 on Linux, with the terminating NUL); a longer
 * one cannot be bound. Named pipes have no such limit.
 */
export function addressFits(address: string, os: NodeJS.Platform): boolean {
  return os === 'win32' || Buffer.byteLength(address) < (os === 'darwin' ? 104 : 108);
}
