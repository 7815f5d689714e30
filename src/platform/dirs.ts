/**
 * Where ollana keeps its files on each OS. OLLANA_HOME, when set, holds everything (data, pid file,
 * log); otherwise:
 *   Linux (and other Unix): XDG: data $XDG_CONFIG_HOME/ollana (~/.config/ollana), log
 *     $XDG_STATE_HOME/ollana (~/.local/state/ollana), pid file $XDG_RUNTIME_DIR/ollana, else the data dir;
 *   macOS: data ~/Library/Application Support/ollana, log ~/Library/Logs/ollana, pid file in the data
 *     dir (macOS has no per-user runtime directory that lives as long as a login);
 *   Windows: data %APPDATA%\ollana (roams with the profile: identity and trust), log and pid file
 *     %LOCALAPPDATA%\ollana (this machine only).
 * Paths are joined with the target OS's separator, so Windows' come out right when tested on Linux.
 */
import { posix, win32 } from 'node:path';
import type { Platform } from './platform.ts';

export interface PlatformDirs {
  /** Identity, trust files, config.json, the control token. */
  readonly data: string;
  /** The daemon's log file. */
  readonly logFile: string;
  /** The pid file (the control socket sits beside it). */
  readonly pidFile: string;
}

/** The OS's places; `dataDir` (the resolved data directory, e.g. from --data-dir) replaces the default one. */
export function platformDirs(p: Platform, dataDir: string | null = null): PlatformDirs {
  if (p.env.OLLANA_HOME) {
    const path = p.os === 'win32' ? win32 : posix;
    const data = dataDir ?? p.env.OLLANA_HOME;
    return { data, logFile: path.join(data, 'ollana.log'), pidFile: path.join(data, 'ollana.pid') };
  }
  return ownPlaces(p, dataDir);
}

/** The OS's own places; `data` replaces the default data directory where one was given. */
function ownPlaces(p: Platform, data: string | null): PlatformDirs {
  const env = p.env;
  if (p.os === 'win32') {
    const roaming = env.APPDATA || win32.join(p.home, 'AppData', 'Roaming');
    const local = env.LOCALAPPDATA || win32.join(p.home, 'AppData', 'Local');
    const dir = win32.join(local, 'ollana');
    return {
      data: data ?? win32.join(roaming, 'ollana'),
      logFile: win32.join(dir, 'logs', 'ollana.log'),
      pidFile: win32.join(dir, 'ollana.pid'),
    };
  }
  if (p.os === 'darwin') {
    const d = data ?? posix.join(p.home, 'Library', 'Application Support', 'ollana');
    return {
      data: d,
      logFile: posix.join(p.home, 'Library', 'Logs', 'ollana', 'ollana.log'),
      pidFile: posix.join(d, 'ollana.pid'),
    };
  }
  const d = data ?? posix.join(env.XDG_CONFIG_HOME || posix.join(p.home, '.config'), 'ollana');
  return {
    data: d,
    logFile: posix.join(env.XDG_STATE_HOME || posix.join(p.home, '.local', 'state'), 'ollana', 'ollana.log'),
    pidFile: env.XDG_RUNTIME_DIR
      ? posix.join(env.XDG_RUNTIME_DIR, 'ollana', 'ollana.pid')
      : posix.join(d, 'ollana.pid'),
  };
}
