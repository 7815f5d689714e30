/** The node's side of the control endpoint (daemon/control.ts): answers stop requests that carry the token. */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { chmodSync, rmSync } from 'node:fs';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { once } from 'node:events';
import { errorMessage, systemCode } from '../errors.ts';
import { writeFileAtomic } from '../identity/atomic-file.ts';
import type { Logger } from '../log.ts';
import { http } from '../net/node-http.ts';
import { addressFits, CONTROL_STOP_PATH, type ControlLine } from './control.ts';

export interface ControlOptions {
  readonly address: string;
  readonly tokenFile: string;
  readonly os: NodeJS.Platform;
  readonly log: Logger;
  /** Called for each accepted stop request; the node starts stopping (once). */
  readonly onStop: () => void;
}

export class ControlServer {
  readonly #server: Server;
  readonly #opts: ControlOptions;
  readonly #token: Buffer;
  readonly #waiting: ServerResponse[] = [];
  #closed: Promise<void> | null = null;

  private constructor(opts: ControlOptions, token: Buffer) {
    this.#opts = opts;
    this.#token = token;
    this.#server = http.createServer((req, res) => this.#handle(req, res));
  }

  /**
   * Writes a fresh token and listens; null (and a warning) when it cannot, since the node runs fine
   * without it and signals still stop it where there are any.
   */
  static async start(opts: ControlOptions): Promise<ControlServer | null> {
    const why = (reason: string): null => {
      opts.log.warn(
        { address: opts.address, reason },
        `no control endpoint (${reason}): \`ollana stop\` can reach this node only by signal`,
      );
      return null;
    };
    if (!addressFits(opts.address, opts.os))
      return why(`the socket path ${opts.address} is too long; use a shorter --pid-file`);
    const token = randomBytes(32);
    try {
      writeFileAtomic(opts.tokenFile, token.toString('hex'), 0o600);
    } catch (err) {
      return why(`cannot write ${opts.tokenFile}: ${errorMessage(err)}`);
    }
    const control = new ControlServer(opts, token);
    // A socket file left by a killed node: this node holds the pid file, so no live node owns it.
    if (opts.os !== 'win32') rmSync(opts.address, { force: true });
    try {
      control.#server.listen(opts.address);
      await once(control.#server, 'listening');
      if (opts.os !== 'win32') chmodSync(opts.address, 0o600);
    } catch (err) {
      control.#server.close();
      return why(`cannot listen on ${opts.address}: ${systemCode(err) ?? errorMessage(err)}`);
    }
    control.#server.unref();
    return control;
  }

  #authorized(req: IncomingMessage): boolean {
    const m = /^Bearer ([0-9a-f]{64})$/.exec(req.headers.authorization ?? '');
    return m !== null && timingSafeEqual(Buffer.from(m[1]!, 'hex'), this.#token);
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    req.resume();
    const reply = (status: number, code: string, message: string): void => {
      res.writeHead(status, { 'content-type': 'application/json', connection: 'close' });
      res.end(JSON.stringify({ error: message, code }));
    };
    const refusal =
      req.url !== CONTROL_STOP_PATH
        ? { status: 404, why: `no control action at ${req.url}` }
        : req.method !== 'POST'
          ? { status: 405, why: 'stop takes POST' }
          : !this.#authorized(req)
            ? { status: 401, why: "the token is missing or wrong: read it from the node's data directory" }
            : null;
    if (refusal !== null) {
      reply(refusal.status, 'OLN_CONTROL_REFUSED', refusal.why);
      return;
    }
    res.writeHead(202, { 'content-type': 'application/x-ndjson', connection: 'close' });
    res.write(`${JSON.stringify({ state: 'stopping', pid: process.pid } satisfies ControlLine)}\n`);
    this.#waiting.push(res);
    this.#opts.log.info('stop requested through the control endpoint');
    this.#opts.onStop();
  }

  /** The node has stopped: tell every waiting `ollana stop`, stop listening, remove the token. Once. */
  close(cut: number): Promise<void> {
    this.#closed ??= this.#close(cut);
    return this.#closed;
  }

  async #close(cut: number): Promise<void> {
    const line = `${JSON.stringify({ state: 'stopped', pid: process.pid, cut } satisfies ControlLine)}\n`;
    const waiting = this.#waiting.splice(0);
    await Promise.all(waiting.map((res) => new Promise<void>((resolve) => res.end(line, () => resolve()))));
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
    rmSync(this.#opts.tokenFile, { force: true });
    if (this.#opts.os !== 'win32') rmSync(this.#opts.address, { force: true });
  }
}
