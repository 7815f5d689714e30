/**
 * Browser access, decided at ollana's edge the way Ollama decides it (gin-contrib/cors with Ollama's
 * defaults plus OLLAMA_ORIGINS), and the DNS-rebinding Host check Ollama applies on a loopback bind.
 * ollana strips Origin before forwarding, so the upstream Ollama never refuses a browser that ollana
 * allowed, wherever that Ollama runs and whatever its own OLLAMA_ORIGINS says.
 */
import { isIP } from 'node:net';
import { hostname } from 'node:os';

const DEFAULT_ORIGINS = [
  'http://localhost',
  'https://localhost',
  'http://localhost:*',
  'https://localhost:*',
  'http://127.0.0.1',
  'https://127.0.0.1',
  'http://127.0.0.1:*',
  'https://127.0.0.1:*',
  'http://0.0.0.0',
  'https://0.0.0.0',
  'http://0.0.0.0:*',
  'https://0.0.0.0:*',
  'app://*',
  'file://*',
  'tauri://*',
  'vscode-webview://*',
  'vscode-file://*',
];

export const CORS_ALLOW_METHODS = 'GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS';
export const CORS_ALLOW_HEADERS = [
  'Authorization',
  'Content-Type',
  'User-Agent',
  'Accept',
  'X-Requested-With',
  'OpenAI-Beta',
  'x-stainless-arch',
  'x-stainless-async',
  'x-stainless-custom-poll-interval',
  'x-stainless-helper-method',
  'x-stainless-lang',
  'x-stainless-os',
  'x-stainless-package-version',
  'x-stainless-poll-helper',
  'x-stainless-retry-count',
  'x-stainless-runtime',
  'x-stainless-runtime-version',
  'x-stainless-timeout',
].join(', ');
export const CORS_MAX_AGE = String(12 * 3600);

function escapeRegex(s: string): string {
  return s.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
}

export class OriginPolicy {
  readonly #exact = new Set<string>();
  readonly #patterns: RegExp[] = [];
  readonly #any: boolean;

  constructor(extra: readonly string[]) {
    const all = [...DEFAULT_ORIGINS, ...extra];
    this.#any = all.includes('*');
    for (const origin of all) {
      if (origin === '*') continue;
      if (origin.includes('*'))
        this.#patterns.push(new RegExp(`^${origin.split('*').map(escapeRegex).join('.*')}$`, 'i'));
      else this.#exact.add(origin.toLowerCase());
    }
  }

  /** Whether a browser page at `origin` may use this node; same-origin requests always may. */
  allows(origin: string, host: string | undefined): boolean {
    if (this.#any) return true;
    const lower = origin.toLowerCase();
    if (host !== undefined && (lower === `http://${host.toLowerCase()}` || lower === `https://${host.toLowerCase()}`))
      return true;
    if (this.#exact.has(lower)) return true;
    return this.#patterns.some((re) => re.test(origin));
  }
}

const LOCAL_SUFFIXES = ['.localhost', '.local', '.internal'];
/** Read once: os.hostname() is a uname(2) system call, and this check runs on every request. */
const HOSTNAME = hostname().toLowerCase();

function isPrivateOrLocalIp(ip: string): boolean {
  if (isIP(ip) === 4) {
    const [a, b] = ip.split('.').map(Number) as [number, number];
    return (
      a === 127 ||
      a === 10 ||
      a === 0 ||
      (a === 172 && b >= 16 && b <= 31) ||
      (a === 192 && b === 168) ||
      (a === 169 && b === 254)
    );
  }
  const v6 = ip.toLowerCase();
  return (
    v6 === '::1' ||
    v6 === '::' ||
    v6.startsWith('fc') ||
    v6.startsWith('fd') ||
    v6.startsWith('fe80') ||
    v6.startsWith('::ffff:127.')
  );
}

/**
 * The last Host value allowed. A client sends the same Host on every request, and parsing it was
 * ~1 % of a client node's CPU at high request rates (bench profile); a refused value is never kept.
 */
let lastAllowed: string | null = null;

/**
 * Ollama's allowedHostsMiddleware: on a loopback bind, a Host that names some other machine means a
 * web page reached us through DNS rebinding; refuse it. Empty Host, localhost, local names and local
 * or private IPs pass.
 */
export function hostAllowedOnLoopback(hostHeader: string | undefined): boolean {
  if (hostHeader === undefined || hostHeader === '' || hostHeader === lastAllowed) return true;
  const allowed = hostAllowed(hostHeader);
  if (allowed) lastAllowed = hostHeader;
  return allowed;
}

function hostAllowed(hostHeader: string): boolean {
  let host = hostHeader;
  if (host.startsWith('[')) host = host.slice(1, host.indexOf(']') === -1 ? undefined : host.indexOf(']'));
  else if ((host.match(/:/g) ?? []).length === 1) host = host.slice(0, host.indexOf(':'));
  host = host.toLowerCase();
  if (host === 'localhost' || host === HOSTNAME) return true;
  if (LOCAL_SUFFIXES.some((s) => host.endsWith(s))) return true;
  return isIP(host) !== 0 && isPrivateOrLocalIp(host);
}
