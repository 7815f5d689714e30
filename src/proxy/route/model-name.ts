/**
 * Model names compared as Ollama compares them, so a request's model matches a server's /api/tags
 * list however either is written (ollama: internal/modelref ParseRef, types/model/name.go ParseName
 * and Name.EqualFold):
 * - a trailing `:local` or `:cloud` says where to run it and is not part of the name; a tag ending
 *   in `-cloud` (`gpt-oss:20b-cloud`, the name a cloud model is installed under) also means cloud;
 * - host `registry.ollama.ai`, namespace `library` and tag `latest` are the defaults of missing parts;
 * - every part compares case-insensitively.
 */

export interface ModelRef {
  /** `host/namespace/model:tag`, lowercase: equal for names Ollama treats as the same model. */
  readonly key: string;
  /** Whether the name asks for ollama.com's copy (`:cloud`, `-cloud`), which any signed-in server can run. */
  readonly cloud: boolean;
}

const DEFAULT_HOST = 'registry.ollama.ai';
const DEFAULT_NAMESPACE = 'library';
const DEFAULT_TAG = 'latest';

/** The base name and whether it names the cloud copy, as modelref.parseSourceSuffix splits them. */
function splitSource(raw: string): { base: string; cloud: boolean } {
  const i = raw.lastIndexOf(':');
  if (i >= 0) {
    const suffixRaw = raw.slice(i + 1).trim();
    const suffix = suffixRaw.toLowerCase();
    if (suffix === 'cloud') return { base: raw.slice(0, i), cloud: true };
    if (suffix === 'local') return { base: raw.slice(0, i), cloud: false };
    if (!suffixRaw.includes('/') && suffix.endsWith('-cloud'))
      return { base: raw.slice(0, i + 1) + suffixRaw.slice(0, -'-cloud'.length), cloud: true };
  }
  return { base: raw, cloud: false };
}

/** Cuts `s` at the last `sep`: [before, after], or null when there is none. */
function cutLast(s: string, sep: string): [string, string] | null {
  const i = s.lastIndexOf(sep);
  return i < 0 ? null : [s.slice(0, i), s.slice(i + sep.length)];
}

/** A model name as Ollama resolves it (ParseRef, then ParseName with the defaults merged in). */
export function parseModel(raw: string): ModelRef {
  const { base, cloud } = splitSource(raw.trim());
  let rest = base;
  let tag = '';
  if (rest.lastIndexOf(':') > rest.lastIndexOf('/')) [rest, tag] = cutLast(rest, ':')!;
  let model = rest;
  let namespace = '';
  let host = '';
  const m = cutLast(rest, '/');
  if (m !== null) {
    [rest, model] = m;
    const n = cutLast(rest, '/');
    if (n === null) namespace = rest;
    else {
      [host, namespace] = n;
      const scheme = host.indexOf('://');
      if (scheme >= 0) host = host.slice(scheme + 3);
    }
  }
  const key = `${host || DEFAULT_HOST}/${namespace || DEFAULT_NAMESPACE}/${model}:${tag || DEFAULT_TAG}`;
  return { key: key.toLowerCase(), cloud };
}

/** Whether two names are the same model to Ollama (the local and cloud copies are not). */
export function sameModel(a: string, b: string): boolean {
  const x = parseModel(a);
  const y = parseModel(b);
  return x.key === y.key && x.cloud === y.cloud;
}

/** One string per model as Ollama tells models apart (parseModel's key, the cloud copy marked): a map key. */
export function normalizeModel(raw: string): string {
  const ref = parseModel(raw);
  return ref.cloud ? `${ref.key} (cloud)` : ref.key;
}
