/**
 * What the multi-host test files share: the programs they run inside a host (ollana, the Ollama
 * emulator, lan-client), starting them, asking lan-client, and bounded polling.
 */
import { withSlots } from '../helpers/ollana-process.ts';
import { rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Host, HostProcess, Lan } from '../../testkit/netns.ts';

export const NODE = process.execPath;
export const MAIN = fileURLToPath(new URL('../../bin/ollana.mjs', import.meta.url));
export const EMULATOR = fileURLToPath(new URL('../../testkit/ollama-emulator.ts', import.meta.url));
export const CLIENT = fileURLToPath(new URL('./fixtures/lan-client.ts', import.meta.url));

/**
 * The virtual LANs and data directories a test file makes, pushed here as it makes them: all are
 * removed after the file's last test, failed or not, with lan-client's device directory.
 */
export function madeByThisFile(): { readonly lans: Lan[]; readonly homes: string[] } {
  const made = { lans: [] as Lan[], homes: [] as string[] };
  after(async () => {
    for (const lan of made.lans) await lan.close();
    for (const h of made.homes) rmSync(h, { recursive: true, force: true });
    rmSync(join(tmpdir(), 'ollana-lan-client-device'), { recursive: true, force: true }); // lan-client.ts's SHARED_CLIENT_HOME
  });
  return made;
}

/** The Ollama emulator on the host's loopback, where a server node probes for Ollama. */
export async function emulator(host: Host, models?: string, extra: readonly string[] = []): Promise<HostProcess> {
  const p = host.spawn(NODE, [
    EMULATOR,
    '--port',
    '11434',
    '--tokens',
    '3',
    '--token-interval-ms',
    '2',
    '--ttft-ms',
    '0',
    ...(models === undefined ? [] : ['--models', models]),
    ...extra,
  ]);
  await p.waitForLine((t) => t.includes('"url"'), 10_000);
  return p;
}

/** `ollana serve` in auto mode with discovery on, on data dir `home`; resolves with its "listening" line. */
export async function serve(
  host: Host,
  home: string,
  args: readonly string[],
): Promise<{ proc: HostProcess; line: string }> {
  const proc = host.spawn(NODE, [MAIN, 'serve', '--workers', '1', ...withSlots(args)], {
    env: { OLLANA_HOME: home, OLLANA_LOG: 'info', OLLANA_DISCOVERY: undefined },
  });
  const line = await proc.waitForLine((t) => t.includes('listening on'), 20_000);
  return { proc, line };
}

/** Runs test/netns/fixtures/lan-client.ts inside `host` and parses the JSON line it prints. */
// biome-ignore lint/suspicious/noExplicitAny: each lan-client command prints its own JSON shape, read by the test that asked
export async function client(host: Host, ...args: string[]): Promise<any> {
  const r = await host.exec(NODE, [CLIENT, ...args], 20_000);
  const line = r.stdout.trim().split('\n').at(-1) ?? '';
  try {
    return JSON.parse(line);
  } catch {
    throw new Error(`lan-client ${args.join(' ')} on ${host.hostname} printed ${JSON.stringify(r.stdout)} ${r.stderr}`);
  }
}

/** Polls `probe` every 100 ms until `ok` holds, at most `timeoutMs`; fails saying what was missing. */
export async function until<T>(
  what: string,
  probe: () => Promise<T>,
  ok: (v: T) => boolean,
  timeoutMs = 8_000,
): Promise<{ value: T; ms: number }> {
  const start = performance.now();
  let last: T | undefined;
  while (performance.now() - start < timeoutMs) {
    try {
      last = await probe();
      if (ok(last)) return { value: last, ms: performance.now() - start };
    } catch (err) {
      last = err as T;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last: ${JSON.stringify(last)?.slice(0, 2000)}`);
}
