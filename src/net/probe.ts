/**
 * Start-up and health checks against the network: does an Ollama answer, is our port free.
 *
 * The checks are small GETs made with node:http, not undici: a server node's main thread then
 * never loads undici (~7 MB per thread; only client nodes need it, for the cluster's model lists).
 */
import type { IncomingMessage } from 'node:http';
import { http, https } from './node-http.ts';
import { createServer } from 'node:net';
import { connect } from 'node:tls';
import { OllanaError, systemCode } from '../errors.ts';
import { outOfFiles } from './open-files.ts';
import type { OllamaTarget } from '../config/ollama-host.ts';

export type ProbeResult =
  | { readonly ok: true; readonly version: string }
  /** outOfFiles: this process could not open a connection to ask (open-files.ts), which says nothing about Ollama. */
  | { readonly ok: false; readonly reason: string; readonly outOfFiles?: true };

/** The probes' connections: kept between checks (one a heartbeat), a couple per Ollama at most. */
const agent = new http.Agent({ keepAlive: true, maxSockets: 2, maxFreeSockets: 2 });
/** Largest answer a probe reads (a model list can be long; an Ollama never answers more). */
const MAX_ANSWER = 16 * 1024 * 1024;

/**
 * GET `url` over plain HTTP or HTTPS; resolves with the status and the body as text, within
 * `timeoutMs`. A kept connection the server had just closed is retried once on a new one.
 */
function fetchText(url: string, timeoutMs: number, retried = false): Promise<{ status: number; text: string }> {
  const tls = url.startsWith('https:');
  const send = tls ? https().get : http.get;
  return new Promise<{ status: number; text: string }>((resolve, reject) => {
    const signal = AbortSignal.timeout(timeoutMs);
    const req = send(url, { signal, ...(tls ? {} : { agent }) }, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_ANSWER) req.destroy(new Error(`answer over ${MAX_ANSWER} bytes`));
        else chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', (err: Error & { code?: string }) => {
      if (signal.aborted) reject(Object.assign(new Error(`no answer within ${timeoutMs} ms`), { code: 'ETIMEDOUT' }));
      else if (req.reusedSocket && !retried && (err.code === 'ECONNRESET' || err.code === 'EPIPE'))
        fetchText(url, timeoutMs, true).then(resolve, reject);
      else reject(err);
    });
  });
}

/** Asks GET /api/version, as the ollama CLI does; anything but a 200 with a version is "no Ollama". */
export async function probeOllama(target: OllamaTarget, timeoutMs: number): Promise<ProbeResult> {
  const url = `${target.origin}${target.basePath}/api/version`;
  try {
    const { status, text } = await fetchText(url, timeoutMs);
    if (status !== 200) return { ok: false, reason: `${url} answered HTTP ${status}` };
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
    const { status, text } = await fetchText(`${origin}/ollana/v1/health`, timeoutMs);
    return status === 200 && (JSON.parse(text) as { ok?: unknown }).ok === true;
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
    const done = (ok: boolean): void => {
      socket.destroy();
      resolve(ok);
    };
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
    const { status, text } = await fetchText(`${target.origin}${target.basePath}/api/tags`, timeoutMs);
    if (status !== 200) return null;
    const body = JSON.parse(text) as { models?: { name?: unknown }[] };
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
      throw new OllanaError(
        'OLN_PORT_IN_USE',
        `port ${port} on ${host} is already in use by another program; stop it, or choose another address with ${flag}`,
        { details: { host, port, holder: 'program' } },
      );
    }
    if (code === 'EACCES') {
      throw new OllanaError(
        'OLN_PORT_DENIED',
        `not allowed to listen on ${host}:${port} (ports below 1024 need privileges); choose another with ${flag}`,
        { details: { host, port } },
      );
    }
    if (code === 'EADDRNOTAVAIL') {
      throw new OllanaError(
        'OLN_BAD_FLAG',
        `${host} is not an address of this machine; choose one of its addresses (or 0.0.0.0) with ${flag}`,
        { details: { host, port } },
      );
    }
    throw new OllanaError('OLN_INTERNAL', `cannot listen on ${host}:${port}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const address = server.address();
  const actual = typeof address === 'object' && address !== null ? address.port : port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return actual;
}
