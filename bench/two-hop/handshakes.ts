/**
 * What one TLS handshake costs with ollana's settings (TLS 1.3, ECDSA P-256 device certificates on
 * both ends, the client's certificate requested, session tickets), full against resumed: N
 * connections one after another on loopback, each closed after its handshake. The server runs as a
 * child process so each side's CPU is its own (/proc). Nothing but loopback is touched.
 *
 *   node bench/two-hop/handshakes.ts [--n 300]
 *
 * Prints one JSON line: { full, resumed, sharedContext: { full, resumed } } with wall ms and client and
 * server CPU µs per connection (TCP connect and close included, as a pool pays them). `full` and
 * `resumed` connect as src/net/tls.ts's pinnedConnector does, with the PEM certificate and key on every
 * connect (so OpenSSL parses them each time); `sharedContext` uses one tls.createSecureContext instead.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { connect, createSecureContext, createServer, type SecureContext, type TLSSocket } from 'node:tls';
import { parseArgs } from 'node:util';
import { createSelfSigned } from '../../src/identity/self-signed.ts';
import { peerDeviceId, tlsServerOptions } from '../../src/net/tls.ts';
import { cpuMs } from '../lib/proc-stats.ts';

interface Side { readonly certPem: string; readonly keyPem: string }

export interface HandshakeCost {
  readonly connections: number;
  readonly reused: number;
  readonly wallMsPer: number;
  readonly clientCpuUsPer: number;
  readonly serverCpuUsPer: number;
}

export interface HandshakeCosts {
  readonly full: HandshakeCost;
  readonly resumed: HandshakeCost;
  readonly sharedContext: { readonly full: HandshakeCost; readonly resumed: HandshakeCost };
}

async function serve(s: Side): Promise<void> {
  const server = createServer(tlsServerOptions({ id: '', ...s, ticketKeys: randomBytes(48).toString('base64') }), (sock: TLSSocket) => {
    // What the server node does with every new connection: the device id of the peer's certificate.
    peerDeviceId(sock);
    sock.on('error', () => undefined);
    // OpenSSL sends TLS 1.3 session tickets with the server's first write: one byte, as an answer would.
    sock.end('k');
  });
  server.listen(0, '127.0.0.1', () => process.send!({ port: (server.address() as { port: number }).port }));
  process.on('disconnect', () => process.exit(0));
}

/** `context`: one SecureContext for every connection, instead of the PEM cert and key (parsed per connection). */
function handshake(port: number, self: Side, session: Buffer | undefined, context: SecureContext | null): Promise<{ reused: boolean; ticket: Buffer | undefined }> {
  return new Promise((resolve, reject) => {
    let ticket: Buffer | undefined;
    const s = connect({ host: '127.0.0.1', port, ...(context === null ? { cert: self.certPem, key: self.keyPem } : { secureContext: context }), session,
      rejectUnauthorized: false, minVersion: 'TLSv1.3', ALPNProtocols: ['http/1.1'] });
    s.on('session', (t: Buffer) => { ticket = t; });
    s.once('secureConnect', () => { if (!s.isSessionReused()) peerDeviceId(s); });
    // The server writes one byte and ends; its tickets arrive before the end.
    s.once('end', () => { const reused = s.isSessionReused(); s.destroy(); resolve({ reused, ticket }); });
    s.resume();
    s.once('error', reject);
  });
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { n: { type: 'string' }, server: { type: 'string' } } });
  if (values.server !== undefined) { await serve(JSON.parse(values.server) as Side); return; }
  const n = Number(values.n ?? '300');
  const [serverId, clientId] = await Promise.all([createSelfSigned('ollana server', 1), createSelfSigned('ollana client', 1)]);
  const child = fork(new URL(import.meta.url).pathname, ['--server', JSON.stringify(serverId)]);
  const [{ port }] = await once(child, 'message') as [{ port: number }];
  const shared = createSecureContext({ cert: clientId.certPem, key: clientId.keyPem, minVersion: 'TLSv1.3' });
  const run = async (resume: boolean, context: SecureContext | null = null): Promise<HandshakeCost> => {
    const first = await handshake(port, clientId, undefined, context);
    let session = first.ticket;
    const c0 = process.cpuUsage();
    const s0 = cpuMs(child.pid!)!;
    const t0 = performance.now();
    let reused = 0;
    for (let i = 0; i < n; i++) {
      const r = await handshake(port, clientId, resume ? session : undefined, context);
      if (r.reused) reused++;
      if (r.ticket !== undefined) session = r.ticket;
    }
    const wall = performance.now() - t0;
    const c = process.cpuUsage(c0);
    return { connections: n, reused, wallMsPer: wall / n, clientCpuUsPer: (c.user + c.system) / n, serverCpuUsPer: ((cpuMs(child.pid!)! - s0) * 1000) / n };
  };
  await run(false); // warm-up: JIT, OpenSSL tables
  const full = await run(false);
  const resumed = await run(true);
  const sharedContext = { full: await run(false, shared), resumed: await run(true, shared) };
  const costs: HandshakeCosts = { full, resumed, sharedContext };
  process.stdout.write(`${JSON.stringify(costs)}\n`);
  child.disconnect();
}

await main();
