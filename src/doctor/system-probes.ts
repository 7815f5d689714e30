/**
 * The facts the local checks read from this machine: listening sockets and their processes (/proc),
 * firewall listings (nft, iptables, ufw), interfaces and their flags, the multicast route, the
 * open-file limit, the identity files. Linux reads /proc and /sys; elsewhere a fact is null, and its
 * check says "not checked".
 */
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync, readlinkSync, statSync } from 'node:fs';
import { networkInterfaces } from 'node:os';
import { basename, join } from 'node:path';
import { errorMessage } from '../errors.ts';
import { CERT_FILE, KEY_FILE, loadIdentity } from '../identity/identity.ts';
import type { FdLimit } from './fd-limit.ts';
import { parseLimits } from './fd-limit.ts';
import type { FirewallListings } from './firewall.ts';
import type { IdentityFacts, FileFacts } from './identity.ts';
import { IFF, type InterfaceFacts, routeFor } from './interfaces.ts';
import { parseProcNet, type PortHolder } from './ports.ts';

function readText(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

/** Holders of the given ports, from /proc/net/* and each process's fds; null without /proc/net. */
export function portHolders(ports: readonly number[]): PortHolder[] | null {
  const sockets: { proto: 'tcp' | 'udp'; port: number; inode: number }[] = [];
  let any = false;
  for (const [file, proto] of [
    ['tcp', 'tcp'],
    ['tcp6', 'tcp'],
    ['udp', 'udp'],
    ['udp6', 'udp'],
  ] as const) {
    const text = readText(`/proc/net/${file}`);
    if (text === null) continue;
    any = true;
    for (const s of parseProcNet(text, proto)) if (ports.includes(s.port)) sockets.push({ proto, ...s });
  }
  if (!any) return null;
  const owners = socketOwners(new Set(sockets.map((s) => s.inode)));
  const seen = new Set<string>();
  const holders: PortHolder[] = [];
  for (const s of sockets) {
    const pid = owners.get(s.inode) ?? null;
    const key = `${s.proto}/${s.port}/${pid}`;
    if (seen.has(key)) continue;
    seen.add(key);
    holders.push({
      proto: s.proto,
      port: s.port,
      pid,
      name: pid === null ? null : processName(pid),
      cmdline: pid === null ? null : (readText(`/proc/${pid}/cmdline`)?.replace(/\0/g, ' ').trim() ?? null),
    });
  }
  return holders;
}

/**
 * The program's name: its executable's base name (comm is a thread's name, which Node sets to
 * "MainThread"), else comm.
 */
function processName(pid: number): string | null {
  try {
    return basename(readlinkSync(`/proc/${pid}/exe`));
  } catch {
    return readText(`/proc/${pid}/comm`)?.trim() ?? null;
  }
}

/** inode -> pid for the sockets asked about, by the `socket:[inode]` links in /proc/<pid>/fd. */
function socketOwners(inodes: ReadonlySet<number>): Map<number, number> {
  const owners = new Map<number, number>();
  if (inodes.size === 0) return owners;
  let pids: string[] = [];
  try {
    pids = readdirSync('/proc').filter((d) => /^\d+$/.test(d));
  } catch {
    return owners;
  }
  for (const pid of pids) {
    let fds: string[];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // gone, or another user's
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(Number(m[1])) && !owners.has(Number(m[1]))) owners.set(Number(m[1]), Number(pid));
      } catch {
        /* closed meanwhile */
      }
    }
  }
  return owners;
}

/** Runs a listing command; { missing } says why there is no listing (not installed, not allowed). */
function listing(cmd: string, args: readonly string[]): Promise<{ text: string } | { missing: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: 5_000, maxBuffer: 8 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err === null) return resolve({ text: stdout });
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return resolve({ missing: 'not installed' });
      resolve({ missing: (stderr || err.message).trim().split('\n')[0]!.slice(0, 160) });
    });
  });
}

export async function firewallListings(): Promise<FirewallListings> {
  const [nft, iptables, ufw] = await Promise.all([
    listing('nft', ['list', 'ruleset']),
    listing('iptables', ['-S']),
    listing('ufw', ['status', 'verbose']),
  ]);
  return { nft, iptables, ufw };
}

/** Non-internal IPv4 interfaces with their flags (Linux /sys/class/net; null flags elsewhere). */
export function interfaceFacts(): InterfaceFacts[] {
  const list: InterfaceFacts[] = [];
  for (const [name, infos] of Object.entries(networkInterfaces())) {
    for (const info of infos ?? []) {
      if (info.family !== 'IPv4' || info.internal) continue;
      const raw = readText(`/sys/class/net/${name}/flags`);
      const flags = raw === null ? null : Number.parseInt(raw.trim(), 16);
      const has = (bit: number): boolean | null => (flags === null || Number.isNaN(flags) ? null : (flags & bit) !== 0);
      list.push({
        name,
        address: info.address,
        netmask: info.netmask,
        up: has(IFF.UP),
        multicast: has(IFF.MULTICAST),
        broadcast: has(IFF.BROADCAST),
        pointToPoint: has(IFF.POINTOPOINT),
      });
    }
  }
  return list;
}

/** The interface the route to `group` takes; null: no route; undefined: not Linux (no /proc/net/route). */
export function multicastRoute(group: string): string | null | undefined {
  const text = readText('/proc/net/route');
  return text === null ? undefined : routeFor(text, group);
}

export function fdLimit(): FdLimit | null {
  const text = readText('/proc/self/limits');
  return text === null ? null : parseLimits(text);
}

function fileFacts(path: string): FileFacts | null {
  const s = statSync(path, { throwIfNoEntry: false });
  return s === undefined ? null : { mode: s.mode, uid: s.uid };
}

export function identityFacts(dataDir: string): IdentityFacts {
  let id: string | null = null;
  let problem: string | null = null;
  try {
    id = loadIdentity(dataDir)?.id ?? null;
  } catch (err) {
    problem = errorMessage(err);
  }
  return {
    dataDir,
    dir: fileFacts(dataDir),
    cert: fileFacts(join(dataDir, CERT_FILE)),
    key: fileFacts(join(dataDir, KEY_FILE)),
    id,
    problem,
    uid: process.getuid?.() ?? null,
  };
}
