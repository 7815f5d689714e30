/** Where ollana keeps its files, following the XDG base directory conventions. */
import { homedir } from 'node:os';
import { join } from 'node:path';

type Env = Readonly<Record<string, string | undefined>>;

/** Data directory: $OLLANA_HOME, else $XDG_CONFIG_HOME/ollana, else ~/.config/ollana. */
export function defaultDataDir(env: Env): string {
  if (env.OLLANA_HOME) return env.OLLANA_HOME;
  return join(env.XDG_CONFIG_HOME || join(homedir(), '.config'), 'ollana');
}

/** Pid file: in the data directory when OLLANA_HOME pins one, else $XDG_RUNTIME_DIR, else the data dir. */
export function defaultPidFile(env: Env, dataDir: string): string {
  if (!env.OLLANA_HOME && env.XDG_RUNTIME_DIR) return join(env.XDG_RUNTIME_DIR, 'ollana', 'ollana.pid');
  return join(dataDir, 'ollana.pid');
}

/** Daemon log file: in OLLANA_HOME when set, else $XDG_STATE_HOME/ollana, else ~/.local/state/ollana. */
export function defaultLogFile(env: Env, dataDir: string): string {
  if (env.OLLANA_HOME) return join(dataDir, 'ollana.log');
  return join(env.XDG_STATE_HOME || join(homedir(), '.local', 'state'), 'ollana', 'ollana.log');
}
