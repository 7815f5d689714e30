/**
 * Check: does this machine hear its own discovery probe (sent to the group and the broadcast
 * addresses on the discovery port) and any other node within the listening time? Hearing itself but
 * nobody else, with nodes running elsewhere, is what client isolation (guest Wi-Fi, some access
 * points) or a firewall between the hosts looks like.
 */
import { type CheckResult, result } from './types.ts';

export interface HeardPeer {
  readonly id: string;
  readonly addr: string;
  readonly role: 'server' | 'client';
  readonly port: number;
  readonly kind: string;
}

export interface Hearing {
  /** why the probe socket could not listen (the port held by something that does not share it), else null */
  readonly bindError: string | null;
  readonly listenedMs: number;
  /** how our own probe came back: by multicast, by broadcast (null: that way was not sent: no route / no address) */
  readonly selfMulticast: boolean | null;
  readonly selfBroadcast: boolean | null;
  /** why sending failed, per way (e.g. ENETUNREACH for no multicast route) */
  readonly sendErrors: readonly string[];
  /** other nodes heard (valid datagrams from addresses not this machine's), one per id */
  readonly peers: readonly HeardPeer[];
}

export function checkHearing(h: Hearing, port: number): CheckResult<'hearing'> {
  const details = { ...h, checked: true };
  if (h.bindError !== null) {
    return result('hearing', 'fail', `cannot listen on UDP ${port}: ${h.bindError}`, details);
  }
  const self = h.selfMulticast === true || h.selfBroadcast === true;
  const seconds = Math.round(h.listenedMs / 100) / 10;
  const ways = [h.selfMulticast ? 'multicast' : null, h.selfBroadcast ? 'broadcast' : null]
    .filter(Boolean)
    .join(' and ');
  if (!self) {
    return result(
      'hearing',
      'fail',
      `this machine did not hear its own discovery probe in ${seconds} s${h.sendErrors.length ? ` (${h.sendErrors.join('; ')})` : ''}: ` +
        `a firewall here drops UDP ${port}, or no interface can send to the LAN; see the firewall and interfaces lines`,
      details,
    );
  }
  if (h.peers.length === 0) {
    return result(
      'hearing',
      'warn',
      `heard itself (${ways}) but no other node in ${seconds} s: if nodes run elsewhere on this LAN, the network keeps ` +
        `clients apart (client isolation on guest Wi-Fi or an access point) or a firewall between the hosts drops UDP ${port}; ` +
        'use a network without client isolation, or run `ollana doctor` on the other machine too',
      details,
    );
  }
  const list = h.peers.map((p) => `${p.role} ${p.id.slice(0, 11)} at ${p.addr}`).join(', ');
  return result(
    'hearing',
    'ok',
    `heard itself (${ways}) and ${h.peers.length} node(s) in ${seconds} s: ${list}`,
    details,
  );
}
