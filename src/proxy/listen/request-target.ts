/**
 * Which resource and which host a request is for (RFC 9112 §3.2, §3.3): one Host header with a
 * host[:port] value, and a request target in origin form (/api/chat) or absolute form
 * (http://host/api/chat). An absolute-form target's authority is the host the request is for, and the
 * Host header is ignored (RFC 9112 §3.2.2): ollana turns such a request into the origin form with
 * that authority as its Host, so the loopback Host check, the CORS same-origin rule, the forwarded
 * headers and ollana's own paths all see one host, and Ollama gets an ordinary path.
 */

/**
 * The bytes Go's net/http allows in a Host value (httpguts.ValidHostHeader): Ollama answers 400 to
 * anything else, and so does ollana, before the request goes anywhere.
 */
const HOST_VALUE = /^[A-Za-z0-9!$%&'()*+,\-.:;=[\]_~]*$/;

/** How many Host header lines the request carries (Node's req.headers keeps only the first). */
export function hostLines(rawHeaders: readonly string[]): number {
  let n = 0;
  for (let i = 0; i < rawHeaders.length; i += 2) {
    const name = rawHeaders[i]!;
    if (name.length === 4 && name.toLowerCase() === 'host') n += 1;
  }
  return n;
}

export function validHostValue(value: string): boolean {
  return HOST_VALUE.test(value);
}

export type Target =
  | { readonly form: 'origin' }
  | { readonly form: 'absolute'; readonly authority: string; readonly path: string }
  | { readonly form: 'bad'; readonly why: string };

/** Classifies a request target; an absolute one is split into its authority and its origin-form path. */
export function parseTarget(url: string): Target {
  if (url.charCodeAt(0) === 47 /* / */) return { form: 'origin' };
  const scheme = /^https?:\/\//i.exec(url);
  // Anything else, such as OPTIONS *, has no upstream path.
  if (scheme === null) return { form: 'bad', why: 'is not a path' };
  const start = scheme[0].length;
  let end = start;
  while (end < url.length && url[end] !== '/' && url[end] !== '?' && url[end] !== '#') end++;
  const authority = url.slice(start, end);
  // RFC 9110 §4.2.1: an http URI with an empty host is invalid; §4.2.4: user info is an error.
  if (authority === '') return { form: 'bad', why: 'has an empty host' };
  if (authority.includes('@')) return { form: 'bad', why: 'has user info (user@ before the host)' };
  if (!validHostValue(authority)) return { form: 'bad', why: 'has an invalid host' };
  const rest = url.slice(end);
  return { form: 'absolute', authority, path: rest === '' ? '/' : rest.startsWith('/') ? rest : `/${rest}` };
}
