/**
 * The one message a background node's child process sends its waiting parent over the IPC channel
 * (`ollana serve -d`, src/daemon/daemonize.ts): it listens, or why it could not start. Structured
 * clone carries it, so an error travels as data and is rebuilt by OllanaError.fromData.
 */
import type { ErrorData } from '../errors.ts';

export type DaemonReport =
  | { readonly type: 'daemon.ready'; readonly pid: number; readonly role: string; readonly url: string }
  | { readonly type: 'daemon.failed'; readonly error: ErrorData };
