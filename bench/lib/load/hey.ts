/**
 * `hey -n 1000 -c 50` against /api/generate, the way hey is usually pointed at an Ollama; run as a
 * child (pinned like the rest of the load) and read from its text summary.
 */
import { startChild, stopChild } from '../children.ts';

export interface HeyResult {
  readonly ok: boolean;
  readonly reqPerSec: number;
  readonly avgMs: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  /** Responses with status 200. */
  readonly ok200: number;
  readonly error: string | null;
}

/** Parses hey's default text report. */
export function parseHey(text: string, expected: number): HeyResult {
  const secs = (re: RegExp): number => {
    const m = re.exec(text);
    return m ? Number(m[1]) * 1000 : Number.NaN;
  };
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(text);
  const ok200 = Number(/\[200\]\s+(\d+) responses/.exec(text)?.[1] ?? 0);
  const errors = /Error distribution:\n([\s\S]*)$/.exec(text)?.[1]?.trim() ?? '';
  const ok = rps !== null && ok200 === expected;
  return {
    ok,
    reqPerSec: rps ? Number(rps[1]) : Number.NaN,
    avgMs: secs(/Average:\s+([\d.]+) secs/),
    p50Ms: secs(/50%+ in ([\d.]+) secs/),
    p99Ms: secs(/99%+ in ([\d.]+) secs/),
    ok200,
    error: ok ? null : `${ok200}/${expected} answered 200${errors !== '' ? `; ${errors.split('\n')[0]}` : ''}`,
  };
}

export async function runHey(
  heyPath: string,
  url: string,
  body: string,
  n: number,
  c: number,
  cpus: string | null,
  timeoutMs: number,
): Promise<HeyResult> {
  const child = startChild(
    'hey',
    heyPath,
    ['-n', String(n), '-c', String(c), '-m', 'POST', '-T', 'application/json', '-d', body, `${url}/api/generate`],
    { cpus },
  );
  const lines: string[] = [];
  child.onLine((l) => lines.push(l));
  const timer = setTimeout(() => {
    void stopChild(child, 1_000, 'SIGKILL');
  }, timeoutMs);
  const code = await child.exited;
  clearTimeout(timer);
  const r = parseHey(lines.join('\n'), n);
  return code === 0 ? r : { ...r, ok: false, error: `hey exited with ${code}: ${child.tail().slice(-300)}` };
}
