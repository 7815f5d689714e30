/**
 * The IPv4 interfaces discovery talks through, and the directed broadcast address of each.
 */
import { networkInterfaces } from 'node:os';

export interface LanInterface {
  readonly address: string;
  readonly netmask: string;
}

type InterfaceTable = ReturnType<typeof networkInterfaces>;

/**
 * Non-internal IPv4 interfaces, in the order the OS lists them, each address once. The table's shape
 * differs by OS (test/fixtures/network-interfaces/ has macOS's and Windows'): macOS lists IPv6-only
 * interfaces (awdl0, llw0, most utun) and point-to-point VPN tunnels (utun, a /32: no broadcast);
 * Windows names interfaces for people ('Wi-Fi', 'vEthernet (WSL)') and marks its loopback
 * ('Loopback Pseudo-Interface 1') internal. Only family, internal, address and netmask are read:
 * `cidr` is null where the netmask is not a valid one, and `scopeid` belongs to IPv6.
 */
export function lanInterfaces(table: InterfaceTable = networkInterfaces()): LanInterface[] {
  const found: LanInterface[] = [];
  for (const list of Object.values(table)) {
    for (const info of list ?? []) {
      if (info.family !== 'IPv4' || info.internal) continue;
      if (found.some((f) => f.address === info.address)) continue;
      found.push({ address: info.address, netmask: info.netmask });
    }
  }
  return found;
}

/**
 * address | ~netmask, e.g. 192.168.1.7/255.255.255.0 -> 192.168.1.255. Null when there is none: a
 * /31 or /32 (point-to-point links), a netmask that is not contiguous, or an address that does not parse.
 */
export function directedBroadcast(iface: LanInterface): string | null {
  const addr = ipv4ToInt(iface.address);
  const mask = ipv4ToInt(iface.netmask);
  if (addr === null || mask === null) return null;
  const host = ~mask >>> 0;
  // A netmask is ones then zeros; anything else (Node's cidr is null for it) names no subnet.
  if ((host & (host + 1)) !== 0) return null;
  if (host <= 1) return null;
  return intToIpv4((addr | ~mask) >>> 0);
}

function ipv4ToInt(text: string): number | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) return null;
    const byte = Number(part);
    if (byte > 255) return null;
    n = n * 256 + byte;
  }
  return n;
}

function intToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}
