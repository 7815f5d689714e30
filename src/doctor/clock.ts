/** Check: is this machine's clock far from its peers' (their HTTP Date header)? */
import { type CheckResult, result } from './types.ts';

/** A Date header has 1 s resolution and a round trip adds some: beyond this the clocks differ for real. */
export const CLOCK_OFF_MS = 60_000;

export interface ClockSample {
  readonly id: string;
  readonly addr: string;
  /** the peer's clock minus ours, in ms (its Date header against our time at the answer, less half the round trip) */
  readonly offsetMs: number;
}

export function checkClock(samples: readonly ClockSample[]): CheckResult<'clock'> {
  if (samples.length === 0) {
    return result(
      'clock',
      'skip',
      'clock: not checked (no server node answered with its time; it answers only devices it allows)',
      { samples: [], worstOffsetMs: null },
    );
  }
  const worst = samples.reduce((a, b) => (Math.abs(b.offsetMs) > Math.abs(a.offsetMs) ? b : a));
  const s = Math.round(worst.offsetMs / 1000);
  const details = { samples, worstOffsetMs: worst.offsetMs };
  if (Math.abs(worst.offsetMs) <= CLOCK_OFF_MS) {
    return result('clock', 'ok', `clock within ${Math.abs(s)} s of ${samples.length} server node(s)`, details);
  }
  return result(
    'clock',
    'warn',
    `this clock is ${Math.abs(s)} s ${s > 0 ? 'behind' : 'ahead of'} server node ${worst.id.slice(0, 11)} at ${worst.addr}: ` +
      "turn on time sync on both (`timedatectl set-ntp true`, or your system's NTP setting)",
    details,
  );
}
