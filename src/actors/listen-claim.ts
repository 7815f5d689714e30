/**
 * The node's listen address, claimed exclusively before the proxy workers bind it with SO_REUSEPORT
 * (which Linux lets any process of the same user share silently), and the diagnosis of a taken port:
 * another ollana there, or (for a client node) an Ollama, each with the error users meet.
 */
import { CLIENT_LISTEN, SERVER_LISTEN, type ServeConfig } from '../config/defaults.ts';
import type { OllamaTarget } from '../config/ollama-host.ts';
import { parseListen } from '../config/schema.ts';
import { OllanaError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { claimPort, probeOllama, probeOllana, probeOllanaTls, type ProbeResult } from '../net/probe.ts';
import type { NodeRole } from '../protocol/lan.ts';

export interface Listen {
  host: string;
  port: number;
}

/** The network checks a claim makes; tests replace them. */
export interface PortProbe {
  /** Binds host:port exclusively and lets go; resolves with the port (the one given, or the one picked for 0). */
  claimPort(host: string, port: number, flag: string): Promise<number>;
  /** Whether an ollana answers plain HTTP at `origin`. */
  ollana(origin: string, timeoutMs: number): Promise<boolean>;
  /** Whether an ollana answers TLS at host:port. */
  ollanaTls(host: string, port: number, timeoutMs: number): Promise<boolean>;
  ollama(target: OllamaTarget, timeoutMs: number): Promise<ProbeResult>;
}

export const netPortProbe: PortProbe = {
  claimPort,
  ollana: probeOllana,
  ollanaTls: probeOllanaTls,
  ollama: probeOllama,
};

export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

/** Claims the listen address of `role` exclusively (see claimPort), with the errors users meet. */
export async function claimListen(config: ServeConfig, role: NodeRole, probe: PortProbe): Promise<Listen> {
  const listenText = config.listen ?? (role === 'server' ? SERVER_LISTEN : CLIENT_LISTEN);
  const listen = parseListen(listenText);
  if (listen === null) throw new OllanaError('OLN_BAD_FLAG', `--listen "${listenText}" must be host:port`);
  if (role === 'server' && config.insecureHttp && !isLoopback(listen.host)) {
    throw new OllanaError(
      'OLN_BAD_FLAG',
      `--insecure-http would serve plain HTTP on ${listen.host}:${listen.port}, ` +
        'where the LAN could read every prompt; it is allowed only with a loopback --listen (e.g. 127.0.0.1:11435). ' +
        'Leave it out to serve the LAN over TLS',
      { details: { flag: '--insecure-http', host: listen.host, port: listen.port } },
    );
  }
  try {
    listen.port = await probe.claimPort(listen.host, listen.port, '--listen');
  } catch (err) {
    if (!(err instanceof OllanaError && err.code === 'OLN_PORT_IN_USE')) throw err;
    const connectHost = listen.host === '0.0.0.0' ? '127.0.0.1' : listen.host === '::' ? '::1' : listen.host;
    const origin = `http://${connectHost.includes(':') ? `[${connectHost}]` : connectHost}:${listen.port}`;
    if (
      (await probe.ollana(origin, config.probeTimeoutMs)) ||
      (await probe.ollanaTls(connectHost, listen.port, config.probeTimeoutMs))
    ) {
      throw new OllanaError(
        'OLN_PORT_IN_USE',
        `another ollana already serves on ${listen.host}:${listen.port}; stop it (\`ollana stop\`, or Ctrl-C where it runs), ` +
          'or give this one its own --listen and --pid-file',
        { details: { host: listen.host, port: listen.port, holder: 'ollana' } },
      );
    }
    if (role === 'client') {
      const there = await probe.ollama({ origin, basePath: '' }, config.probeTimeoutMs);
      if (there.ok) {
        throw new OllanaError(
          'OLN_OLLAMA_ON_PORT',
          `an Ollama already listens on ${listen.host}:${listen.port}, so this machine should share it, not borrow one: ` +
            'run `ollana serve` (auto mode makes it a server node), or give the client node another --listen address',
          { details: { host: listen.host, port: listen.port } },
        );
      }
    }
    throw err;
  }
  return listen;
}

/** Whether `origin` (http://host:port) is the listener at `listen`. */
export function isOwnAddress(origin: string, listen: Listen): boolean {
  const u = new URL(origin);
  if (Number(u.port || 80) !== listen.port) return false;
  const host = u.hostname.replace(/^\[|\]$/g, '');
  const local = new Set(['127.0.0.1', 'localhost', '::1', '0.0.0.0', '::']);
  return host === listen.host || (local.has(host) && local.has(listen.host)) || listen.host === '0.0.0.0';
}

/** The URL a listener at `listen` is reached on, for the "listening" line and `ollana serve -d`. */
export function listenUrl(listen: Listen, tls: boolean): string {
  const { host, port } = listen;
  return `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** What a started node listens on. */
export interface Started {
  readonly role: NodeRole;
  readonly host: string;
  readonly port: number;
  readonly url: string;
}

/** Logs the line that says the node listens (tests and `ollana serve -d` wait for it) and returns where. */
export function announceListening(
  listen: Listen,
  role: NodeRole,
  config: Pick<ServeConfig, 'workers' | 'insecureHttp'>,
  deviceId: string,
  log: Logger,
): Started {
  const { host, port } = listen;
  const workers = config.workers;
  const url = listenUrl(listen, role === 'server' && !config.insecureHttp);
  log.info(
    { role, url, host, port, workers, deviceId },
    `ollana ${role} node listening on ${url} with ${workers} proxy worker${workers === 1 ? '' : 's'}`,
  );
  return { role, host, port, url };
}
