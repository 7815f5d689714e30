/** `ollana stop`: SIGTERM the daemon named by the pid file and wait until it has drained and exited. */
import type { ConfigKey } from '../../config/defaults.ts';
import { loadConfig } from '../../config/load.ts';
import { defaultPidFile } from '../../config/paths.ts';
import { parseValue } from '../../config/schema.ts';
import { isOllanaProcess, readPid } from '../../daemon/pid-file.ts';
import { OllanaError } from '../../errors.ts';
import { rmSync } from 'node:fs';

type Env = Readonly<Record<string, string | undefined>>;

export async function stopCommand(flags: Partial<Record<ConfigKey, unknown>>, timeoutText: string | null, env: Env): Promise<number> {
  const { config, dataDir } = loadConfig(flags, env);
  const pidFile = config.pidFile ?? defaultPidFile(env, dataDir);
  const timeoutMs = timeoutText === null ? config.drainTimeoutMs + 10_000
    : parseValue({ key: 'drainTimeoutMs', flag: '--timeout', kind: 'duration', env: [], help: '' }, timeoutText, 'flag') as number;

  const pid = readPid(pidFile);
  if (pid === null) {
    throw new OllanaError('OLN_NOT_RUNNING', `no ollana is running: there is no pid file at ${pidFile} (pass --pid-file if it was started with one)`);
  }
  if (!isOllanaProcess(pid)) {
    rmSync(pidFile, { force: true });
    throw new OllanaError('OLN_NOT_RUNNING', `no ollana is running: pid ${pid} from ${pidFile} is gone; removed the stale pid file`);
  }
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
    if (!isOllanaProcess(pid)) {
      process.stdout.write(`ollana (pid ${pid}) stopped\n`);
      return 0;
    }
  }
  throw new OllanaError('OLN_STOP_TIMEOUT',
    `ollana (pid ${pid}) is still running ${Math.round(timeoutMs / 1000)} s after SIGTERM; wait longer with --timeout, or end it with kill -9 ${pid}`);
}
