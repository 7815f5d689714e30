/**
 * Logging with pino. Loggers do not cross threads: every thread builds its own from the plain
 * LogSettings below (they travel in workerData). JSON by default; human-readable on a terminal.
 */
import { createRequire } from 'node:module';
import { pino, type Logger, type DestinationStream } from 'pino';
import type { LogLevel } from './config/defaults.ts';

export interface LogSettings {
  readonly level: LogLevel;
  /** null = stdout */
  readonly file: string | null;
  readonly pretty: boolean;
}

export type { Logger };

export function createLogger(settings: LogSettings, bindings: Record<string, string | number> = {}): Logger {
  let dest: DestinationStream;
  if (settings.pretty && settings.file === null) {
    // Loaded only for a terminal: every thread builds its own logger, and a daemon or a service never
    // needs the pretty printer's memory.
    const pretty = createRequire(import.meta.url)('pino-pretty') as typeof import('pino-pretty');
    dest = pretty({ colorize: true, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname', sync: true });
  } else {
    // Each thread appends to the file with its own descriptor; O_APPEND keeps lines whole.
    // Synchronous writes: nothing logs per request at info, and a crash must not eat its last lines.
    dest = pino.destination({ dest: settings.file ?? 1, append: true, mkdir: true, sync: true });
  }
  const root = pino(
    {
      level: settings.level,
      base: { pid: process.pid },
      formatters: { level: (label) => ({ level: label }) },
    },
    dest,
  );
  return root.child(bindings);
}

/** Level from the environment alone, for the moments before the config is loaded. */
export function envLogLevel(env: Readonly<Record<string, string | undefined>>): LogLevel {
  const raw = (env.OLLANA_LOG || env.LOG_LEVEL || '').toLowerCase();
  return (['error', 'warn', 'info', 'debug', 'trace'] as const).find((l) => l === raw) ?? 'info';
}
