/** Check: does the local Ollama answer, and where. */
import type { ProbeResult } from '../net/probe.ts';
import { type CheckResult, result } from './types.ts';

/** `ollanaOnPort`: a client node of ollana holds the port of `url` (it relays to the LAN's servers). */
export function checkOllama(url: string, probe: ProbeResult, ollanaOnPort: boolean): CheckResult<'ollama'> {
  if (ollanaOnPort) {
    const relay = probe.ok
      ? `it answers as Ollama ${probe.version} through a server node`
      : `it does not answer through a server node yet (${probe.reason}): see the hearing and pending lines`;
    return result(
      'ollama',
      'ok',
      `no local Ollama: ollana holds ${url} as a client node, ${relay} (to run Ollama here, stop ollana first or start Ollama on another port and pass --ollama-url)`,
      {
        url,
        clientNode: true,
        relayed: probe.ok,
        ...(probe.ok ? { version: probe.version } : { reason: probe.reason }),
      },
    );
  }
  if (probe.ok) {
    return result(
      'ollama',
      'ok',
      `local Ollama ${probe.version} answers at ${url}: this machine can be a server node`,
      {
        url,
        clientNode: false,
        version: probe.version,
      },
    );
  }
  return result(
    'ollama',
    'warn',
    `no Ollama answers at ${url} (${probe.reason}): this machine will be a client node; if it should serve, start Ollama (\`ollama serve\`) or pass --ollama-url`,
    { url, clientNode: false, reason: probe.reason },
  );
}
