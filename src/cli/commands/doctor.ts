/**
 * `ollana doctor`: checks what makes a LAN cluster work or not, one line each with what to do
 * (src/doctor/). Exit status 0 when nothing failed (warnings allowed), 1 when a check failed.
 */
import type { ConfigKey } from '../../config/defaults.ts';
import { loadConfig } from '../../config/load.ts';
import { parseListen } from '../../config/schema.ts';
import { OllanaError } from '../../errors.ts';
import { DEFAULT_GROUP } from '../../protocol/lan.ts';
import { systemProbes } from '../../doctor/probes.ts';
import { formatReport, runDoctor } from '../../doctor/run.ts';
import { DEFAULT_PORTS } from '../../doctor/types.ts';

type Env = Readonly<Record<string, string | undefined>>;

/** How long the doctor listens for its own probe and for other nodes, unless --wait says otherwise. */
export const DEFAULT_LISTEN_MS = 3_000;

function listenMs(raw: string | null): number {
  if (raw === null) return DEFAULT_LISTEN_MS;
  const m = /^(\d+)(ms|s)?$/.exec(raw.trim());
  const ms = m === null ? Number.NaN : Number(m[1]) * (m[2] === 's' ? 1000 : 1);
  if (!Number.isInteger(ms) || ms < 300 || ms > 60_000) {
    throw new OllanaError(
      'OLN_BAD_FLAG',
      `--wait (flag) must be 300ms to 60s, like 3s or 1500ms; got ${JSON.stringify(raw)}`,
    );
  }
  return ms;
}

export async function doctorCommand(
  flags: Partial<Record<ConfigKey, unknown>>,
  wait: string | null,
  json: boolean,
  env: Env,
): Promise<number> {
  const { config, dataDir } = loadConfig(flags, env);
  const listen = config.listen === null ? null : parseListen(config.listen);
  const report = await runDoctor(
    {
      ports: {
        ollama: DEFAULT_PORTS.ollama,
        proxy: listen?.port ?? DEFAULT_PORTS.proxy,
        discovery: config.discoveryPort,
      },
      group: DEFAULT_GROUP,
      ollamaUrl: config.ollamaUrl,
      dataDir,
      listenMs: listenMs(wait),
      trustLan: config.trustLan,
      discovery: config.discovery,
    },
    systemProbes(config.ollamaUrl),
  );
  process.stdout.write(json ? `${JSON.stringify(report, null, 2)}\n` : formatReport(report));
  return report.ok ? 0 : 1;
}
