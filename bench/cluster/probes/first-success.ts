/**
 * Inside the client host: retries one small streamed generation through ollama-js every
 * `--interval-ms` (default 20) until one succeeds or `--deadline-ms` (default 20000) passes, then
 * prints one JSON line: { ok, firstOkAt (Date.now() when the reply was complete), started, attempts,
 * lastError }, after a first line { ready: true, t }. Start it before the client node: the early
 * attempts are refused.
 */
import { emit, errText, generateOnce, numFlags } from './common.ts';

const f = numFlags(process.argv.slice(2), { 'interval-ms': 20, 'deadline-ms': 20_000, 'request-timeout-ms': 2_000 });
const started = Date.now();
emit({ ready: true, t: started });
let attempts = 0;
let lastError = '';
const errors = new Map<string, number>();
while (Date.now() - started < f['deadline-ms']!) {
  attempts += 1;
  const t = Date.now();
  try {
    await generateOnce(f['request-timeout-ms']!);
    emit({
      ok: true,
      firstOkAt: Date.now(),
      attemptStartedAt: t,
      started,
      attempts,
      lastError,
      errors: Object.fromEntries(errors),
    });
    process.exit(0);
  } catch (err) {
    lastError = errText(err);
    const key = lastError.replace(/\d+/g, 'N').slice(0, 80);
    errors.set(key, (errors.get(key) ?? 0) + 1);
  }
  const wait = f['interval-ms']! - (Date.now() - t);
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
emit({ ok: false, firstOkAt: null, started, attempts, lastError, errors: Object.fromEntries(errors) });
process.exit(1);
