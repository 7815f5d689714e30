/**
 * The IPv4 interfaces discovery talks through, and the directed broadcast address of each.
 */
import { networkInterfaces } from 'node:os';

export interface LanInterface {
  readonly address: string;
  readonly netmask: string;
}

/** Non-internal IPv4 interfaces, in the order the OS lists them, each address once. */
export function lanInterfaces(): LanInterface[] {
  const found: LanInterface[] = [];
  for (const list of Object.values(networkInterfaces())) {
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
 * /31 or /32 (point-to-point links) or an address that does not parse.
 */
export function directedBroadcast(iface: LanInterface): string | null {
  const addr = ipv4ToInt(iface.address);
  const mask = ipv4ToInt(iface.netmask);
  if (addr === null || mask === null) return null;
  if (~mask >>> 0 <= 1) return null;
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
