/** Starts the benchmark's Ollama emulator as a child process (see emulator-main.ts). */
import { fileURLToPath } from 'node:url';
import { startChild, waitForLine, type Child } from './children.ts';

export interface EmulatorSettings {
  readonly ttftMs: number;
  readonly tokenIntervalMs: number;
  readonly tokens: number;
}

/** The streaming workload: first token at once, then one every 20 ms, 100 in all. */
export const STREAM_SETTINGS: EmulatorSettings = { ttftMs: 0, tokenIntervalMs: 20, tokens: 100 };

export interface RunningEmulator {
  readonly url: string;
  readonly port: number;
  readonly child: Child;
  readonly settings: EmulatorSettings;
}

const ENTRY = fileURLToPath(new URL('./emulator-main.ts', import.meta.url));

export async function startEmulator(
  cpus: string | null,
  settings: EmulatorSettings = STREAM_SETTINGS,
): Promise<RunningEmulator> {
  const child = startChild(
    'emulator',
    process.execPath,
    [
      ENTRY,
      '--port',
      '0',
      '--ttft-ms',
      String(settings.ttftMs),
      '--token-interval-ms',
      String(settings.tokenIntervalMs),
      '--tokens',
      String(settings.tokens),
      '--stamp-tokens',
    ],
    { cpus },
  );
  const ready = await waitForLine(
    child,
    (line) => {
      try {
        const j = JSON.parse(line) as { url?: unknown; port?: unknown };
        return typeof j.url === 'string' && typeof j.port === 'number' ? { url: j.url, port: j.port } : undefined;
      } catch {
        return undefined;
      }
    },
    20_000,
    'ready line {"url","port"}',
  );
  return { ...ready, child, settings };
}
