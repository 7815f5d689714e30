/**
 * Parses OLLAMA_HOST exactly as Ollama does (envconfig.Host + ConnectableHost), so that ollana finds
 * the same Ollama the `ollama` CLI on this machine would talk to.
 *
 * - quotes and spaces are trimmed; empty means http://127.0.0.1:11434
 * - no scheme: http and port 11434; the exact value `ollama.com` is https://ollama.com:443
 * - `http://h` without a port is port 80, `https://h` is 443 (a real Ollama gotcha, kept on purpose)
 * - a path is kept; IPv6 with or without brackets; an invalid port falls back to the default
 * - 0.0.0.0, :: and an empty host are listen-everywhere addresses: a client connects to loopback
 */
import { OllanaError } from '../errors.ts';

const DEFAULT_PORT = 11434;

export interface OllamaTarget {
  /** Connectable origin, e.g. http://127.0.0.1:11434 (no trailing slash, no path). */
  readonly origin: string;
  /** Path prefix to join /api/... onto; '' when none. */
  readonly basePath: string;
}

export function parseOllamaHost(raw: string | undefined, source = 'OLLAMA_HOST'): OllamaTarget {
  let value = (raw ?? '')
    .trim()
    .replace(/^["']+|["']+$/g, '')
    .trim();
  if (value === '') value = '127.0.0.1:11434';
  if (value === 'ollama.com') return { origin: 'https://ollama.com:443', basePath: '' };

  let scheme = 'http';
  let defaultPort = DEFAULT_PORT;
  const schemeMatch = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\//.exec(value);
  if (schemeMatch) {
    scheme = schemeMatch[1]!.toLowerCase();
    value = value.slice(schemeMatch[0].length);
    if (scheme === 'http') defaultPort = 80;
    else if (scheme === 'https') defaultPort = 443;
    else {
      throw new OllanaError(
        'OLN_BAD_OLLAMA_URL',
        `${source} "${raw}" uses the scheme "${scheme}"; Ollama speaks http or https, e.g. http://127.0.0.1:11434`,
      );
    }
  }

  const slash = value.indexOf('/');
  const hostPort = slash === -1 ? value : value.slice(0, slash);
  const basePath = slash === -1 ? '' : value.slice(slash).replace(/\/+$/, '');

  let host: string;
  let portText: string | undefined;
  if (hostPort.startsWith('[')) {
    const end = hostPort.indexOf(']');
    if (end === -1) throw badUrl(raw, source, 'an IPv6 address opened with [ is never closed with ]');
    host = hostPort.slice(1, end);
    const rest = hostPort.slice(end + 1);
    if (rest.startsWith(':')) portText = rest.slice(1);
    else if (rest !== '') throw badUrl(raw, source, `unexpected "${rest}" after the IPv6 address`);
  } else if ((hostPort.match(/:/g) ?? []).length > 1) {
    host = hostPort; // bare IPv6 without brackets and without a port
  } else {
    const colon = hostPort.lastIndexOf(':');
    host = colon === -1 ? hostPort : hostPort.slice(0, colon);
    portText = colon === -1 ? undefined : hostPort.slice(colon + 1);
  }

  let port = defaultPort;
  if (portText !== undefined && /^\d+$/.test(portText)) {
    const n = Number(portText);
    if (n > 0 && n < 65536) port = n; // Ollama falls back to the default on a bad port, so do we
  }

  if (host === '' || host === '0.0.0.0') host = '127.0.0.1';
  else if (host === '::') host = '::1';
  if (!/^[A-Za-z0-9.\-_:%]+$/.test(host)) {
    throw badUrl(raw, source, `"${host}" is not a host name or IP address`);
  }
  const hostText = host.includes(':') ? `[${host}]` : host;
  return { origin: `${scheme}://${hostText}:${port}`, basePath };
}

function badUrl(raw: string | undefined, source: string, why: string): OllanaError {
  return new OllanaError(
    'OLN_BAD_OLLAMA_URL',
    `${source} "${raw}" is not a usable Ollama address: ${why}. Use a form like http://127.0.0.1:11434`,
  );
}
