/**
 * Steady state before measuring. A Node proxy's CPU per request falls by 2-3x over its first
 * ~10 s of load on these machines (JIT tiers, V8 growing its heap so it collects less often), and
 * a lab server runs for days: what matters is after that. Each system gets `seconds` of
 * request-rate load and one round of streams before its first measurement.
 */
import { runRate } from '../load/rate.ts';
import { runStreams } from '../load/streams.ts';
import type { SystemUnderTest } from '../systems.ts';
import { settle } from './context.ts';
import { RATE_CASES } from './rate.ts';

const STREAMS = 200;

export async function warmUp(
  systems: readonly SystemUnderTest[],
  seconds: number,
  log: (msg: string) => void,
): Promise<void> {
  if (seconds <= 0) return;
  const rc = RATE_CASES.find((c) => c.name === 'generate')!;
  for (const sys of systems) {
    log(`  warm-up ${sys.id}: ${seconds} s of ${rc.request.path} at c=32, then ${STREAMS} streams`);
    await runRate(sys.url, rc.request, 32, seconds);
    await settle();
    await runStreams(sys.url, STREAMS, JSON.stringify({ model: 'llama3.2', prompt: 'warm-up' }), 60_000);
    await settle(500);
  }
}
