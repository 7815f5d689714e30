/**
 * The answers a client node assembles from every server node: /api/tags and /v1/models list each
 * model once (whichever server has it), /api/ps lists what runs anywhere. A server that does not
 * answer in time is left out; none answering is a 502.
 */
import type { Pool } from 'undici';
import type { Upstream } from '../../protocol/messages.ts';
import type { RouteClass } from './router.ts';

const FAN_OUT_TIMEOUT_MS = 5_000;

export async function fetchJson(pool: Pool, u: Upstream, path: string): Promise<Record<string, unknown>> {
  const res = await pool.request({
    path: u.basePath + path,
    method: 'GET',
    headersTimeout: FAN_OUT_TIMEOUT_MS,
    bodyTimeout: FAN_OUT_TIMEOUT_MS,
    signal: AbortSignal.timeout(FAN_OUT_TIMEOUT_MS),
  });
  const body = (await res.body.json()) as Record<string, unknown>;
  if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
  return body;
}

function listOf(body: Record<string, unknown>, key: string): Record<string, unknown>[] {
  const v = body[key];
  return Array.isArray(v) ? v.filter((x): x is Record<string, unknown> => typeof x === 'object' && x !== null) : [];
}

/** Each /api/ps entry says which server node holds it (`server`: its device id; clients ignore it). */
function withServer(body: Record<string, unknown>, id: string): Record<string, unknown> {
  return { models: listOf(body, 'models').map((m) => ({ ...m, server: id })) };
}

/** As Ollama's PsHandler sorts: the longest time left (expires_at) first, stable, by whole seconds. */
function sortedAsOllama(models: Record<string, unknown>[]): Record<string, unknown>[] {
  const secs = (m: Record<string, unknown>): number => {
    const t = Date.parse(String(m.expires_at));
    return Number.isNaN(t) ? 0 : Math.floor(t / 1000);
  };
  return models
    .map((m, i) => ({ m, i, s: secs(m) }))
    .sort((a, b) => b.s - a.s || a.i - b.i)
    .map((x) => x.m);
}

export interface Aggregated {
  readonly body: Record<string, unknown>;
  readonly answered: number;
  readonly failures: string[];
}

export async function aggregate(
  cls: Extract<RouteClass, 'tags' | 'ps' | 'models'>,
  ups: readonly Upstream[],
  pool: (u: Upstream) => Pool,
): Promise<Aggregated> {
  const path = cls === 'tags' ? '/api/tags' : cls === 'ps' ? '/api/ps' : '/v1/models';
  const results = await Promise.allSettled(ups.map((u) => fetchJson(pool(u), u, path)));
  const failures: string[] = [];
  const bodies: Record<string, unknown>[] = [];
  results.forEach((r, i) => {
    if (r.status === 'fulfilled' && cls === 'ps') bodies.push(withServer(r.value, ups[i]!.id));
    else if (r.status === 'fulfilled') bodies.push(r.value);
    else failures.push(`${ups[i]!.url}: ${(r.reason as Error).message}`);
  });
  if (cls === 'models') {
    const seen = new Set<string>();
    const data = bodies
      .flatMap((b) => listOf(b, 'data'))
      .filter((m) => {
        const id = String(m.id);
        if (seen.has(id)) return false;
        seen.add(id);
        return true;
      });
    return { body: { object: 'list', data }, answered: bodies.length, failures };
  }
  const all = bodies.flatMap((b) => listOf(b, 'models'));
  if (cls === 'ps') return { body: { models: sortedAsOllama(all) }, answered: bodies.length, failures };
  const seen = new Set<string>();
  const models = all.filter((m) => {
    const name = String(m.name);
    if (seen.has(name)) return false;
    seen.add(name);
    return true;
  });
  return { body: { models }, answered: bodies.length, failures };
}
