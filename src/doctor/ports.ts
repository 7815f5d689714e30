/** Check: are ports 11434, 11435 (TCP) and 11436 (UDP) free, or held by whom? */
import { type CheckResult, type CheckStatus, type OllanaPorts, type PortReport, result } from './types.ts';

/** A socket bound to one of ollana's ports, and who holds it (when this user may see it). */
export interface PortHolder {
  readonly proto: 'tcp' | 'udp';
  readonly port: number;
  readonly pid: number | null;
  /** the process's name (/proc/<pid>/comm), null when not visible */
  readonly name: string | null;
  /** its command line, to tell ollana (a node process running bin/ollana.mjs or dist/main.js) from others */
  readonly cmdline: string | null;
}

/**
 * Sockets of /proc/net/{tcp,tcp6,udp,udp6}: the local port and the socket inode, TCP in LISTEN (0A)
 * state only, UDP in any. Lines that do not parse are skipped.
 */
export function parseProcNet(text: string, proto: 'tcp' | 'udp'): { port: number; inode: number }[] {
  const found: { port: number; inode: number }[] = [];
  for (const line of text.split('\n').slice(1)) {
    const cols = line.trim().split(/\s+/);
    if (cols.length < 10) continue;
    const port = Number.parseInt(cols[1]!.split(':').at(-1)!, 16);
    const inode = Number(cols[9]);
    if (!Number.isInteger(port) || !Number.isInteger(inode)) continue;
    if (proto === 'tcp' && cols[3] !== '0A') continue;
    found.push({ port, inode });
  }
  return found;
}

type Owner = 'ollana' | 'ollama' | 'other' | 'unknown';

/**
 * ollana by its command line; Ollama by its name, or (on Ollama's port) by the local Ollama answering
 * there, whatever the program is called.
 */
function ownerOf(h: PortHolder, ollamaAnswers: boolean): Owner {
  if (h.cmdline !== null && /ollana/.test(h.cmdline)) return 'ollana';
  if (h.name === 'ollama' || ollamaAnswers) return 'ollama';
  if (h.pid === null) return 'unknown';
  return 'other';
}

function who(h: PortHolder): string {
  return h.pid === null ? 'a process this user cannot see (run as root to name it)' : `${h.name ?? '?'} (pid ${h.pid})`;
}

/** `ollamaAnswers`: the Ollama check found one at Ollama's port on this machine. */
export function checkPorts(
  ports: OllanaPorts,
  holders: readonly PortHolder[] | null,
  ollamaAnswers: boolean,
): CheckResult<'ports'> {
  if (holders === null) {
    return result('ports', 'skip', 'ports: not checked (no /proc/net on this platform)', { checked: false, ports: [] });
  }
  const lines: string[] = [];
  let status: CheckStatus = 'ok';
  const worse = (s: CheckStatus): void => {
    if (s === 'fail' || (s === 'warn' && status === 'ok')) status = s;
  };
  const report: PortReport[] = [];
  const want: readonly { proto: 'tcp' | 'udp'; port: number; role: 'ollama' | 'proxy' | 'discovery' }[] = [
    { proto: 'tcp', port: ports.ollama, role: 'ollama' },
    { proto: 'tcp', port: ports.proxy, role: 'proxy' },
    { proto: 'udp', port: ports.discovery, role: 'discovery' },
  ];
  for (const w of want) {
    const on = holders.filter((h) => h.proto === w.proto && h.port === w.port);
    const owner = (h: PortHolder): Owner => ownerOf(h, ollamaAnswers && w.role === 'ollama');
    const label = `${w.proto.toUpperCase()} ${w.port}`;
    const foreign = on.filter((h) => {
      const o = owner(h);
      return o === 'other' || o === 'unknown' || (o === 'ollama' && w.role !== 'ollama');
    });
    report.push({
      proto: w.proto,
      port: w.port,
      free: on.length === 0,
      holders: on.map((h) => ({ pid: h.pid, name: h.name, owner: owner(h) })),
    });
    if (on.length === 0) {
      lines.push(`${label} free`);
    } else if (foreign.length === 0) {
      lines.push(`${label} held by ${on.map((h) => `${owner(h)} (pid ${h.pid ?? '?'})`).join(', ')}`);
    } else {
      worse('fail');
      const fix =
        w.role === 'ollama'
          ? "a client node cannot take Ollama's port: stop it, or give ollana another with --listen"
          : w.role === 'proxy'
            ? 'a server node cannot listen: stop it, or give ollana another port with --listen'
            : 'discovery cannot bind: stop it, or move every node of the LAN to another port with --discovery-port';
      lines.push(`${label} HELD by ${foreign.map(who).join(', ')}: ${fix}`);
    }
  }
  return result('ports', status, `ports: ${lines.join('; ')}`, { checked: true, ports: report });
}
