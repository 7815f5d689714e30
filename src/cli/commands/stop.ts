/**
 * `ollana stop`: SIGTERM the node named by the pid file (where there are no signals: a stop request to
 * its control endpoint, daemon/control.ts), and return only once it has exited and its port is free,
 * so that whatever runs next (a script, a new `ollana serve`) finds it gone.
 */
import { readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import type { ConfigKey } from '../../config/defaults.ts';
import { loadConfig } from '../../config/load.ts';
import { defaultPidFile } from '../../config/paths.ts';
import { parseValue } from '../../config/schema.ts';
import { controlAddress, controlTokenFile } from '../../daemon/control.ts';
import { askToStop } from '../../daemon/control-client.ts';
import { inspectPidFile, parsePidRecord, takeDrainReport, writerState, type PidRecord } from '../../daemon/pid-file.ts';
import { processStart } from '../../daemon/process-info.ts';
import { OllanaError, systemCode } from '../../errors.ts';
import { hasSignals, hostPlatform } from '../../platform/platform.ts';

type Env = Readonly<Record<string, string | undefined>>;

/** How much longer than the node's drain timeout `stop` waits by default: the rest of its shutdown. */
const EXIT_MARGIN_MS = 10_000;
/** How long a freed port may take to be seen free (it is at once on Linux: the process is gone). */
const PORT_FREE_DEADLINE_MS = 5_000;
const POLL_MS = 25;
/** How long an exited node may stay a zombie before `stop` reports it stopped all the same. */
const REAP_GRACE_MS = 5_000;

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Removes the pid file if it still holds `record` (the node was killed before it could remove it). */
function removeIfStill(pidFile: string, record: PidRecord): void {
  try {
    const now = parsePidRecord(readFileSync(pidFile, 'utf8'));
    if (now !== null && now.pid === record.pid && now.token === record.token) rmSync(pidFile, { force: true });
  } catch {
    // Gone already: the node removed it itself.
  }
}

/** Whether the pid still names the record's process, even as a zombie. */
function pidHeldBy(record: PidRecord): boolean {
  if (record.start !== null) return processStart(record.pid) === record.start;
  try {
    process.kill(record.pid, 0);
    return true;
  } catch (err) {
    return systemCode(err) === 'EPERM';
  }
}

/** Whether host:port can be listened on again; null when this user cannot tell (a privileged port). */
async function portFree(listen: string): Promise<boolean | null> {
  let host: string;
  let port: number;
  try {
    const url = new URL(`http://${listen}`);
    host = url.hostname.replace(/^\[(.*)\]$/, '$1');
    port = Number(url.port);
  } catch {
    return null;
  }
  const server = createServer();
  return new Promise((resolve) => {
    server.once('error', (err) => resolve(systemCode(err) === 'EADDRINUSE' ? false : null));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}

export async function stopCommand(
  flags: Partial<Record<ConfigKey, unknown>>,
  timeoutText: string | null,
  env: Env,
): Promise<number> {
  const platform = hostPlatform(env);
  const { config, dataDir } = loadConfig(flags, env);
  const pidFile = config.pidFile ?? defaultPidFile(env, dataDir, platform);
  const timeoutFlag =
    timeoutText === null
      ? null
      : (parseValue(
          { key: 'drainTimeoutMs', flag: '--timeout', kind: 'duration', env: [], help: '' },
          timeoutText,
          'flag',
        ) as number);
  const found = inspectPidFile(pidFile);
  switch (found.kind) {
    case 'none':
      throw new OllanaError(
        'OLN_NOT_RUNNING',
        `no ollana is running: there is no pid file at ${pidFile} (pass --pid-file if it was started with one)`,
      );
    case 'unreadable':
      throw new OllanaError(
        'OLN_NOT_RUNNING',
        `no ollana is running: ${pidFile} holds no pid (it begins ${JSON.stringify(found.text)}); remove it, or pass the right --pid-file`,
      );
    case 'gone':
      removeIfStill(pidFile, found.record);
      throw new OllanaError(
        'OLN_NOT_RUNNING',
        `no ollana is running: pid ${found.record.pid} from ${pidFile} is not running any more; removed the stale pid file`,
      );
    case 'other':
      removeIfStill(pidFile, found.record);
      throw new OllanaError(
        'OLN_NOT_RUNNING',
        `no ollana is running: pid ${found.record.pid} from ${pidFile} is a different process now (not the ollana that wrote the file); ` +
          'left it alone and removed the stale pid file',
      );
    case 'running':
      break;
  }
  const { record } = found;
  const drainMs = record.drainTimeoutMs ?? config.drainTimeoutMs;
  // By default as long as the node's own drain timeout (from its pid file) and the rest of its shutdown.
  const timeoutMs = timeoutFlag ?? drainMs + EXIT_MARGIN_MS;

  const bySignal = hasSignals(platform);
  if (bySignal) {
    try {
      process.kill(record.pid, 'SIGTERM');
    } catch (err) {
      if (systemCode(err) !== 'ESRCH') throw err; // it ended between the check and the signal: nothing to wait for
    }
  } else {
    // Answers once the node has drained, right before it exits; the wait below sees it go.
    await askToStop(controlAddress(pidFile, platform.os), controlTokenFile(dataDir, platform.os), timeoutMs);
  }
  // Polled: Node has no pidfd to wait on a process that is not its child. The deadline bounds it.
  const deadline = Date.now() + timeoutMs;
  while (writerState(record) === 'running') {
    if (Date.now() >= deadline) {
      throw new OllanaError(
        'OLN_STOP_TIMEOUT',
        `ollana (pid ${record.pid}) is still running ${Math.round(timeoutMs / 1000)} s after ${bySignal ? 'SIGTERM' : 'the stop request'}; ` +
          `wait longer with --timeout, or end it with ${platform.os === 'win32' ? `taskkill /F /PID ${record.pid}` : `kill -9 ${record.pid}`}`,
      );
    }
    await pause(POLL_MS);
  }
  // It has exited. Its parent (init, which adopted the daemon) still has to reap it: until then the pid
  // exists as a zombie, and a script that checks it right after this command (kill -0, ps) would see
  // it. A good init reaps at once; one that never does must not hold `stop` up, hence the short wait.
  const reapDeadline = Date.now() + REAP_GRACE_MS;
  while (pidHeldBy(record) && Date.now() < reapDeadline) await pause(POLL_MS);
  removeIfStill(pidFile, record);

  if (record.listen !== null) {
    const portDeadline = Date.now() + PORT_FREE_DEADLINE_MS;
    let free = await portFree(record.listen);
    while (free === false && Date.now() < portDeadline) {
      await pause(POLL_MS);
      free = await portFree(record.listen);
    }
    if (free === false) {
      process.stderr.write(
        `ollana: ollana (pid ${record.pid}) has exited, but ${record.listen} is still in use by another program\n`,
      );
    }
  }

  const cut = takeDrainReport(pidFile, record.token);
  if (cut !== null) {
    throw new OllanaError(
      'OLN_DRAIN_CUT',
      `ollana (pid ${record.pid}) stopped, but its drain timeout (${drainMs / 1000} s) ran out first: ` +
        `${cut} in-flight request${cut === 1 ? ' was' : 's were'} cut; start it with a longer --drain-timeout to let them finish`,
      { details: { pid: record.pid, cut } },
    );
  }
  process.stdout.write(`ollana (pid ${record.pid}) stopped\n`);
  return 0;
}
