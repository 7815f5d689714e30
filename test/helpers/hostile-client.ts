/**
 * Hostile HTTP clients for the hardening tests: crafted bytes on raw connections, slow senders and
 * connection floods. Every attack takes a Connect, so the same attacks run over plain TCP now and over
 * a TLS listener later (a Connect that resolves after the handshake).
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { connect as tlsConnect } from 'node:tls';
import { connect as netConnect } from 'node:net';
import type { Duplex } from 'node:stream';

/** Opens one connection and resolves once bytes can be written (TCP connected, TLS handshake done). */
export type Connect = () => Promise<Duplex>;

export function tcp(port: number, host = '127.0.0.1'): Connect {
  return async () => {
    const socket = netConnect({ port, host });
    // A server that refuses a connection resets it, maybe before the caller listens for errors; the
    // reset shows as 'close' (and once() below still rejects on an error before the connect).
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    return socket;
  };
}

/** TLS as a device (its certificate and key), for attacks on a server node's TLS port. */
export function tlsAs(port: number, device: { certPem: string; keyPem: string } | null, host = '127.0.0.1'): Connect {
  return async () => {
    const socket = tlsConnect({
      port,
      host,
      rejectUnauthorized: false,
      ...(device === null ? {} : { cert: device.certPem, key: device.keyPem }),
    });
    await once(socket, 'secureConnect');
    return socket;
  };
}

export interface ParsedResponse {
  readonly status: number;
  readonly headers: Record<string, string>;
  readonly body: string;
}

/**
 * Splits the bytes a server sent into responses (Content-Length, chunked, or to the end). Stops at
 * anything that does not parse; `rest` holds it.
 */
export function parseResponses(raw: Buffer): { responses: ParsedResponse[]; rest: string } {
  const text = raw.toString('latin1');
  const responses: ParsedResponse[] = [];
  let at = 0;
  while (at < text.length) {
    const headEnd = text.indexOf('\r\n\r\n', at);
    const status = /^HTTP\/1\.[01] (\d{3})/.exec(text.slice(at, at + 16));
    if (headEnd < 0 || status === null) break;
    const headers: Record<string, string> = {};
    for (const line of text.slice(at, headEnd).split('\r\n').slice(1)) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    let body: string;
    let next: number;
    if (headers['content-length'] !== undefined) {
      next = headEnd + 4 + Number(headers['content-length']);
      if (next > text.length) break;
      body = text.slice(headEnd + 4, next);
    } else if (headers['transfer-encoding'] === 'chunked') {
      body = '';
      next = headEnd + 4;
      for (;;) {
        const lineEnd = text.indexOf('\r\n', next);
        if (lineEnd < 0) return { responses, rest: text.slice(at) };
        const size = parseInt(text.slice(next, lineEnd), 16);
        if (size === 0) {
          next = lineEnd + 4;
          break;
        }
        body += text.slice(lineEnd + 2, lineEnd + 2 + size);
        next = lineEnd + 2 + size + 2;
      }
    } else {
      next = text.length;
      body = text.slice(headEnd + 4);
    }
    responses.push({ status: Number(status[1]), headers, body });
    at = next;
  }
  return { responses, rest: text.slice(at) };
}

export interface Exchange {
  /** Every byte the server sent until it closed the connection or the deadline passed. */
  readonly raw: Buffer;
  readonly responses: ParsedResponse[];
  /** Bytes after the last response that do not parse as one. */
  readonly rest: string;
  /** Whether the server closed (or reset) the connection before the deadline. */
  readonly closed: boolean;
}

/**
 * Writes `steps` in order (a function step is awaited between writes, to split a request across
 * reads), then collects what the server sends until it closes the connection or `deadlineMs` passes.
 */
export async function exchange(
  connect: Connect,
  steps: ReadonlyArray<string | Buffer | (() => Promise<void>)>,
  deadlineMs = 5_000,
): Promise<Exchange> {
  const socket = await connect();
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => undefined); // a reset is a close too
  const closed = new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), deadlineMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  for (const step of steps) {
    if (typeof step === 'function') await step();
    else if (!socket.destroyed) socket.write(typeof step === 'string' ? Buffer.from(step, 'latin1') : step);
  }
  const wasClosed = await closed;
  socket.destroy();
  const raw = Buffer.concat(chunks);
  return { raw, ...parseResponses(raw), closed: wasClosed };
}

export interface SlowClient {
  /** performance.now() when the connection was up */
  readonly openedAt: number;
  closedAt: number | null;
  received: string;
  readonly closed: Promise<void>;
}

export interface Slowloris {
  readonly clients: readonly SlowClient[];
  /** Clients the server has not closed yet. */
  open(): number;
  /** Resolves once the server closed every client; rejects after deadlineMs saying how many stayed. */
  allClosed(deadlineMs: number): Promise<void>;
  /** Stops trickling and destroys what is left. */
  stop(): void;
}

/**
 * Opens `count` connections that send a request head one small piece at a time, every `everyMs`
 * (`silent` of them send nothing at all; the others may start with `initial` at once), and never
 * finish it. Bounded: stop() ends it, and each
 * client stops by itself after `maxPieces` pieces.
 */
export async function slowloris(
  connect: Connect,
  count: number,
  opts: { everyMs: number; silent?: number; maxPieces?: number; head?: string; initial?: string },
): Promise<Slowloris> {
  const head = opts.head ?? 'GET /api/tags HTTP/1.1\r\nHost: 127.0.0.1\r\n';
  const maxPieces = opts.maxPieces ?? 1_000;
  const clients: SlowClient[] = [];
  const sockets: Duplex[] = [];
  for (let i = 0; i < count; i++) {
    const socket = await connect();
    const client: SlowClient = {
      openedAt: performance.now(),
      closedAt: null,
      received: '',
      closed: once(socket, 'close').then(() => undefined),
    };
    socket.on('data', (c: Buffer) => {
      client.received += c.toString('latin1');
    });
    socket.on('error', () => undefined);
    socket.once('close', () => {
      client.closedAt = performance.now();
    });
    clients.push(client);
    sockets.push(socket);
    // A large first piece (most of the header budget at once) makes each connection cost the most.
    if (opts.initial !== undefined && i >= (opts.silent ?? 0)) socket.write(opts.initial);
  }
  const silent = opts.silent ?? 0;
  let piece = 0;
  const timer = setInterval(() => {
    if (piece >= maxPieces) {
      clearInterval(timer);
      return;
    }
    // The head first, byte by byte, then one made-up header line after another.
    const text = piece < head.length ? head[piece]! : `X-Slow-${piece}: x\r\n`;
    piece += 1;
    for (let i = silent; i < sockets.length; i++) if (!sockets[i]!.destroyed) sockets[i]!.write(text);
  }, opts.everyMs);
  const open = (): number => clients.filter((c) => c.closedAt === null).length;
  return {
    clients,
    open,
    async allClosed(deadlineMs) {
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${open()} of ${count} slow connections still open after ${deadlineMs} ms`)),
          deadlineMs,
        );
      });
      try {
        await Promise.race([Promise.all(clients.map((c) => c.closed)), late]);
      } finally {
        clearTimeout(timer);
      }
    },
    stop() {
      clearInterval(timer);
      for (const s of sockets) s.destroy();
    },
  };
}

export interface FloodConnection {
  /** Connected (the server accepted the TCP connection). */
  connected: boolean;
  /** performance.now() at connect and at close */
  openedAt: number;
  closedAt: number | null;
  /** It sent a request (the others stay silent). */
  asked: boolean;
  /** Status of the first answer it got (to its request, or a 408 for staying silent). */
  status: number | null;
  /** The server closed it without sending a byte (over the limit, or closed as idle to make room). */
  refused: boolean;
  closed: boolean;
}

export interface Flood {
  readonly connections: readonly FloodConnection[];
  /** Destroys every connection still open. */
  stop(): void;
}

/**
 * Opens `count` connections as fast as `batch` at a time allows; connection i sends `request(i)` if
 * that is not null and keeps the connection open after the answer, the others stay silent.
 */
export async function flood(
  connect: Connect,
  count: number,
  request: (i: number) => string | null,
  batch = 200,
): Promise<Flood> {
  const connections: FloodConnection[] = [];
  const sockets: Duplex[] = [];
  const one = async (i: number): Promise<void> => {
    const c: FloodConnection = {
      connected: false,
      asked: false,
      openedAt: performance.now(),
      closedAt: null,
      status: null,
      refused: false,
      closed: false,
    };
    connections.push(c);
    let socket: Duplex;
    try {
      socket = await connect();
    } catch {
      c.refused = true;
      c.closed = true;
      return;
    }
    c.connected = true;
    c.openedAt = performance.now();
    sockets.push(socket);
    let got = '';
    socket.on('data', (chunk: Buffer) => {
      got += chunk.toString('latin1');
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      if (m !== null && c.status === null) c.status = Number(m[1]);
    });
    socket.on('error', () => undefined);
    socket.once('close', () => {
      c.closed = true;
      c.closedAt = performance.now();
      if (got === '') c.refused = true;
    });
    const text = request(i);
    if (text !== null) {
      c.asked = true;
      socket.write(text);
    }
  };
  for (let i = 0; i < count; i += batch) {
    await Promise.all(Array.from({ length: Math.min(batch, count - i) }, (_, k) => one(i + k)));
  }
  return {
    connections,
    stop() {
      for (const s of sockets) s.destroy();
    },
  };
}

/** This process's open-file limit (soft), from /proc (Linux), to size floods to what the machine allows. */
export function openFileLimit(): number {
  const m = /Max open files\s+(\d+|unlimited)/.exec(readFileSync('/proc/self/limits', 'utf8'));
  return m === null || m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
}

/** Resident set size of a process in MiB, from /proc (Linux). */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (m === null) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(m[1]) / 1024;
}

export interface KeptAlive {
  /** Sends a GET for `path` and resolves with the status of its complete answer (rejects if the connection closes first). */
  ask(path: string): Promise<number>;
  /** Writes raw bytes (stray CRLFs, say) without waiting for anything. */
  write(text: string): void;
  /** Whether the server closed (or reset) the connection, and when (performance.now()). */
  readonly closedAt: number | null;
  /** Bytes received that are not part of an answer to ask(): a refusal's 408, say. */
  readonly unasked: string;
  readonly closed: Promise<void>;
  destroy(): void;
}

/** One keep-alive connection that sends requests one after another and reads each whole answer. */
export async function keptAlive(connect: Connect, host = '127.0.0.1'): Promise<KeptAlive> {
  const socket = await connect();
  let received = Buffer.alloc(0);
  let answered = 0;
  let closedAt: number | null = null;
  let waiting: { resolve: (status: number) => void; reject: (err: Error) => void } | null = null;
  // Not once(socket, 'close'): that rejects on a reset, which is just another way to close here.
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined);
  socket.on('data', (c: Buffer) => {
    received = Buffer.concat([received, c]);
    const { responses } = parseResponses(received);
    if (waiting !== null && responses.length > answered) {
      const w = waiting;
      waiting = null;
      answered = responses.length;
      w.resolve(responses[responses.length - 1]!.status);
    }
  });
  socket.once('close', () => {
    closedAt = performance.now();
    waiting?.reject(new Error('the server closed the connection before answering'));
    waiting = null;
  });
  return {
    ask(path) {
      if (waiting !== null) return Promise.reject(new Error('one request at a time'));
      if (closedAt !== null) return Promise.reject(new Error('the connection is closed'));
      return new Promise<number>((resolve, reject) => {
        waiting = { resolve, reject };
        socket.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\n\r\n`);
      });
    },
    write(text) {
      if (!socket.destroyed) socket.write(text);
    },
    get closedAt() {
      return closedAt;
    },
    get unasked() {
      return (
        parseResponses(received)
          .responses.slice(answered)
          .map((r) => `${r.status} ${r.body}`)
          .join('\n') + parseResponses(received).rest
      );
    },
    closed,
    destroy() {
      socket.destroy();
    },
  };
}

export interface ReopeningFlood {
  /** Connections opened so far (first opens and reopens). */
  readonly opened: number;
  /** Connections the server closed (each is reopened `reopenMs` later, while opens are left). */
  readonly closedByServer: number;
  /** Connections open now. */
  held(): number;
  /** Stops reopening and closes every connection. */
  stop(): void;
}

/**
 * `count` TCP connections that never send a byte (no TLS ClientHello, no request), each opened again
 * `reopenMs` after the server closes it, as an attacker holding a listener's connection cap does.
 * Bounded: at most `maxOpens` connections in all, and stop() ends it.
 */
export function reopeningFlood(
  port: number,
  count: number,
  reopenMs: number,
  maxOpens: number,
  host = '127.0.0.1',
): ReopeningFlood {
  let opened = 0;
  let closedByServer = 0;
  let stopped = false;
  const open = new Set<import('node:net').Socket>();
  const timers = new Set<NodeJS.Timeout>();
  const one = (): void => {
    if (stopped || opened >= maxOpens) return;
    opened += 1;
    const socket = netConnect({ port, host });
    open.add(socket);
    socket.on('error', () => undefined);
    socket.once('close', () => {
      open.delete(socket);
      if (stopped) return;
      closedByServer += 1;
      const timer = setTimeout(() => {
        timers.delete(timer);
        one();
      }, reopenMs);
      timers.add(timer);
    });
  };
  for (let i = 0; i < count; i++) one();
  return {
    get opened() {
      return opened;
    },
    get closedByServer() {
      return closedByServer;
    },
    held: () => open.size,
    stop() {
      stopped = true;
      for (const t of timers) clearTimeout(t);
      for (const s of open) s.destroy();
    },
  };
}
