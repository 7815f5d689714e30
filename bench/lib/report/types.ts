/** The whole run as one JSON document (report.json); the Markdown and charts are views of it. */
import type { ProfileSummary } from '../cpu-profile.ts';
import type { BenchOptions, SystemId } from '../options.ts';
import type { ScenarioResult } from '../results.ts';
import type { Machine } from '../run-meta.ts';
import type { ToolState } from '../tools.ts';

export interface SystemStatus {
  readonly id: SystemId;
  readonly label: string;
  readonly ran: boolean;
  /** Why it did not run (unavailable or failed to start), or null. */
  readonly reason: string | null;
}

export interface TargetResult {
  readonly id: string;
  readonly title: string;
  /** The target in words, e.g. "≤ 1.5 × nginx". */
  readonly target: string;
  readonly measured: number | null;
  readonly unit: string;
  /** nginx's own value where it helps to read the target (null when not measured). */
  readonly nginx: number | null;
  readonly status: 'met' | 'missed' | 'n/a';
  readonly detail: string;
}

export interface GateCheck {
  readonly name: string;
  readonly measured: number | null;
  readonly threshold: number;
  /** How `measured` relates to `threshold` when passing. */
  readonly op: '>=' | '<=';
  readonly pass: boolean;
  readonly detail: string;
}

export interface RunReport {
  readonly schema: 1;
  readonly startedAt: string;
  readonly finishedAt: string;
  readonly wallSeconds: number;
  readonly machine: Machine;
  readonly ollana: { readonly root: string; readonly commit: string | null; readonly args: readonly string[] };
  readonly tools: Readonly<Record<string, ToolState>>;
  readonly options: BenchOptions;
  readonly placement: string;
  readonly systems: readonly SystemStatus[];
  readonly scenarios: readonly ScenarioResult[];
  readonly targets: readonly TargetResult[];
  readonly gate: readonly GateCheck[] | null;
  readonly profiles: readonly ProfileSummary[];
  /** Things that went wrong without stopping the run (a scenario error, a bad exit). */
  readonly problems: readonly string[];
}
