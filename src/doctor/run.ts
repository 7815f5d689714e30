/**
 * Runs every check over the facts its probes gather. The probes are injected (DoctorProbes), so each
 * check and the whole run can be tested with made-up facts; systemProbes() are the real ones.
 */
import type { DiscoveryMode } from '../config/defaults.ts';
import type { PendingRead } from '../identity/devices.ts';
import type { Identity } from '../identity/identity.ts';
import type { ProbeResult } from '../net/probe.ts';
import { checkClock } from './clock.ts';
import { checkFdLimit, type FdLimit } from './fd-limit.ts';
import { checkFirewall, type FirewallListings } from './firewall.ts';
import { checkHearing, type HeardPeer, type Hearing } from './hearing.ts';
import { checkIdentity, type IdentityFacts } from './identity.ts';
import { checkInterfaces, checkMulticastRoute, type InterfaceFacts } from './interfaces.ts';
import type { AskedTime } from './net-probes.ts';
import { checkOllama } from './ollama.ts';
import { checkPending } from './pending.ts';
import { checkPorts, type PortHolder } from './ports.ts';
import { type AnyCheckResult, type DoctorReport, type OllanaPorts, result } from './types.ts';

export interface DoctorSettings {
  readonly ports: OllanaPorts;
  readonly group: string;
  readonly ollamaUrl: string;
  readonly dataDir: string;
  readonly listenMs: number;
  readonly trustLan: boolean;
  /** off: no LAN traffic at all (the hearing check is skipped); multicast or broadcast: probe only that way */
  readonly discovery: DiscoveryMode;
}

export interface DoctorProbes {
  ollama(): Promise<ProbeResult>;
  portHolders(ports: readonly number[]): PortHolder[] | null;
  firewall(): Promise<FirewallListings>;
  interfaces(): InterfaceFacts[];
  multicastRoute(group: string): string | null | undefined;
  fdLimit(): FdLimit | null;
  identity(dataDir: string): IdentityFacts;
  /** the identity to ask servers with (null when there is none, or it does not load) */
  loadIdentity(dataDir: string): Identity | null;
  allowedIds(dataDir: string): { ids: string[]; problem: string | null };
  pending(dataDir: string): PendingRead;
  listen(o: {
    port: number;
    group: string;
    listenMs: number;
    interfaces: readonly InterfaceFacts[];
    selfId: string | null;
    multicast: boolean;
    broadcast: boolean;
  }): Promise<Hearing>;
  askTime(peers: readonly HeardPeer[], self: Identity | null): Promise<AskedTime>;
}

export async function runDoctor(s: DoctorSettings, p: DoctorProbes): Promise<DoctorReport> {
  const holders = p.portHolders([s.ports.ollama, s.ports.proxy, s.ports.discovery]);
  const ollanaOnOllamaPort =
    holders?.some((h) => h.proto === 'tcp' && h.port === s.ports.ollama && /ollana/.test(h.cmdline ?? '')) ?? false;
  const interfaces = p.interfaces();
  const identityFacts = p.identity(s.dataDir);
  const [ollama, firewall, hearing] = await Promise.all([
    p.ollama(),
    p.firewall(),
    s.discovery === 'off'
      ? null
      : p.listen({
          port: s.ports.discovery,
          group: s.group,
          listenMs: s.listenMs,
          interfaces,
          selfId: identityFacts.id,
          multicast: s.discovery !== 'broadcast',
          broadcast: s.discovery !== 'multicast',
        }),
  ]);
  const self = identityFacts.problem === null ? p.loadIdentity(s.dataDir) : null;
  const heard = hearing?.peers ?? [];
  const asked = await p.askTime(heard, self);
  let pendingRead: PendingRead;
  try {
    pendingRead = p.pending(s.dataDir);
  } catch (err) {
    pendingRead = { pending: [], problem: (err as Error).message };
  }
  const allowed = p.allowedIds(s.dataDir);
  const checks: AnyCheckResult[] = [
    checkOllama(s.ollamaUrl, ollama, ollanaOnOllamaPort),
    checkPorts(s.ports, holders, ollama.ok && !ollanaOnOllamaPort && s.ollamaUrl.includes(`:${s.ports.ollama}`)),
    checkFirewall(firewall, s.ports),
    checkInterfaces(interfaces),
    checkMulticastRoute(s.group, p.multicastRoute(s.group), interfaces),
    hearing === null
      ? result('hearing', 'skip', 'hearing the LAN: not checked (--discovery off: no LAN traffic)', {
          checked: false,
          bindError: null,
          listenedMs: 0,
          selfMulticast: null,
          selfBroadcast: null,
          sendErrors: [],
          peers: [],
        })
      : checkHearing(hearing, s.ports.discovery),
    checkIdentity(identityFacts),
    checkPending({
      selfId: identityFacts.id,
      trustLan: s.trustLan,
      allowed: allowed.ids,
      pending: pendingRead.pending,
      problem: [pendingRead.problem, allowed.problem].filter((x) => x !== null).join('; ') || null,
      heard,
      refusedBy: asked.refusedBy,
    }),
    checkFdLimit(p.fdLimit()),
    checkClock(asked.samples),
  ];
  return { ok: checks.every((c) => c.status !== 'fail'), checks };
}

const MARK = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL', skip: '--  ' } as const;

/** One line per check, for people. */
export function formatReport(r: DoctorReport): string {
  const lines = r.checks.map((c) => `${MARK[c.status]} ${c.summary}`);
  const failed = r.checks.filter((c) => c.status === 'fail').length;
  const warned = r.checks.filter((c) => c.status === 'warn').length;
  lines.push(failed === 0 ? `no failures (${warned} warning(s))` : `${failed} check(s) failed, ${warned} warning(s)`);
  return `${lines.join('\n')}\n`;
}
