/**
 * Header rules of a transparent proxy (RFC 9110 §7.6.1): hop-by-hop headers stop here, Host is the
 * upstream's, X-Forwarded-For/Forwarded say who asked, everything else (Authorization,
 * Content-Encoding, Content-Type, User-Agent...) passes untouched.
 */
import type { IncomingMessage } from 'node:http';

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/** Request headers ollana never forwards upstream, beyond the hop-by-hop set. */
const REQUEST_DROP = new Set([
  ...HOP_BY_HOP,
  'host', // rewritten to the upstream's by undici, so a loopback-bound Ollama accepts it
  'expect', // Node already answered 100-continue to the client; the upstream gets the body as is
  'origin', // CORS is decided by ollana at its edge (cors.ts); Ollama would refuse unknown origins
  'forwarded',
  'x-forwarded-for',
  'x-forwarded-proto',
  'x-forwarded-host', // rebuilt below
]);

function connectionListed(value: string | string[] | undefined): Set<string> | null {
  if (value === undefined) return null;
  const text = Array.isArray(value) ? value.join(',') : value;
  const names = text
    .split(',')
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== '' && s !== 'close' && s !== 'keep-alive');
  return names.length === 0 ? null : new Set(names);
}

function forwardedFor(addr: string): string {
  // RFC 7239: IPv6 addresses are quoted and bracketed.
  return addr.includes(':') ? `"[${addr}]"` : addr;
}

/**
 * Builds the upstream request's headers as undici's flat [name, value, ...] array, which keeps
 * duplicates and costs no object per request.
 */
export function upstreamRequestHeaders(req: IncomingMessage, proto: 'http' | 'https'): string[] {
  return forwardedHeaders(req.rawHeaders, req.socket.remoteAddress, req.headers.host, req.headers.connection, proto);
}

/**
 * The same from the parts of a request head: its raw header lines, the client's address, its Host
 * value and its Connection header (lines joined with ", "; undefined for none).
 */
export function forwardedHeaders(
  raw: readonly string[],
  remoteAddress: string | undefined,
  host: string | undefined,
  connection: string | string[] | undefined,
  proto: 'http' | 'https',
): string[] {
  const extra = connectionListed(connection);
  const out: string[] = [];
  let priorXff: string | null = null;
  let priorForwarded: string | null = null;
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!;
    const lower = name.toLowerCase();
    if (lower === 'x-forwarded-for') {
      priorXff = priorXff === null ? raw[i + 1]! : `${priorXff}, ${raw[i + 1]!}`;
      continue;
    }
    if (lower === 'forwarded') {
      priorForwarded = priorForwarded === null ? raw[i + 1]! : `${priorForwarded}, ${raw[i + 1]!}`;
      continue;
    }
    if (REQUEST_DROP.has(lower) || extra?.has(lower) === true) continue;
    out.push(name, raw[i + 1]!);
  }
  const client = remoteAddress ?? 'unknown';
  out.push('x-forwarded-for', priorXff === null ? client : `${priorXff}, ${client}`);
  out.push('x-forwarded-proto', proto);
  if (host !== undefined) out.push('x-forwarded-host', host);
  const mine = `for=${forwardedFor(client)};proto=${proto}${host !== undefined ? `;host="${host.replace(/["\\]/g, '')}"` : ''}`;
  out.push('forwarded', priorForwarded === null ? mine : `${priorForwarded}, ${mine}`);
  return out;
}

/**
 * Filters an upstream response's raw headers (undici gives Buffers) into the flat array
 * res.writeHead takes, dropping hop-by-hop headers and any the caller sets itself.
 */
export function downstreamResponseHeaders(
  raw: readonly (Buffer | string)[],
  drop: ReadonlySet<string> | null,
): string[] {
  const out: string[] = [];
  // One pass that decodes each name once; headers a Connection line names (rare: Ollama sends none)
  // are taken out afterwards, since that line may come after them.
  let extra: Set<string> | null = null;
  const lowers: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i]!.toString();
    const lower = name.toLowerCase();
    if (lower === 'connection') {
      const listed = connectionListed(raw[i + 1]!.toString());
      if (listed !== null) extra = extra === null ? listed : new Set([...extra, ...listed]);
      continue;
    }
    if (HOP_BY_HOP.has(lower) || drop?.has(lower) === true) continue;
    const value = raw[i + 1]!;
    out.push(name, typeof value === 'string' ? value : value.toString('latin1'));
    lowers.push(lower);
  }
  if (extra === null) return out;
  const kept: string[] = [];
  for (let j = 0; j < lowers.length; j++) if (!extra.has(lowers[j]!)) kept.push(out[2 * j]!, out[2 * j + 1]!);
  return kept;
}
