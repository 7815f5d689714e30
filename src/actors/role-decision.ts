/**
 * The role a node starts in: in auto mode the local Ollama's first answer decides (it answers: a
 * server node; it does not: a client node); a forced mode is kept, with a warning when a forced
 * server node has no Ollama yet.
 */
import type { ServeConfig } from '../config/defaults.ts';
import type { OllamaTarget } from '../config/ollama-host.ts';
import type { Logger } from '../log.ts';
import type { NodeRole } from '../protocol/lan.ts';
import type { ProbeResult } from '../net/probe.ts';

export function initialRole(
  config: Pick<ServeConfig, 'mode'>,
  probe: ProbeResult,
  target: OllamaTarget,
  log: Logger,
): NodeRole {
  if (config.mode === 'auto') {
    if (probe.ok)
      log.info(
        { ollama: target.origin, ollamaVersion: probe.version },
        `Ollama ${probe.version} answers at ${target.origin}: this machine is a server node`,
      );
    else
      log.info(
        { ollama: target.origin, reason: probe.reason },
        `no Ollama answers at ${target.origin} (${probe.reason}): this machine is a client node`,
      );
    return probe.ok ? 'server' : 'client';
  }
  if (config.mode === 'server' && !probe.ok) {
    log.warn(
      { ollama: target.origin, reason: probe.reason },
      `server mode forced, but no Ollama answers at ${target.origin} yet (${probe.reason}); requests get 502 until it does`,
    );
  }
  return config.mode;
}
