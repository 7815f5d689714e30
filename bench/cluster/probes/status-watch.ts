/**
 * Inside the client host: polls ollana's GET /ollana/v1/status every `--interval-ms` (default 50)
 * for at most `--deadline-ms` (default 60000) and prints a JSON line whenever the set of upstreams,
 * the leader or the term changes: { t, upstreams: [{ id, url }], leader, term } (t = Date.now() when
 * the answer arrived), and { t, error } when polls start failing. First line:
 * { ready: true, t } once the first poll answered.
 */
import { emit, errText, numFlags } from './common.ts';

const f = numFlags(process.argv.slice(2), { 'interval-ms': 50, 'deadline-ms': 60_000, port: 11434 });
const url = `http://127.0.0.1:${f.port}/ollana/v1/status`;
const started = Date.now();
let last = '';
let ready = false;
let failing = false;
process.on('SIGTERM', () => process.exit(0));
while (Date.now() - started < f['deadline-ms']!) {
  const t0 = Date.now();
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_500) });
    const s = (await res.json()) as {
      upstreams?: { id: string; url: string }[];
      cluster?: { leader?: string; term?: number };
    };
    const t = Date.now();
    const cur = {
      upstreams: (s.upstreams ?? []).map((u) => ({ id: u.id, url: u.url })),
      leader: s.cluster?.leader ?? '',
      term: s.cluster?.term ?? 0,
    };
    const key = JSON.stringify(cur);
    if (!ready) {
      ready = true;
      emit({ ready: true, t });
    }
    if (key !== last) {
      last = key;
      emit({ t, pollStartedAt: t0, ...cur });
    }
    failing = false;
  } catch (err) {
    if (!failing) emit({ t: Date.now(), error: errText(err) });
    failing = true;
  }
  const wait = f['interval-ms']! - (Date.now() - t0);
  if (wait > 0) await new Promise((r) => setTimeout(r, wait));
}
process.exit(0);
