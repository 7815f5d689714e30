/**
 * Where a request may go when several server nodes are known (a client node): pure decisions, no I/O.
 * Follows ollama-api.md section 9: generation and embedding may move to another server only before
 * any byte went back; pull, push, create, blobs, copy and delete are tied to one server (the leader,
 * so that a blob upload and the create that uses it meet on the same machine).
 */
import type { Upstream } from '../../protocol/messages.ts';
import { parseModel } from './model-name.ts';

export type RouteClass =
  | 'tags' // GET/HEAD /api/tags: the union over all servers
  | 'ps' // GET /api/ps: the union
  | 'models' // GET /v1/models: the union, OpenAI shape
  | 'by-model' // JSON POST naming a model: a server that has it; retry elsewhere before the first byte
  | 'affine' // tied to one server: the leader
  | 'any'; // anything else: the least busy server

const BY_MODEL = new Set([
  '/api/generate',
  '/api/chat',
  '/api/embed',
  '/api/embeddings',
  '/api/show',
  '/v1/chat/completions',
  '/v1/completions',
  '/v1/embeddings',
  '/v1/responses',
  '/v1/messages',
  '/v1/audio/transcriptions',
]);
/** Sign-in state belongs to one server: every account request goes to the same one (the leader). */
const AFFINE = new Set([
  '/api/pull',
  '/api/push',
  '/api/create',
  '/api/copy',
  '/api/delete',
  '/api/me',
  '/api/signout',
]);

export function classify(method: string, path: string): RouteClass {
  if (path === '/api/tags' && (method === 'GET' || method === 'HEAD')) return 'tags';
  if (path === '/api/ps' && method === 'GET') return 'ps';
  if (path === '/v1/models' && method === 'GET') return 'models';
  if (method === 'POST' && BY_MODEL.has(path)) return 'by-model';
  // GET /v1/models/{id}: the model is in the path (body-model.ts reads it there).
  if ((method === 'GET' || method === 'HEAD') && path.startsWith('/v1/models/')) return 'by-model';
  if (AFFINE.has(path) || path.startsWith('/api/blobs/') || path.startsWith('/api/user/keys/')) return 'affine';
  return 'any';
}

/** The model a JSON request body names (`model`, or `name` as pull/show accept), or null. */
export function modelOf(body: Buffer): string | null {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { model?: unknown; name?: unknown };
    const m =
      typeof parsed.model === 'string' && parsed.model !== ''
        ? parsed.model
        : typeof parsed.name === 'string' && parsed.name !== ''
          ? parsed.name
          : null;
    return m;
  } catch {
    return null;
  }
}

/**
 * Candidates in the order to try: the servers that have the model (least busy first, by this
 * worker's own in-flight count, then the server's reported load); if none is known to have it (or no
 * model is named), every healthy server in the same order, except that a cloud model (model-name.ts)
 * tries the leader first, where account requests go and so where someone signed in. `turn` rotates
 * servers that are equally idle (the caller counts up per request).
 */
export function candidates(
  ups: readonly Upstream[],
  model: string | null,
  inFlight: ReadonlyMap<string, number>,
  turn = 0,
): Upstream[] {
  const healthy = ups.filter((u) => u.healthy);
  // This worker's own in-flight count is exact; the load a server announced is up to a few seconds
  // old and includes our own recent requests, so it only counts in coarse steps (a server far busier
  // with other clients' work is avoided; small differences do not stop servers from taking turns).
  const busy = (u: Upstream): number => (inFlight.get(u.id) ?? 0) * 1000 + Math.floor(u.load / 4);
  const order = (list: Upstream[]): Upstream[] => {
    list.sort((a, b) => busy(a) - busy(b) || a.id.localeCompare(b.id));
    // Equally idle servers take turns, so that requests one after another spread over all of them.
    let tied = 1;
    while (tied < list.length && busy(list[tied]!) === busy(list[0]!)) tied += 1;
    const shift = turn % tied;
    return shift === 0 ? list : [...list.slice(shift, tied), ...list.slice(0, shift), ...list.slice(tied)];
  };
  if (model !== null) {
    const want = parseModel(model);
    const having = healthy.filter((u) =>
      u.models.some((m) => {
        const have = parseModel(m);
        return have.key === want.key && have.cloud === want.cloud;
      }),
    );
    // Only servers that have it: another would answer "model not found, try pulling it first".
    if (having.length > 0) return order(having);
    if (want.cloud) {
      const all = order([...healthy]);
      const leader = all.findIndex((u) => u.leader);
      return leader <= 0 ? all : [all[leader]!, ...all.slice(0, leader), ...all.slice(leader + 1)];
    }
  }
  return order([...healthy]);
}

/** The account requests, as `ollana status` names them next to the server they go to. */
export const ACCOUNT_PATHS = '/api/me, /api/signout, /api/user/keys';

export function affineTarget(ups: readonly Upstream[]): Upstream | null {
  const healthy = ups.filter((u) => u.healthy);
  return healthy.find((u) => u.leader) ?? healthy.sort((a, b) => a.id.localeCompare(b.id))[0] ?? null;
}

/**
 * Statuses after which a by-model request may try the next server (nothing reached the client yet).
 * A cloud model also moves on 401 and 403: that server is not signed in, or has cloud disabled.
 */
export function retryableStatus(status: number, cls: RouteClass, cloud = false): boolean {
  if (status === 503 || status === 500 || status === 499 || status === 502) return true;
  if (cloud && (status === 401 || status === 403)) return true;
  return status === 404 && cls === 'by-model';
}
