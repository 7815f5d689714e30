/**
 * `ollana doctor`'s report: one result per check, each a line a person can act on. The JSON form
 * (`ollana doctor --json`) is this type as it is; docs/doctor.md describes it.
 */

import type { ClockSample } from './clock.ts';
import type { FirewallFinding } from './firewall.ts';
import type { HeardPeer, Hearing } from './hearing.ts';
import type { InterfaceFacts } from './interfaces.ts';

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

/** What each check saw, for scripts; described in docs/doctor.md. */
export interface CheckDetails {
  readonly ollama: {
    readonly url: string;
    /** an ollana client node holds the URL's port (and relays to the LAN's servers) */
    readonly clientNode: boolean;
    /** a client node: whether a request through it reached an Ollama */
    readonly relayed?: boolean;
    readonly version?: string;
    readonly reason?: string;
  };
  readonly ports: { readonly checked: boolean; readonly ports: readonly PortReport[] };
  readonly firewall: {
    readonly checked: readonly string[];
    readonly notChecked: readonly string[];
    readonly findings: readonly FirewallFinding[];
  };
  readonly interfaces: { readonly interfaces: readonly (InterfaceFacts & { readonly vpn: boolean })[] };
  readonly 'multicast-route': {
    readonly checked: boolean;
    readonly group: string;
    /** the interface the group's route takes; null when there is none */
    readonly route: string | null;
    readonly vpn: boolean;
  };
  readonly hearing: Hearing & { readonly checked: boolean };
  readonly identity: { readonly dataDir: string; readonly id: string | null; readonly keyMode: string | null };
  readonly pending: {
    readonly pendingHere: readonly { readonly id: string; readonly addr: string; readonly kind: string }[];
    readonly serversNotAllowed: readonly HeardPeer[];
    readonly refusedBy: readonly { readonly id: string; readonly addr: string }[];
    readonly problem: string | null;
  };
  readonly 'fd-limit': { readonly checked: boolean; readonly soft: number | null; readonly hard: number | null };
  readonly clock: { readonly samples: readonly ClockSample[]; readonly worstOffsetMs: number | null };
}

/** One port and who holds it. */
export interface PortReport {
  readonly proto: 'tcp' | 'udp';
  readonly port: number;
  readonly free: boolean;
  readonly holders: readonly {
    readonly pid: number | null;
    readonly name: string | null;
    readonly owner: 'ollana' | 'ollama' | 'other' | 'unknown';
  }[];
}

export interface CheckResult<K extends CheckId = CheckId> {
  readonly id: K;
  readonly status: CheckStatus;
  /** One line: what was found and, unless ok, what to do. */
  readonly summary: string;
  readonly details: CheckDetails[K];
}

/** Any check's result, told apart by `id`. */
export type AnyCheckResult = { [K in CheckId]: CheckResult<K> }[CheckId];

export interface DoctorReport {
  /** false when any check failed (then `ollana doctor` exits 1) */
  readonly ok: boolean;
  readonly checks: readonly AnyCheckResult[];
}

export function result<K extends CheckId>(
  id: K,
  status: CheckStatus,
  summary: string,
  details: CheckDetails[K],
): CheckResult<K> {
  return { id, status, summary, details };
}

/** The result of check `id` in a report (typed by it), or undefined. */
export function findCheck<K extends CheckId>(r: DoctorReport, id: K): CheckResult<K> | undefined {
  return r.checks.find((c): c is CheckResult<K> & AnyCheckResult => c.id === id);
}

/** The ports ollana uses: Ollama's (a client node takes it over), a server node's, discovery's. */
export interface OllanaPorts {
  readonly ollama: number;
  readonly proxy: number;
  readonly discovery: number;
}

export const DEFAULT_PORTS: OllanaPorts = { ollama: 11434, proxy: 11435, discovery: 11436 };
