/**
 * Check: firewall rules that drop ollana's ports. Reads the rule listings as text (`nft list
 * ruleset`, `iptables -S`, `ufw status verbose`); a tool that is not installed (or may not be asked:
 * not root) is "not checked", never "no rules". The reading is a heuristic, on the side of saying too
 * much: a drop or reject rule naming one of the ports, or one that matches all UDP or the multicast
 * range without naming ports, and an input policy of drop with no accept naming the ports.
 */
import { type CheckResult, type CheckStatus, type OllanaPorts, result } from './types.ts';

/** Each tool's listing, or why there is none (not installed, or it refused: not root). */
export interface FirewallListings {
  readonly nft: { readonly text: string } | { readonly missing: string };
  readonly iptables: { readonly text: string } | { readonly missing: string };
  readonly ufw: { readonly text: string } | { readonly missing: string };
}

export interface FirewallFinding {
  readonly tool: 'nft' | 'iptables' | 'ufw';
  readonly rule: string;
  /** the ollana ports it can drop ([] for a rule on all UDP or multicast) */
  readonly ports: readonly number[];
}

const DROP = /\b(drop|reject)\b/i;

/**
 * Port ranges named by a `dport N`, `dport { a, b }`, `dport a-b`, `--dport N`, `--dports a,b` or
 * `a:b` matcher, as [low, high] pairs; null when the rule names no destination port.
 */
function portsNamed(rule: string): [number, number][] | null {
  const m = /(?:--dports?|dport)\s+(\{[^}]*\}|\S+)/.exec(rule);
  if (m === null) return null;
  const found: [number, number][] = [];
  for (const part of m[1]!.replace(/[{}]/g, ' ').split(/[\s,]+/)) {
    const range = /^(\d+)[-:](\d+)$/.exec(part);
    if (range) found.push([Number(range[1]), Number(range[2])]);
    else if (/^\d+$/.test(part)) found.push([Number(part), Number(part)]);
  }
  return found;
}

function ollanaPortsIn(rule: string, ports: OllanaPorts): number[] | null {
  const named = portsNamed(rule);
  if (named === null) return null;
  return [ports.ollama, ports.proxy, ports.discovery].filter((p) => named.some(([lo, hi]) => p >= lo && p <= hi));
}

/** A drop rule without ports that still catches discovery: all UDP, or the multicast range. */
function catchesDiscovery(rule: string): boolean {
  return /\budp\b/i.test(rule) || /224\.0\.0\.0\/4|239\.255\./.test(rule);
}

export function nftFindings(text: string, ports: OllanaPorts): FirewallFinding[] {
  const found: FirewallFinding[] = [];
  let inputDrop: string | null = null;
  let accepts = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (/hook input\b.*policy drop/.test(line)) inputDrop = line;
    if (/\baccept\b/.test(line) && (ollanaPortsIn(line, ports)?.length ?? 0) > 0) accepts = true;
    if (!DROP.test(line) || line.startsWith('type ') || line.startsWith('chain ')) continue;
    const named = ollanaPortsIn(line, ports);
    if (named !== null ? named.length > 0 : catchesDiscovery(line))
      found.push({ tool: 'nft', rule: line, ports: named ?? [] });
  }
  if (inputDrop !== null && !accepts) found.push({ tool: 'nft', rule: inputDrop, ports: [] });
  return found;
}

export function iptablesFindings(text: string, ports: OllanaPorts): FirewallFinding[] {
  const found: FirewallFinding[] = [];
  let inputDrop: string | null = null;
  let accepts = false;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (/^-P INPUT (DROP|REJECT)/.test(line)) inputDrop = line;
    if (/-j ACCEPT/.test(line) && (ollanaPortsIn(line, ports)?.length ?? 0) > 0) accepts = true;
    if (!/^-A /.test(line) || !/-j (DROP|REJECT)/.test(line)) continue;
    const named = ollanaPortsIn(line, ports);
    if (named !== null ? named.length > 0 : catchesDiscovery(line))
      found.push({ tool: 'iptables', rule: line, ports: named ?? [] });
  }
  if (inputDrop !== null && !accepts) found.push({ tool: 'iptables', rule: inputDrop, ports: [] });
  return found;
}

export function ufwFindings(text: string, ports: OllanaPorts): FirewallFinding[] {
  if (!/Status: active/.test(text)) return [];
  if (!/Default: (deny|reject) \(incoming\)/.test(text)) return [];
  const missing = [ports.proxy, ports.discovery].filter(
    (p) => !text.split('\n').some((l) => new RegExp(`^${p}(/(tcp|udp))?\\b.*ALLOW`).test(l.trim())),
  );
  return missing.length === 0
    ? []
    : [{ tool: 'ufw', rule: `default deny (incoming), no ALLOW for ${missing.join(', ')}`, ports: missing }];
}

export function checkFirewall(listings: FirewallListings, ports: OllanaPorts): CheckResult<'firewall'> {
  const findings: FirewallFinding[] = [];
  const checked: string[] = [];
  const notChecked: string[] = [];
  for (const [tool, parse] of [
    ['nft', nftFindings],
    ['iptables', iptablesFindings],
    ['ufw', ufwFindings],
  ] as const) {
    const l = listings[tool];
    if ('text' in l) {
      checked.push(tool);
      findings.push(...parse(l.text, ports));
    } else notChecked.push(`${tool} (${l.missing})`);
  }
  const details = { checked, notChecked, findings };
  const unchecked = notChecked.length > 0 ? `; not checked: ${notChecked.join(', ')}` : '';
  if (findings.length > 0) {
    const first = findings[0]!;
    const what = first.ports.length > 0 ? `port ${first.ports.join(', ')}` : 'discovery (UDP or multicast)';
    return result(
      'firewall',
      'fail',
      `firewall: ${findings.length} rule(s) can drop ollana's traffic, first (${first.tool}) \`${first.rule}\` drops ${what}: ` +
        `let UDP ${ports.discovery} and TCP ${ports.proxy} through on every node of the LAN${unchecked}`,
      details,
    );
  }
  const status: CheckStatus = checked.length === 0 ? 'skip' : 'ok';
  const summary =
    checked.length === 0
      ? `firewall: not checked (${notChecked.join(', ')})`
      : `firewall: no rule drops ports ${ports.proxy}/tcp or ${ports.discovery}/udp (${checked.join(', ')})${unchecked}`;
  return result('firewall', status, summary, details);
}
