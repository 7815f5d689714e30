/**
 * Checks: the interfaces discovery can use (IPv4, up, multicast and broadcast capable), and which one
 * the multicast group's route takes (a VPN that took it hides this machine from the LAN's multicast).
 */
import { type CheckResult, result } from './types.ts';

export interface InterfaceFacts {
  readonly name: string;
  readonly address: string;
  readonly netmask: string;
  /** from the interface's flags (Linux: /sys/class/net/<name>/flags); null when not known */
  readonly up: boolean | null;
  readonly multicast: boolean | null;
  readonly broadcast: boolean | null;
  readonly pointToPoint: boolean | null;
}

/** Linux's IFF_* flags. */
export const IFF = { UP: 0x1, BROADCAST: 0x2, POINTOPOINT: 0x10, MULTICAST: 0x1000 } as const;

/** Names VPN clients give their interfaces (WireGuard, OpenVPN tun/tap, Tailscale, ZeroTier, macOS utun, PPP, IPsec). */
const VPN_NAME = /^(wg|tun|tap|tailscale|ts|zt|utun|ppp|ipsec|nordlynx|proton|mullvad|gpd|cscotun)/i;

export function isVpn(i: Pick<InterfaceFacts, 'name' | 'pointToPoint'>): boolean {
  return VPN_NAME.test(i.name) || i.pointToPoint === true;
}

export function checkInterfaces(list: readonly InterfaceFacts[]): CheckResult<'interfaces'> {
  const usable = list.filter((i) => i.up !== false && !isVpn(i));
  const describe = (i: InterfaceFacts): string => {
    const can = [
      i.multicast === true ? 'multicast' : i.multicast === false ? 'NO multicast' : '',
      i.broadcast === true ? 'broadcast' : i.broadcast === false ? 'NO broadcast' : '',
    ]
      .filter(Boolean)
      .join(', ');
    return `${i.name} ${i.address}${can ? ` (${can}${isVpn(i) ? ', VPN' : ''})` : isVpn(i) ? ' (VPN)' : ''}`;
  };
  const details = { interfaces: list.map((i) => ({ ...i, vpn: isVpn(i) })) };
  if (usable.length === 0) {
    return result(
      'interfaces',
      'fail',
      `no LAN interface with an IPv4 address${list.length > 0 ? ` (only ${list.map(describe).join(', ')})` : ''}: connect this machine to the LAN (Wi-Fi or cable) first`,
      details,
    );
  }
  const mute = usable.filter((i) => i.multicast === false && i.broadcast === false);
  if (mute.length === usable.length) {
    return result(
      'interfaces',
      'fail',
      `no interface can multicast or broadcast (${usable.map(describe).join(', ')}): discovery cannot reach the LAN; use an ordinary Ethernet or Wi-Fi link`,
      details,
    );
  }
  return result('interfaces', 'ok', `interfaces: ${list.map(describe).join('; ')}`, details);
}

/** /proc/net/route: the interface of the longest-prefix route for `ip` (IPv4 dotted), or null when none. */
export function routeFor(procNetRoute: string, ip: string): string | null {
  const target = ip.split('.').reduce((n, b) => n * 256 + Number(b), 0);
  let best: { iface: string; bits: number } | null = null;
  for (const line of procNetRoute.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 8) continue;
    const dest = littleEndianHex(cols[1]!);
    const mask = littleEndianHex(cols[7]!);
    const flags = Number.parseInt(cols[3]!, 16);
    if (dest === null || mask === null || (flags & 0x1) === 0) continue; // RTF_UP
    if ((target & mask) >>> 0 !== (dest & mask) >>> 0) continue;
    const bits = mask.toString(2).replace(/0/g, '').length;
    if (best === null || bits > best.bits) best = { iface: cols[0]!, bits };
  }
  return best?.iface ?? null;
}

function littleEndianHex(hex: string): number | null {
  if (!/^[0-9A-Fa-f]{8}$/.test(hex)) return null;
  const n = Number.parseInt(hex, 16);
  return (((n & 0xff) << 24) | ((n & 0xff00) << 8) | ((n >>> 8) & 0xff00) | ((n >>> 24) & 0xff)) >>> 0;
}

/** `route` is the interface the group's route takes, null for none, undefined when not known (not Linux). */
export function checkMulticastRoute(
  group: string,
  route: string | null | undefined,
  list: readonly InterfaceFacts[],
): CheckResult<'multicast-route'> {
  if (route === undefined)
    return result('multicast-route', 'skip', `multicast route to ${group}: not checked on this platform`, {
      checked: false,
      group,
      route: null,
      vpn: false,
    });
  const lan = list.find((i) => i.up !== false && !isVpn(i))?.name ?? 'eth0';
  if (route === null) {
    return result(
      'multicast-route',
      'warn',
      `no route to the discovery group ${group}: multicast discovery cannot send (broadcast still can); add one: \`ip route add 224.0.0.0/4 dev ${lan}\``,
      { checked: true, group, route, vpn: false },
    );
  }
  const iface = list.find((i) => i.name === route);
  if (iface !== undefined ? isVpn(iface) : VPN_NAME.test(route)) {
    return result(
      'multicast-route',
      'warn',
      `the discovery group ${group} is routed through ${route}, a VPN: multicast never reaches the LAN (broadcast still does); route it to the LAN: \`ip route add 239.255.0.0/16 dev ${lan}\``,
      { checked: true, group, route, vpn: true },
    );
  }
  return result('multicast-route', 'ok', `multicast to ${group} goes out ${route}`, {
    checked: true,
    group,
    route,
    vpn: false,
  });
}
