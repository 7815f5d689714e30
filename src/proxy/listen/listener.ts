/**
 * A proxy worker's listening socket on the shared port (reusePort, so every worker thread has its own
 * and the kernel spreads connections): node:http, or node:https on a server node's LAN port, whose
 * finished handshakes pass the trust gate before one byte is parsed. Every admitted connection is
 * read first by the fast front (fast/front.ts), which hands node:http what it does not relay itself.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { http, https } from '../../net/node-http.ts';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { Logger } from '../../log.ts';
import type { TrustSettings } from '../../protocol/messages.ts';
import { HANDSHAKE_TIMEOUT_MS, countHandshake, tlsServerOptions } from '../../net/tls.ts';
import type { ConnectionGuard } from './connection-guard.ts';
import { guardedServerOptions } from './guard-settings.ts';
import { TrustGate } from './trust-gate.ts';
import { refusalReply } from './refusal.ts';
import type { FastFront } from '../fast/front.ts';
import type { StatsCollector } from '../stats.ts';
import type { ProxyHost, ProxySettings } from '../proxy-server.ts';

export class Listener {
  readonly #settings: ProxySettings;
  readonly #log: Logger;
  readonly #host: ProxyHost;
  readonly #stats: StatsCollector;
  readonly #guard: ConnectionGuard;
  readonly #front: FastFront;
  readonly #server: Server;
  readonly #gate: TrustGate | null;

  /** `handler`: the node:http path, for every request the front hands over (handler.ts). */
  constructor(
    settings: ProxySettings,
    log: Logger,
    host: ProxyHost,
    stats: StatsCollector,
    guard: ConnectionGuard,
    front: FastFront,
    handler: (req: IncomingMessage, res: ServerResponse) => void,
  ) {
    this.#settings = settings;
    this.#log = log;
    this.#host = host;
    this.#stats = stats;
    this.#guard = guard;
    this.#front = front;
    const httpOptions = {
      noDelay: true,
      keepAliveTimeout: settings.keepAliveTimeoutMs,
      // No requestTimeout: a streamed generation may run for many minutes. Header size and header
      // time stay bounded (connection-guard.ts) so a slow-header client cannot hold a socket.
      requestTimeout: 0,
      ...guardedServerOptions(settings),
    };
    if (settings.listenTls && settings.tls !== null) {
      this.#gate = new TrustGate(settings.tls.id, settings.trust);
      this.#server = https().createServer({ ...httpOptions, ...tlsServerOptions(settings.tls) }, handler);
      this.#guardHandshakes(this.#server as Server & { on: Server['on'] });
    } else {
      this.#gate = null;
      this.#server = http.createServer(httpOptions, handler);
      const parse = this.#server.listeners('connection')[0] as ((socket: Socket) => void) | undefined;
      if (parse === undefined) throw new Error('http server without a connection listener');
      this.#server.removeAllListeners('connection');
      this.#server.on('connection', (socket: Socket) =>
        this.#front.adopt(socket, () => parse.call(this.#server, socket)),
      );
    }
    // The https server is the HTTP server too: one connection cap, one clientError handler.
    this.#guard.attach(this.#server, settings.listenTls && settings.tls !== null);
  }

  /**
   * The https server hands every finished handshake to its HTTP parser through one 'secureConnection'
   * listener. It is taken out and called only for allowed devices: a refused one gets a fixed 403 and
   * is closed, and not one byte it sent is parsed.
   */
  #guardHandshakes(server: Server): void {
    const parse = server.listeners('secureConnection')[0] as ((socket: TLSSocket) => void) | undefined;
    if (parse === undefined) throw new Error('https server without a secureConnection listener');
    server.removeAllListeners('secureConnection');
    server.on('secureConnection', (socket: TLSSocket) => {
      countHandshake(socket);
      // The TCP socket the guard admitted is the TLS socket's parent (node:tls wraps it).
      const raw = (socket as TLSSocket & { _parent?: Socket | null })._parent;
      if (raw) this.#guard.established(raw);
      const admission = this.#gate!.admit(socket);
      if (admission.verdict === 'allowed') {
        this.#front.adopt(socket, () => parse.call(server, socket));
        return;
      }
      this.#stats.status(403);
      this.#host.refused(admission, socket.remoteAddress ?? '?');
      socket.setTimeout(2_000, () => socket.destroy());
      socket.end(refusalReply(admission, this.#settings.tls!.id));
    });
    server.on('tlsClientError', (err: Error & { code?: string }, socket) => {
      // Plain HTTP on the TLS port, a port scanner, a handshake that stalled: nothing was served.
      const name =
        err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT'
          ? `no handshake within ${HANDSHAKE_TIMEOUT_MS / 1000} s, ${err.code}`
          : (err.code ?? err.message);
      this.#host.refused({ verdict: 'bad-handshake', id: null, name }, socket.remoteAddress ?? '?');
      socket.destroy();
    });
  }

  /** Applies a new allow list at once: connections of devices no longer allowed are cut. */
  setTrust(trust: TrustSettings): void {
    const cut = this.#gate?.update(trust) ?? [];
    if (cut.length > 0)
      this.#log.info({ devices: cut }, `cut the connections of ${cut.length} device(s) no longer allowed`);
  }

  async listen(): Promise<void> {
    const reusePort = this.#settings.reusePort !== false;
    this.#server.listen({ host: this.#settings.host, port: this.#settings.port, reusePort, backlog: 4096 });
    await once(this.#server, 'listening');
  }

  /** Stops accepting and closes the connections that have no request in flight (the drain begins). */
  stopAccepting(): void {
    this.#server.close();
    this.#server.closeIdleConnections();
  }

  /** Cuts every connection node:http holds (the drain's deadline passed). */
  closeAll(): void {
    this.#server.closeAllConnections();
  }
}
