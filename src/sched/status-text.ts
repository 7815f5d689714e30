/**
 * The scheduler's part of `ollana status` for people: per model its slots, what is in flight and what
 * waits per device; per device its weight, what it waits for and what it was refused.
 */
import type { SchedStatus } from '../protocol/status.ts';

export function schedLines(s: SchedStatus | null | undefined): string[] {
  if (!s) return [];
  const lines = [
    `fair share: ${s.slots} slot(s) per model, waiting at most ${Math.round(s.maxWaitMs / 100) / 10} s, ` +
      `${s.queueDepth === 0 ? 'no limit' : s.queueDepth} waiting per device and model`,
  ];
  for (const m of s.models ?? []) {
    const queued = Object.entries(m.queued ?? {});
    const waiting = queued.reduce((n, [, k]) => n + k, 0);
    lines.push(
      `  ${m.model}  ${m.inFlight}/${m.slots} in flight, ${waiting} waiting` +
        (waiting > 0 ? ` (longest ${Math.round(m.longestWaitMs / 100) / 10} s)` : ''),
    );
    for (const [device, n] of queued) lines.push(`    ${device}  ${n} waiting`);
  }
  for (const d of s.devices ?? []) {
    lines.push(
      `  device ${d.device}  weight ${d.weight}  ${d.waiting} waiting, ${d.servedAfterWait} served after waiting, ` +
        `${d.refused} refused${d.throttled ? '  THROTTLED' : ''}`,
    );
  }
  return lines;
}
