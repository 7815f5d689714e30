/**
 * `ollana serve -d`: the parent starts the real node as a detached child with its output in the log
 * file and an IPC channel, and returns only when the child says it listens (exit 0) or says why it
 * could not (exit with that error's status). The child is this same program with OLLANA_DAEMON_CHILD=1.
 */
import { spawn } from 'node:child_process';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { OllanaError, type OllanaErrorCode } from '../errors.ts';
import type { DaemonReport } from '../protocol/daemon.ts';

export const DAEMON_CHILD_ENV = 'OLLANA_DAEMON_CHILD';
const READY_DEADLINE_MS = 60_000;

export function isDaemonChild(env: Readonly<Record<string, string | undefined>>): boolean {
  return env[DAEMON_CHILD_ENV] === '1';
}

/** In the child: tell the waiting parent how start-up went, then let go of the channel. */
export function reportToParent(report: DaemonReport): Promise<void> {
  return new Promise((resolve) => {
    if (typeof process.send !== 'function' || !process.connected) {
      resolve();
      return;
    }
    process.send(report, undefined, {}, () => {
      if (process.connected) process.disconnect();
      resolve();
    });
  });
}

export async function daemonize(
  mainScript: string,
  argv: readonly string[],
  logFile: string,
  pidFile: string,
): Promise<DaemonReport & { type: 'daemon.ready' }> {
  let fd: number;
  try {
    mkdirSync(dirname(logFile), { recursive: true, mode: 0o700 });
    fd = openSync(logFile, 'a', 0o600);
  } catch (err) {
    throw new OllanaError(
      'OLN_DIR_UNWRITABLE',
      `cannot open the log file ${logFile}: ${(err as Error).message}; choose another with --log-file`,
      { cause: err },
    );
  }
  const child = spawn(process.execPath, [...process.execArgv, mainScript, ...argv], {
    detached: true,
    stdio: ['ignore', fd, fd, 'ipc'],
    env: { ...process.env, [DAEMON_CHILD_ENV]: '1' },
  });
  closeSync(fd);

  try {
    return await new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        reject(
          new OllanaError(
            'OLN_DAEMON_FAILED',
            `the background ollana (pid ${child.pid}) did not report ready within ${READY_DEADLINE_MS / 1000} s; see ${logFile}`,
          ),
        );
      }, READY_DEADLINE_MS);
      child.once('message', (msg: DaemonReport) => {
        clearTimeout(timer);
        if (msg.type === 'daemon.ready') resolve(msg);
        else reject(OllanaError.fromData({ ...msg.error, code: msg.error.code as OllanaErrorCode }));
      });
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        reject(
          new OllanaError(
            'OLN_DAEMON_FAILED',
            `the background ollana exited (${signal ?? `status ${code}`}) before it was ready; see ${logFile} (pid file ${pidFile})`,
          ),
        );
      });
      child.once('error', (err) => {
        clearTimeout(timer);
        reject(
          new OllanaError('OLN_DAEMON_FAILED', `cannot start the background ollana: ${err.message}`, { cause: err }),
        );
      });
    });
  } finally {
    child.removeAllListeners();
    if (child.connected) child.disconnect();
    child.unref();
  }
}
