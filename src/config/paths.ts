/** Where ollana keeps its files: the data directory, pid file and log file of this OS (platform/dirs.ts). */
import { platformDirs } from '../platform/dirs.ts';
import { hostPlatform, type Platform } from '../platform/platform.ts';

type Env = Readonly<Record<string, string | undefined>>;

/** Data directory: $OLLANA_HOME, else the OS's place (XDG on Linux). */
export function defaultDataDir(env: Env, platform: Platform = hostPlatform(env)): string {
  return platformDirs(platform).data;
}

/** Pid file: in the data directory when OLLANA_HOME pins one, else the OS's runtime place. */
export function defaultPidFile(env: Env, dataDir: string, platform: Platform = hostPlatform(env)): string {
  return platformDirs(platform, dataDir).pidFile;
}

/** Daemon log file: in OLLANA_HOME when set, else the OS's place for logs. */
export function defaultLogFile(env: Env, dataDir: string, platform: Platform = hostPlatform(env)): string {
  return platformDirs(platform, dataDir).logFile;
}
