/**
 * The pid file: which ollana runs, so that `ollana stop` signals that process and no other, and a
 * second `ollana serve` refuses to start beside it. The first line is the pid alone (what other tools
 * read); the lines after it are `key value`:
 *
 *   12345
 *   start 5f0c…/987654        when the process started (process-info.ts): the pid with it names one process
 *   token 9c2e…               random, per start: the node's own file and drain report are told by it
 *   drain-timeout-ms 30000    how long `ollana stop` has to wait for the drain
 *   listen 127.0.0.1:11434    added once the node listens: the port `ollana stop` sees freed
 *
 * Every write goes to a temporary file beside it, reaches the disk, and is renamed over it, so a reader
 * (or a node killed at any point of the write) finds the old content or the new one, never a part; a
 * killed writer leaves at most its temporary file, which the next start removes and reports.
 */
import { randomBytes } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { OllanaError, systemCode } from '../errors.ts';
import { processArgs, processRuns, processStart, processStartedAt } from './process-info.ts';

export interface PidRecord {
  readonly pid: number;
  /** null in a pid file written by an ollana older than the start time check (the pid alone) */
  readonly start: string | null;
  readonly token: string | null;
  readonly drainTimeoutMs: number | null;
  /** host:port, once the node listens */
  readonly listen: string | null;
}

/** What a pid file says about the ollana that wrote it. */
export type PidFileState =
  | { readonly kind: 'none' }
  /** not a pid file (written by something else, or damaged): `text` is its start, for the message */
  | { readonly kind: 'unreadable'; readonly text: string }
  /** the process that wrote it is not running any more */
  | { readonly kind: 'gone'; readonly record: PidRecord }
  /** its pid is alive but names a different process now (the number was given out again) */
  | { readonly kind: 'other'; readonly record: PidRecord }
  /** the ollana that wrote it is running */
  | { readonly kind: 'running'; readonly record: PidRecord };

export function formatPidRecord(r: PidRecord): string {
  let text = `${r.pid}\n`;
  if (r.start !== null) text += `start ${r.start}\n`;
  if (r.token !== null) text += `token ${r.token}\n`;
  if (r.drainTimeoutMs !== null) text += `drain-timeout-ms ${r.drainTimeoutMs}\n`;
  if (r.listen !== null) text += `listen ${r.listen}\n`;
  return text;
}

/** The record in a pid file's text, or null when its first line is not a pid. Unknown keys are ignored. */
export function parsePidRecord(text: string): PidRecord | null {
  const [first = '', ...rest] = text.split('\n');
  const pid = Number(first.trim());
  if (!/^\s*\d+\s*$/.test(first) || !Number.isSafeInteger(pid) || pid <= 0) return null;
  const values = new Map<string, string>();
  for (const line of rest) {
    const space = line.indexOf(' ');
    if (space > 0) values.set(line.slice(0, space), line.slice(space + 1).trim());
  }
  const drain = Number(values.get('drain-timeout-ms'));
  return {
    pid,
    start: values.get('start') || null,
    token: values.get('token') || null,
    drainTimeoutMs: Number.isSafeInteger(drain) && drain >= 0 ? drain : null,
    listen: values.get('listen') || null,
  };
}

function unwritable(file: string, err: unknown, action: 'write' | 'read'): OllanaError {
  const code = systemCode(err);
  const why =
    code === 'ENOSPC'
      ? 'the disk is full'
      : code === 'EACCES' || code === 'EPERM'
        ? 'permission denied'
        : code === 'EROFS'
          ? 'the file system is read-only'
          : code === 'ENOTDIR'
            ? 'a part of the path is a file, not a directory'
            : (err as Error).message;
  return new OllanaError(
    'OLN_DIR_UNWRITABLE',
    `cannot ${action} the pid file ${file}: ${why}; free the space or fix the permissions, or choose another place with --pid-file`,
    { cause: err, details: { file } },
  );
}

/** The file's text, or null when there is none. */
function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return null;
    throw unwritable(file, err, 'read');
  }
}

/**
 * A pid file of an older ollana holds the pid alone (kept working so that an ollana updated while its
 * node runs can still stop that node). Its writer ran one of ollana's entry points (src/main.ts,
 * dist/main.js, bin/ollana.mjs, an `ollana` link) and had started before it wrote the file: a process
 * that started later got the pid after the writer was gone.
 */
function legacyWriter(pid: number, writtenAt: number | null): boolean {
  const startedAt = processStartedAt(pid);
  // The boot time is known to the second only, hence the second of slack.
  if (startedAt !== null && writtenAt !== null && startedAt > writtenAt + 1_000) return false;
  const args = processArgs(pid);
  if (args === null) return true; // no /proc: a live pid is the best evidence there is
  return args.some((a) => /(^|\/)src\/main\.ts$|(^|\/)dist\/main\.js$|(^|\/)bin\/ollana\.mjs$|(^|\/)ollana$/.test(a));
}

/**
 * Whether the process a record names is the one that wrote it, and still runs. `writtenAt` (the pid
 * file's mtime) matters only for a record without a start time.
 */
export function writerState(record: PidRecord, writtenAt: number | null = null): 'running' | 'gone' | 'other' {
  if (!processRuns(record.pid)) return 'gone';
  if (record.start === null) return legacyWriter(record.pid, writtenAt) ? 'running' : 'other';
  const start = processStart(record.pid);
  // A start time that cannot be read (a /proc mounted with hidepid): it may well be that ollana, so it
  // is treated as one; `stop` then signals it only if the system lets this user.
  if (start === null) return 'running';
  return start === record.start ? 'running' : 'other';
}

export function inspectPidFile(file: string): PidFileState {
  const text = readText(file);
  if (text === null) return { kind: 'none' };
  const record = parsePidRecord(text);
  if (record === null) return { kind: 'unreadable', text: text.slice(0, 40) };
  let writtenAt: number | null = null;
  try {
    writtenAt = statSync(file).mtimeMs;
  } catch {
    // Removed just now; the start time check does without it.
  }
  return { kind: writerState(record, writtenAt), record };
}

/** Writes `text` to `file` through a temporary file renamed over it (see the header). */
function writeAtomically(file: string, text: string, pid: number): void {
  const tmp = `${file}.${pid}.tmp`;
  try {
    const fd = openSync(tmp, 'w', 0o644);
    try {
      writeSync(fd, text);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
  } catch (err) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      // The write's own error is the one worth reporting.
    }
    throw err;
  }
}

/** Removes the temporary files of writers killed mid-write; one sentence for each, for the log. */
function removeLeftovers(file: string, self: number): string[] {
  const notes: string[] = [];
  const prefix = `${basename(file)}.`;
  let names: string[];
  try {
    names = readdirSync(dirname(file));
  } catch {
    return notes;
  }
  for (const name of names) {
    // `<pid file>.<pid>.tmp`, or the drain report's `<pid file>.cut.<pid>.tmp`
    const m = name.startsWith(prefix) ? /^(?:cut\.)?(\d+)\.tmp$/.exec(name.slice(prefix.length)) : null;
    if (m === null) continue;
    const writer = Number(m[1]);
    if (writer !== self && processRuns(writer)) continue; // being written right now
    try {
      rmSync(join(dirname(file), name), { force: true });
      notes.push(`removed ${join(dirname(file), name)}, a pid file that pid ${writer} was still writing when it ended`);
    } catch {
      // Left for the next start; it is never read as a pid file.
    }
  }
  return notes;
}

export interface PidFileHandle {
  readonly record: PidRecord;
  /** What was found in the pid file's place and replaced (a stale or damaged file), as sentences to log. */
  readonly notes: readonly string[];
  /** Adds where the node listens, for `ollana stop` to see the port freed. */
  setListen(hostPort: string): void;
  /** Leaves a drain report for `ollana stop`: `cut` in-flight requests were cut at the drain deadline. */
  reportCut(cut: number): void;
  /** Removes the pid file if it is still this node's. */
  release(): void;
}

/**
 * Takes the pid file for this process. Throws OLN_ALREADY_RUNNING when the live ollana that wrote it
 * holds it, OLN_DIR_UNWRITABLE when it cannot be written. `self` is for tests (another pid and start).
 */
export function takePidFile(
  file: string,
  opts: { drainTimeoutMs: number; self?: { pid: number; start: string | null } },
): PidFileHandle {
  const pid = opts.self?.pid ?? process.pid;
  const start = opts.self === undefined ? processStart(pid) : opts.self.start;
  const found = inspectPidFile(file);
  if (found.kind === 'running' && found.record.pid !== pid) {
    throw new OllanaError(
      'OLN_ALREADY_RUNNING',
      `ollana is already running (pid ${found.record.pid}, pid file ${file}); stop it with \`ollana stop\`, ` +
        'or give this one its own --pid-file and --listen',
      { details: { pid: found.record.pid, file } },
    );
  }
  const notes = removeLeftovers(file, pid);
  switch (found.kind) {
    case 'gone':
      if (found.record.pid !== pid)
        notes.push(`replaced a stale pid file left by pid ${found.record.pid}, which is not running`);
      break;
    case 'other':
      notes.push(
        `replaced a stale pid file: its pid ${found.record.pid} is a different process now (not the ollana that wrote the file), left alone`,
      );
      break;
    case 'unreadable':
      notes.push(`replaced ${file}, which held no pid (it began ${JSON.stringify(found.text)})`);
      break;
    case 'none':
    case 'running':
      break;
  }

  let record: PidRecord = {
    pid,
    start,
    token: randomBytes(16).toString('hex'),
    drainTimeoutMs: opts.drainTimeoutMs,
    listen: null,
  };
  try {
    mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    writeAtomically(file, formatPidRecord(record), pid);
  } catch (err) {
    throw unwritable(file, err, 'write');
  }
  const ours = (): boolean => {
    try {
      return parsePidRecord(readText(file) ?? '')?.token === record.token;
    } catch {
      return false;
    }
  };
  return {
    get record() {
      return record;
    },
    notes,
    setListen(hostPort) {
      if (!ours()) return;
      record = { ...record, listen: hostPort };
      try {
        writeAtomically(file, formatPidRecord(record), pid);
      } catch {
        // The pid file without the port still names this node; `stop` then only waits for its exit.
      }
    },
    reportCut(cut) {
      try {
        writeAtomically(drainReportFile(file), `token ${record.token}\ncut ${cut}\n`, pid);
      } catch {
        // The node's log says it too (a warning from each worker that cut requests).
      }
    },
    release() {
      try {
        if (ours()) rmSync(file, { force: true });
      } catch {
        // Nothing left to do on the way out; the next start finds the process gone and replaces the file.
      }
    },
  };
}

/** Beside the pid file: written by a node that had to cut in-flight requests at its drain deadline. */
export function drainReportFile(pidFile: string): string {
  return `${pidFile}.cut`;
}

/**
 * The number of requests the node with `token` cut at its drain deadline, or null when it cut none
 * (it wrote no report). The report is removed once read.
 */
export function takeDrainReport(pidFile: string, token: string | null): number | null {
  const file = drainReportFile(pidFile);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const m = /^token (\S+)\ncut (\d+)\n$/.exec(text);
  if (m === null || token === null || m[1] !== token) return null;
  rmSync(file, { force: true });
  return Number(m[2]);
}
