/**
 * What one TLS handshake costs with ollana's settings (TLS 1.3, ECDSA P-256 device certificates on
 * both ends, the client's certificate requested, session tickets), full against resumed: N
 * connections one after another on loopback, each closed after its handshake. The server runs as a
 * child process so each side's CPU is its own (/proc). Nothing but loopback is touched.
 *
 *   node bench/two-hop/handshakes.ts [--n 300]
 *
 * Prints one JSON line: { pemPerConnect, connector } with { full, resumed } each: wall ms and client
 * and server CPU µs per connection (TCP connect and close included, as a pool pays them).
 * `connector` connects through src/net/tls.ts's pinnedConnector itself, pin check included (a new
 * connector per connection for full handshakes, so none holds a ticket; one connector for resumed
 * ones), so running this file against an older checkout's src measures that checkout's connector.
 * `pemPerConnect` is the reference: plain tls.connect with the PEM certificate and key on every
 * connect, so OpenSSL parses both each time (how the connector connected before it shared one
 * SecureContext per identity).
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';
import { createSelfSigned } from '../../src/identity/self-signed.ts';
import { deviceIdFromDer } from '../../src/identity/device-id.ts';
import { peerDeviceId, pinnedConnector, tlsServerOptions, type TlsIdentity } from '../../src/net/tls.ts';
import { cpuMs } from '../lib/proc-stats.ts';

interface Side {
  readonly certPem: string;
  readonly keyPem: string;
}

export interface HandshakeCost {
  readonly connections: number;
  readonly reused: number;
  readonly wallMsPer: number;
  readonly clientCpuUsPer: number;
  readonly serverCpuUsPer: number;
}

export interface HandshakeCosts {
  /** plain tls.connect with the PEM certificate and key on every connect (the connector before the shared context) */
  readonly pemPerConnect: { readonly full: HandshakeCost; readonly resumed: HandshakeCost };
  /** src/net/tls.ts's pinnedConnector, as a client node's proxy worker connects */
  readonly connector: { readonly full: HandshakeCost; readonly resumed: HandshakeCost };
}

async function serve(s: Side): Promise<void> {
  const server = createServer(
    tlsServerOptions({ id: '', ...s, ticketKeys: randomBytes(48).toString('base64') }),
    (sock: TLSSocket) => {
      // What the server node does with every new connection: the device id of the peer's certificate.
      peerDeviceId(sock);
      sock.on('error', () => undefined);
      // OpenSSL sends TLS 1.3 session tickets with the server's first write: one byte, as an answer would.
      sock.end('k');
    },
  );
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as { port: number }).port }));
  process.on('disconnect', () => process.exit(0));
}

type Handshake = (session: Buffer | undefined) => Promise<{ reused: boolean; ticket: Buffer | undefined }>;

/** Plain tls.connect with the PEM certificate and key, the session given (or none). */
function pemHandshake(port: number, self: Side): Handshake {
  return (session) =>
    new Promise((resolve, reject) => {
      let ticket: Buffer | undefined;
      const s = connect({
        host: '127.0.0.1',
        port,
        cert: self.certPem,
        key: self.keyPem,
        session,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.3',
        ALPNProtocols: ['http/1.1'],
      });
      s.on('session', (t: Buffer) => {
        ticket = t;
      });
      s.once('secureConnect', () => {
        if (!s.isSessionReused()) peerDeviceId(s);
      });
      // The server writes one byte and ends; its tickets arrive before the end.
      s.once('end', () => {
        const reused = s.isSessionReused();
        s.destroy();
        resolve({ reused, ticket });
      });
      s.resume();
      s.once('error', reject);
    });
}

/**
 * Through pinnedConnector: `resume` reuses one connector (it keeps the last ticket itself), otherwise
 * every connection gets a new connector, which holds none.
 */
function connectorHandshake(port: number, self: TlsIdentity, expectedId: string, resume: boolean): Handshake {
  const make = () => pinnedConnector({ self, expectedId, timeoutMs: 10_000 });
  const shared = make();
  return () =>
    new Promise((resolve, reject) => {
      (resume ? shared : make())({ hostname: '127.0.0.1', port: String(port), protocol: 'https:' }, (err, socket) => {
        if (err !== null) {
          reject(err);
          return;
        }
        const s = socket as TLSSocket;
        s.once('end', () => {
          const reused = s.isSessionReused();
          s.destroy();
          resolve({ reused, ticket: undefined });
        });
        s.once('error', reject);
        s.resume();
      });
    });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { n: { type: 'string' }, server: { type: 'string' } } });
  if (values.server !== undefined) {
    await serve(JSON.parse(values.server) as Side);
    return;
  }
  const n = Number(values.n ?? '300');
  const [serverId, clientId] = await Promise.all([
    createSelfSigned('ollana server', 1),
    createSelfSigned('ollana client', 1),
  ]);
  const child = fork(new URL(import.meta.url).pathname, ['--server', JSON.stringify(serverId)]);
  const [{ port }] = (await once(child, 'message')) as [{ port: number }];
  const serverDeviceId = deviceIdFromDer(new X509Certificate(serverId.certPem).raw);
  const client: TlsIdentity = { id: '', ...clientId };
  const run = async (handshake: Handshake, resume: boolean): Promise<HandshakeCost> => {
    const first = await handshake(undefined);
    let session = first.ticket;
    const c0 = process.cpuUsage();
    const s0 = cpuMs(child.pid!)!;
    const t0 = performance.now();
    let reused = 0;
    for (let i = 0; i < n; i++) {
      const r = await handshake(resume ? session : undefined);
      if (r.reused) reused++;
      if (r.ticket !== undefined) session = r.ticket;
    }
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    return {
      connections: n,
      reused,
      wallMsPer: wall / n,
      clientCpuUsPer: (c.user + c.system) / n,
      serverCpuUsPer: ((cpuMs(child.pid!)! - s0) * 1000) / n,
    };
  };
  const pem = pemHandshake(port, clientId);
  await run(pem, false); // warm-up: JIT, OpenSSL tables
  await run(connectorHandshake(port, client, serverDeviceId, false), false);
  // Interleaved, so that a busy stretch of a shared machine is less likely to land on one side only.
  const pemFull = await run(pem, false);
  const connectorFull = await run(connectorHandshake(port, client, serverDeviceId, false), false);
  const pemResumed = await run(pem, true);
  const connectorResumed = await run(connectorHandshake(port, client, serverDeviceId, true), true);
  const pemPerConnect = { full: pemFull, resumed: pemResumed };
  const connector = { full: connectorFull, resumed: connectorResumed };
  const costs: HandshakeCosts = { pemPerConnect, connector };
  process.stdout.write(`${JSON.stringify(costs)}\n`);
  child.disconnect();
}

await main();
