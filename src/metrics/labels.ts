/**
 * The label values of ollana's request metrics: the route family of a request path, its outcome
 * class, and a cap on how many distinct values a label takes (model names come from request bodies,
 * so a client could otherwise grow the series without bound).
 */

/** The families of the Ollama API (docs/metrics.md lists them), by exact path. */
const FAMILIES: ReadonlyMap<string, string> = new Map([
  ['/api/generate', 'generate'],
  ['/api/chat', 'chat'],
  ['/api/embed', 'embed'],
  ['/api/embeddings', 'embed'],
  ['/v1/chat/completions', 'openai_chat'],
  ['/v1/completions', 'openai_completions'],
  ['/v1/embeddings', 'openai_embeddings'],
  ['/v1/responses', 'openai_responses'],
  ['/api/tags', 'models'],
  ['/v1/models', 'models'],
  ['/api/ps', 'models'],
  ['/api/show', 'models'],
  ['/api/version', 'version'],
  ['/api/pull', 'manage'],
  ['/api/push', 'manage'],
  ['/api/create', 'manage'],
  ['/api/copy', 'manage'],
  ['/api/delete', 'manage'],
]);

/** The route family of a request target (origin form, query allowed). */
export function routeFamily(url: string): string {
  const q = url.indexOf('?');
  const path = q < 0 ? url : url.slice(0, q);
  const family = FAMILIES.get(path);
  if (family !== undefined) return family;
  if (path.startsWith('/api/blobs/')) return 'blobs';
  if (path.startsWith('/v1/models/')) return 'models';
  return 'other';
}

/** Families whose successful answers carry token counts (the final `done` object, or `usage`). */
export const TOKEN_FAMILIES: ReadonlySet<string> = new Set([
  'generate',
  'chat',
  'embed',
  'openai_chat',
  'openai_completions',
  'openai_embeddings',
]);

/**
 * The outcome of a request answered with `status`: its class (RequestMeter adds `aborted`, the client
 * left first, and `failed`, the upstream failed and ollana answered or cut the response).
 */
export function statusClass(status: number): string {
  if (status >= 200 && status < 300) return '2xx';
  if (status >= 400 && status < 500) return '4xx';
  if (status >= 500 && status < 600) return '5xx';
  if (status >= 300 && status < 400) return '3xx';
  return 'none';
}

/** The label value used once a capped label has seen its maximum of distinct values. */
export const OTHER = 'other';
/** Longest label value kept; longer ones are cut (a model name is far shorter). */
const MAX_VALUE_CHARS = 128;

/**
 * The first `max` distinct values of a label pass as they are, later new ones become `other`. Per
 * proxy worker, so a node shows at most `max` x workers distinct values, and usually the same few.
 */
export class LabelCap {
  readonly #max: number;
  readonly #seen = new Set<string>();

  constructor(max: number) {
    this.#max = max;
  }

  value(v: string | null): string {
    if (v === null || v === '') return '';
    if (this.#seen.has(v)) return v;
    const cut = v.length > MAX_VALUE_CHARS ? v.slice(0, MAX_VALUE_CHARS) : v;
    if (this.#seen.has(cut)) return cut;
    if (this.#seen.size >= this.#max) return OTHER;
    this.#seen.add(cut);
    return cut;
  }
}
