/** Start-up checks against the network: does an Ollama answer, is our port free. */
import { createServer } from 'node:net';
import { connect } from 'node:tls';
import { request } from './undici.ts';
import { OllanaError, systemCode } from '../errors.ts';
import { outOfFiles } from './open-files.ts';
import type { OllamaTarget } from '../config/ollama-host.ts';

export type ProbeResult =
  | { readonly ok: true; readonly version: string }
  /** outOfFiles: this process could not open a connection to ask (open-files.ts), which says nothing about Ollama. */
  | { readonly ok: false; readonly reason: string; readonly outOfFiles?: true };

/** Asks GET /api/version, as the ollama CLI does; anything but a 200 with a version is "no Ollama". */
export async function probeOllama(target: OllamaTarget, timeoutMs: number): Promise<ProbeResult> {
  const url = `${target.origin}${target.basePath}/api/version`;
  try {
    const res = await request(url, {
      method: 'GET',
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs),
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) return { ok: false, reason: `${url} answered HTTP ${res.statusCode}` };
    const version = (JSON.parse(text) as { version?: unknown }).version;
    if (typeof version !== 'string') return { ok: false, reason: `${url} answered without a version: not an Ollama` };
    return { ok: true, version };
  } catch (err) {
    const code = systemCode(err) ?? systemCode((err as { cause?: unknown }).cause);
    const reason = `${url}: ${code ?? (err as Error).message}`;
    return outOfFiles(err) ? { ok: false, reason, outOfFiles: true } : { ok: false, reason };
  }
}

/** Whether an ollana node answers at `origin` (its /ollana/v1/health). */
export async function probeOllana(origin: string, timeoutMs: number): Promise<boolean> {
  try {
    const res = await request(`${origin}/ollana/v1/health`, { headersTimeout: timeoutMs, bodyTimeout: timeoutMs,
      signal: AbortSignal.timeout(timeoutMs) });
    const body = await res.body.json() as { ok?: unknown };
    return res.statusCode === 200 && body.ok === true;
  } catch {
    return false;
  }
}

/**
 * Whether an ollana server node's TLS port is at host:port: its handshake presents an ollana
 * certificate (it may then refuse this process, which has no allowed identity; the handshake is enough).
 */
export function probeOllanaTls(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, rejectUnauthorized: false, minVersion: 'TLSv1.3' });
    const done = (ok: boolean): void => { socket.destroy(); resolve(ok); };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('error', () => done(false));
    socket.once('secureConnect', () => {
      const cn = socket.getPeerCertificate()?.subject?.CN;
      done(typeof cn === 'string' && cn.startsWith('ollana'));
    });
  });
}

/** The model names the Ollama at `target` lists, or null when it does not answer. */
export async function fetchModels(target: OllamaTarget, timeoutMs: number): Promise<string[] | null> {
  try {
    const res = await request(`${target.origin}${target.basePath}/api/tags`, {
      headersTimeout: timeoutMs, bodyTimeout: timeoutMs, signal: AbortSignal.timeout(timeoutMs),
    });
    const body = await res.body.json() as { models?: { name?: unknown }[] };
    if (res.statusCode !== 200) return null;
    return (body.models ?? []).map((m) => m.name).filter((n): n is string => typeof n === 'string');
  } catch {
    return null;
  }
}

/**
 * Binds host:port once without SO_REUSEPORT and lets it go. Our workers bind with SO_REUSEPORT, which
 * Linux lets any process of the same user share silently; this exclusive bind is what notices that
 * another program (or another ollana) already holds the port. Port 0 resolves to a free port.
 */
export async function claimPort(host: string, port: number, flag: string): Promise<number> {
  const server = createServer();
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen({ host, port, exclusive: true }, resolve);
    });
  } catch (err) {
    const code = systemCode(err);
    if (code === 'EADDRINUSE') {
      throw new OllanaError('OLN_PORT_IN_USE',
        `port ${port} on ${host} is already in use by another program; stop it, or choose another address with ${flag}`,
        { details: { host, port } });
    }
    if (code === 'EACCES') {
      throw new OllanaError('OLN_PORT_DENIED',
        `not allowed to listen on ${host}:${port} (ports below 1024 need privileges); choose another with ${flag}`,
        { details: { host, port } });
    }
    if (code === 'EADDRNOTAVAIL') {
      throw new OllanaError('OLN_BAD_FLAG',
        `${host} is not an address of this machine; choose one of its addresses (or 0.0.0.0) with ${flag}`,
        { details: { host, port } });
    }
    throw new OllanaError('OLN_INTERNAL', `cannot listen on ${host}:${port}: ${(err as Error).message}`, { cause: err });
  }
  const address = server.address();
  const actual = typeof address === 'object' && address !== null ? address.port : port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return actual;
}
