/**
 * `ollana doctor`'s report: one result per check, each a line a person can act on. The JSON form
 * (`ollana doctor --json`) is this type as it is; docs/doctor.md describes it.
 */

/** ok: nothing to do; warn: works, but worse than it could (or cannot be told); fail: ollana cannot work as meant; skip: not checked here. */
export type CheckStatus = 'ok' | 'warn' | 'fail' | 'skip';

/** The checks, in the order they run and print. */
export type CheckId =
  | 'ollama'
  | 'ports'
  | 'firewall'
  | 'interfaces'
  | 'multicast-route'
  | 'hearing'
  | 'identity'
  | 'pending'
  | 'fd-limit'
  | 'clock';

export interface CheckResult {
  readonly id: CheckId;
  readonly status: CheckStatus;
  /** One line: what was found and, unless ok, what to do. */
  readonly summary: string;
  /** What the check saw, for scripts (each check documents its own keys in docs/doctor.md). */
  readonly details: Readonly<Record<string, unknown>>;
}

export interface DoctorReport {
  /** false when any check failed (then `ollana doctor` exits 1) */
  readonly ok: boolean;
  readonly checks: readonly CheckResult[];
}

export function result(
  id: CheckId,
  status: CheckStatus,
  summary: string,
  details: Readonly<Record<string, unknown>> = {},
): CheckResult {
  return { id, status, summary, details };
}

/** The ports ollana uses: Ollama's (a client node takes it over), a server node's, discovery's. */
export interface OllanaPorts {
  readonly ollama: number;
  readonly proxy: number;
  readonly discovery: number;
}

export const DEFAULT_PORTS: OllanaPorts = { ollama: 11434, proxy: 11435, discovery: 11436 };
