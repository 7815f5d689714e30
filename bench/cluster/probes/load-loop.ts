/**
 * Inside the client host: back-to-back small streamed generations through ollama-js, in
 * `--lanes` (default 1) independent loops, for at most `--deadline-ms` (default 60000) or until
 * SIGTERM. One JSON line per request: { l: lane, s: start, e: end (Date.now()), ok, err? }.
 * A request that takes longer than `--request-timeout-ms` (default 10000) is aborted and counted
 * as failed (err starts with "TimeoutError"). First line: { ready: true, t }.
 */
import { emit, errText, generateOnce, numFlags } from './common.ts';

const f = numFlags(process.argv.slice(2), { lanes: 1, 'deadline-ms': 60_000, 'request-timeout-ms': 10_000 });
const started = Date.now();
let stopping = false;
process.on('SIGTERM', () => {
  stopping = true;
  setTimeout(() => process.exit(0), 50).unref();
});
emit({ ready: true, t: started });

async function lane(l: number): Promise<void> {
  while (!stopping && Date.now() - started < f['deadline-ms']!) {
    const s = Date.now();
    try {
      await generateOnce(f['request-timeout-ms']!);
      emit({ l, s, e: Date.now(), ok: true });
    } catch (err) {
      emit({ l, s, e: Date.now(), ok: false, err: errText(err) });
      // A refused connection fails in microseconds: do not spin.
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

await Promise.all(Array.from({ length: f.lanes! }, (_, i) => lane(i)));
process.exit(0);
