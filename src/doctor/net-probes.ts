/**
 * The facts the doctor learns from the LAN: a probe socket on the discovery port (shared with a
 * running node: both set SO_REUSEADDR, and multicast and broadcast reach both) sends a probe of its
 * own to the group and to each interface's broadcast address, and listens for it and for other
 * nodes' datagrams; then it asks the server nodes it heard for their time (HTTP Date).
 *
 * The probe is not an ollana datagram ("ollana-doctor-probe:..."): nodes on the LAN drop it at the
 * first byte and count it as `magic` (ollana status --json), and nothing on them changes.
 */
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { request } from 'node:https';
import { errorMessage, systemCode } from '../errors.ts';
import type { Identity } from '../identity/identity.ts';
import { decodeDatagram } from '../net/datagram.ts';
import { directedBroadcast } from '../net/lan-interfaces.ts';
import type { ClockSample } from './clock.ts';
import type { HeardPeer, Hearing } from './hearing.ts';
import type { InterfaceFacts } from './interfaces.ts';

const PROBE = 'ollana-doctor-probe:';

export interface HearingOptions {
  readonly port: number;
  readonly group: string;
  readonly listenMs: number;
  readonly interfaces: readonly InterfaceFacts[];
  /** this node's device id: its own datagrams (a node running here) are not a peer */
  readonly selfId: string | null;
  readonly multicast: boolean;
  readonly broadcast: boolean;
}

export async function listenForNodes(o: HearingOptions): Promise<Hearing> {
  const socket = createSocket({ type: 'udp4', reuseAddr: true });
  const started = performance.now();
  const nonce = randomBytes(8).toString('hex');
  const own = new Set(o.interfaces.map((i) => i.address));
  const peers = new Map<string, HeardPeer>();
  const sendErrors = new Set<string>();
  let selfMulticast: boolean | null = null;
  let selfBroadcast: boolean | null = null;
  socket.on('message', (msg, rinfo) => {
    const text = msg.length < 80 ? msg.toString('latin1') : '';
    if (text === `${PROBE}m:${nonce}`) selfMulticast = true;
    else if (text === `${PROBE}b:${nonce}`) selfBroadcast = true;
    if (text.startsWith(PROBE)) return;
    const d = decodeDatagram(msg);
    if (!d.ok || d.datagram.id === o.selfId || own.has(rinfo.address) || peers.has(d.datagram.id)) return;
    peers.set(d.datagram.id, {
      id: d.datagram.id,
      addr: rinfo.address,
      role: d.datagram.role,
      port: d.datagram.port,
      kind: d.datagram.kind,
    });
  });
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(o.port, '0.0.0.0', () => {
        socket.off('error', reject);
        resolve();
      });
    });
  } catch (err) {
    socket.close();
    return {
      bindError: `${systemCode(err) ?? errorMessage(err)}`,
      listenedMs: 0,
      selfMulticast: null,
      selfBroadcast: null,
      sendErrors: [],
      peers: [],
    };
  }
  socket.on('error', (err) => sendErrors.add(systemCode(err) ?? errorMessage(err)));
  const tryIt = (what: string, fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      sendErrors.add(`${what}: ${systemCode(err) ?? errorMessage(err)}`);
    }
  };
  tryIt('setBroadcast', () => socket.setBroadcast(true));
  tryIt('setMulticastTTL', () => socket.setMulticastTTL(1));
  tryIt('setMulticastLoopback', () => socket.setMulticastLoopback(true));
  for (const i of o.interfaces) {
    try {
      socket.addMembership(o.group, i.address);
    } catch {
      /* joined already through a node on this host, or an interface without multicast: sends say more */
    }
  }
  const broadcasts = [...new Set(o.interfaces.map((i) => directedBroadcast(i)).filter((b) => b !== null))];
  const send = (payload: string, to: string, way: 'm' | 'b'): void => {
    socket.send(Buffer.from(payload, 'latin1'), o.port, to, (err) => {
      if (err) {
        sendErrors.add(`${way === 'm' ? 'multicast' : 'broadcast'} to ${to}: ${systemCode(err) ?? err.message}`);
      } else if (way === 'm' && selfMulticast === null) selfMulticast = false;
      else if (way === 'b' && selfBroadcast === null) selfBroadcast = false;
    });
  };
  const sendAll = (): void => {
    if (o.multicast) send(`${PROBE}m:${nonce}`, o.group, 'm');
    if (o.broadcast) for (const b of broadcasts) send(`${PROBE}b:${nonce}`, b, 'b');
  };
  // Three rounds over the listening time: one lost datagram does not decide.
  const rounds = 3;
  for (let r = 0; r < rounds; r++) {
    sendAll();
    await new Promise((resolve) => setTimeout(resolve, o.listenMs / rounds));
  }
  socket.close();
  return {
    bindError: null,
    listenedMs: performance.now() - started,
    selfMulticast,
    selfBroadcast,
    sendErrors: [...sendErrors],
    peers: [...peers.values()],
  };
}

export interface AskedTime {
  readonly samples: ClockSample[];
  readonly refusedBy: { id: string; addr: string }[];
}

/** GET /ollana/v1/health on each server node heard (at most 8), as this device: its Date, or its refusal. */
export async function askServersTime(peers: readonly HeardPeer[], self: Identity | null): Promise<AskedTime> {
  const out: AskedTime = { samples: [], refusedBy: [] };
  const servers = peers.filter((p) => p.role === 'server' && p.port > 0).slice(0, 8);
  await Promise.all(
    servers.map(
      (p) =>
        new Promise<void>((resolve) => {
          const t0 = Date.now();
          const req = request(
            {
              host: p.addr,
              port: p.port,
              path: '/ollana/v1/health',
              method: 'GET',
              // The answer's Date is all that is read: its certificate is not checked, nothing is sent.
              rejectUnauthorized: false,
              minVersion: 'TLSv1.3',
              ...(self === null ? {} : { cert: self.certPem, key: self.keyPem }),
              signal: AbortSignal.timeout(3_000),
              agent: false,
            },
            (res) => {
              const t1 = Date.now();
              res.resume();
              if (res.statusCode === 403 && res.headers['ollana-refused'] !== undefined) {
                out.refusedBy.push({ id: p.id, addr: p.addr });
              }
              const date = Date.parse(String(res.headers.date ?? ''));
              // Date has whole seconds: its middle is the best guess of the peer's clock at the answer.
              if (Number.isFinite(date))
                out.samples.push({ id: p.id, addr: p.addr, offsetMs: date + 500 - (t0 + t1) / 2 });
              resolve();
            },
          );
          req.on('error', () => resolve());
          req.end();
        }),
    ),
  );
  return out;
}
