/**
 * Check: devices pending on either side. This side: pending.json (servers this machine saw and does
 * not allow, clients it refused). The other side: server nodes heard now that this machine does not
 * allow, and those that refused this device when asked for their time (the clock check's request).
 */
import type { PendingEntry } from '../identity/devices.ts';
import type { HeardPeer } from './hearing.ts';
import { type CheckResult, result } from './types.ts';

export interface PendingFacts {
  readonly selfId: string | null;
  readonly trustLan: boolean;
  readonly allowed: readonly string[];
  readonly pending: readonly PendingEntry[];
  /** a problem reading pending.json, else null */
  readonly problem: string | null;
  readonly heard: readonly HeardPeer[];
  /** server nodes that answered this device with their refusal */
  readonly refusedBy: readonly { readonly id: string; readonly addr: string }[];
}

export function checkPending(f: PendingFacts): CheckResult<'pending'> {
  const here = f.pending.map((p) => ({ id: p.id, addr: p.addr, kind: p.kind }));
  const unallowed = f.trustLan
    ? []
    : f.heard.filter((p) => p.role === 'server' && !f.allowed.includes(p.id) && !here.some((h) => h.id === p.id));
  const details = { pendingHere: here, serversNotAllowed: unallowed, refusedBy: f.refusedBy, problem: f.problem };
  const todo: string[] = [];
  for (const p of [...here, ...unallowed.map((u) => ({ id: u.id, addr: u.addr, kind: 'server-seen' }))]) {
    todo.push(`\`ollana device allow ${p.id}\` (${p.kind === 'client-refused' ? 'client' : 'server'} at ${p.addr})`);
  }
  for (const r of f.refusedBy) {
    todo.push(`on the server at ${r.addr}: \`ollana device allow ${f.selfId ?? '<this device id>'}\``);
  }
  if (todo.length === 0) {
    const note = f.problem === null ? '' : ` (${f.problem})`;
    return result('pending', 'ok', `pending devices: none on this side or from the servers heard${note}`, details);
  }
  return result('pending', 'warn', `pending devices: to pair, run ${todo.join('; ')}`, details);
}
