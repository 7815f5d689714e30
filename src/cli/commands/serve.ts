/** `ollana serve`: load the settings, take the pid file, start the supervisor, stop it on a signal. */
import { accessSync, constants, mkdirSync } from 'node:fs';
import { Supervisor } from '../../actors/supervisor.ts';
import type { ConfigKey } from '../../config/defaults.ts';
import { loadConfig } from '../../config/load.ts';
import { defaultLogFile, defaultPidFile } from '../../config/paths.ts';
import { controlAddress, controlTokenFile } from '../../daemon/control.ts';
import { ControlServer } from '../../daemon/control-server.ts';
import { daemonize, isDaemonChild, reportToParent } from '../../daemon/daemonize.ts';
import { takePidFile } from '../../daemon/pid-file.ts';
import { OllanaError, errorMessage, isOllanaError } from '../../errors.ts';
import { dirError } from '../../identity/data-dir.ts';
import { loadOrCreateIdentity } from '../../identity/identity.ts';
import { createLogger, type LogSettings } from '../../log.ts';
import { ownModule } from '../../module-file.ts';
import { hostPlatform } from '../../platform/platform.ts';
import { planWorkers } from '../../platform/workers.ts';

type Env = Readonly<Record<string, string | undefined>>;

const MAIN_SCRIPT = ownModule('../../main.ts', import.meta.url);

function ensureDataDir(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    accessSync(dir, constants.W_OK);
  } catch (err) {
    throw dirError(`the data directory ${dir}`, 'use', err);
  }
}

export async function serveCommand(
  flags: Partial<Record<ConfigKey, unknown>>,
  argv: readonly string[],
  env: Env,
  version: string,
): Promise<number> {
  const platform = hostPlatform(env);
  const loaded = loadConfig(flags, env);
  const { dataDir } = loaded;
  const plan = planWorkers(loaded.config, loaded.origins.workers, platform.os);
  const config = { ...loaded.config, workers: plan.workers };
  ensureDataDir(dataDir);
  const pidFile = config.pidFile ?? defaultPidFile(env, dataDir, platform);
  const child = isDaemonChild(env);

  if (config.daemon && !child) {
    const logFile = config.logFile ?? defaultLogFile(env, dataDir, platform);
    const ready = await daemonize(MAIN_SCRIPT, argv, logFile, pidFile);
    process.stdout.write(
      `ollana ${ready.role} node started in the background (pid ${ready.pid}), listening on ${ready.url}\n` +
        `  log: ${logFile}\n  pid file: ${pidFile}\n  stop it with: ollana stop\n`,
    );
    return 0;
  }

  // A daemon child's stdout already is the log file; in the foreground, a terminal gets pretty lines.
  const logSettings: LogSettings = {
    level: config.logLevel,
    file: child ? null : config.logFile,
    pretty: !child && config.logFile === null && process.stdout.isTTY === true,
  };
  const log = createLogger(logSettings);
  if (plan.note !== null) log.info({ workers: plan.workers, os: platform.os }, plan.note);
  let pid: ReturnType<typeof takePidFile> | null = null;
  let control: ControlServer | null = null;
  let supervisor: Supervisor;

  // The handlers are in place before anything starts: a stop asked for while the node starts (before
  // or right after its "listening" line) is remembered and carried out once it has started, instead of
  // meeting Node's default action (no drain, the pid file left behind). A second interrupt, started
  // or not, exits at once.
  let stopping: { readonly reason: string; readonly status: number } | null = null;
  let carryOut: ((reason: string, status: number) => void) | null = null;
  const requestStop = (reason: string, status: number): void => {
    if (stopping !== null) {
      if (reason === 'SIGINT') {
        log.warn('second interrupt: exiting at once');
        pid?.release();
        process.exit(130);
      }
      return;
    }
    stopping = { reason, status };
    carryOut?.(reason, status);
  };
  process.on('SIGTERM', () => requestStop('SIGTERM', 0));
  process.on('SIGINT', () => requestStop('SIGINT', 0));
  // A daemon has no terminal; a hang-up must not kill it.
  process.on('SIGHUP', () => {
    if (!child) requestStop('SIGHUP', 0);
  });

  try {
    const { identity, created, removed } = await loadOrCreateIdentity(dataDir);
    if (removed.length > 0)
      log.warn(
        { dataDir, removed },
        `removed what an interrupted write (a killed ollana) left in ${dataDir}: ${removed.join(', ')}`,
      );
    if (created)
      log.info(
        { deviceId: identity.id, cert: identity.certFile },
        `created this node's identity: device id ${identity.id}`,
      );
    supervisor = new Supervisor({
      config,
      log,
      logSettings,
      version,
      identity,
      dataDir,
      debugHooks: env.OLLANA_DEBUG_HOOKS === '1',
    });
    pid = takePidFile(pidFile, { drainTimeoutMs: config.drainTimeoutMs });
    for (const note of pid.notes) log.warn({ pidFile }, note);
    const started = await supervisor.start();
    const url = new URL(started.url);
    pid.setListen(`${url.hostname}:${url.port || (url.protocol === 'https:' ? '443' : '80')}`);
    control = await ControlServer.start({
      address: controlAddress(pidFile, platform.os),
      tokenFile: controlTokenFile(dataDir, platform.os),
      os: platform.os,
      log,
      onStop: () => requestStop('stop request', 0),
    });
    if (child) await reportToParent({ type: 'daemon.ready', pid: process.pid, role: started.role, url: started.url });
  } catch (err) {
    await control?.close(0);
    pid?.release();
    if (child) {
      const e = isOllanaError(err) ? err : new OllanaError('OLN_INTERNAL', errorMessage(err), { cause: err });
      log.error({ err: e, code: e.code }, e.message);
      await reportToParent({ type: 'daemon.failed', error: e.toData() });
    }
    throw err;
  }

  return new Promise<number>((resolve) => {
    carryOut = (reason, status) => {
      // A drain that had to cut requests leaves a report for `ollana stop`, before the pid file goes.
      void supervisor
        .stop(reason)
        .then(
          () => {
            if (supervisor.drainCut > 0) pid?.reportCut(supervisor.drainCut);
          },
          (err: unknown) => log.error({ err }, `stopping failed: ${errorMessage(err)}`),
        )
        .finally(async () => {
          await control?.close(supervisor.drainCut);
          pid?.release();
          resolve(status);
        });
    };
    supervisor.on('fatal', (err: OllanaError) => {
      log.error({ err, code: err.code }, `giving up: ${err.message}`);
      requestStop('fatal error', err.exitCode);
    });
    if (stopping !== null) carryOut(stopping.reason, stopping.status);
  });
}
