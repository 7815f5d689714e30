/** `ollana status`: asks the local node's /ollana/v1/status and prints it for people (or as JSON). */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Client, request } from '../../net/undici.ts';
import type { ConfigKey } from '../../config/defaults.ts';
import { loadConfig } from '../../config/load.ts';
import { parseListen } from '../../config/schema.ts';
import { OllanaError, errorMessage } from '../../errors.ts';
import { loadOrCreateIdentity } from '../../identity/identity.ts';
import { pinnedConnector, type TlsIdentity } from '../../net/tls.ts';
import type { NodeStatus } from '../../protocol/status.ts';
import { ACCOUNT_PATHS, affineTarget } from '../../proxy/route/router.ts';
import { schedLines } from '../../sched/status-text.ts';

type Env = Readonly<Record<string, string | undefined>>;

function connectable(listen: string, scheme: 'http' | 'https'): string {
  const l = parseListen(listen)!;
  const host = l.host === '0.0.0.0' ? '127.0.0.1' : l.host === '::' ? '::1' : l.host;
  return `${scheme}://${host.includes(':') ? `[${host}]` : host}:${l.port}`;
}

/**
 * A server node's port speaks TLS and admits its own device: the node's certificate in the data
 * directory is the key to it (pinned to the same id).
 */
async function fetchStatus(base: string, self: TlsIdentity | null): Promise<NodeStatus> {
  const tls = base.startsWith('https:');
  if (tls && self === null)
    throw new Error("no identity in the data directory to connect with (is --data-dir the node's?)");
  const dispatcher = tls
    ? new Client(base, { connect: pinnedConnector({ self: self!, expectedId: self!.id, timeoutMs: 5_000 }) })
    : undefined;
  try {
    const res = await request(`${base}/ollana/v1/status`, { headersTimeout: 5_000, bodyTimeout: 5_000, dispatcher });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}: ${text.slice(0, 200)}`);
    return JSON.parse(text) as NodeStatus;
  } finally {
    await dispatcher?.close().catch(() => undefined);
  }
}

/** This node's identity if it has one (status never creates one). */
async function ownIdentity(dataDir: string): Promise<TlsIdentity | null> {
  if (!existsSync(join(dataDir, 'cert.pem')) || !existsSync(join(dataDir, 'key.pem'))) return null;
  try {
    return (await loadOrCreateIdentity(dataDir)).identity;
  } catch {
    return null;
  }
}

/** The status for people; optional chaining stays where a node of another version may leave a part out. */
function human(s: NodeStatus): string {
  const lines = [
    `ollana ${s.ollana?.version} (pid ${s.ollana?.pid}), up ${s.ollana?.uptimeS} s, device id ${s.node?.id}`,
    `role: ${s.role} node (mode ${s.mode}), listening on ${s.listen?.host}:${s.listen?.port}` +
      (s.trust?.tls === true ? ' (TLS)' : s.trust?.tls === false ? ' (plain HTTP, --insecure-http)' : ''),
  ];
  const t = s.trust;
  if (t) {
    lines.push(
      `trust: ${t.trustLan ? 'every device (--trust-lan)' : `${t.allowed} allowed device(s)`}, ${t.disabled} disabled, ` +
        `${t.pending} pending${t.pending > 0 ? ' (see `ollana device pending`)' : ''}`,
    );
  }
  if (s.ollama)
    lines.push(
      `local Ollama: ${s.ollama.url} ${s.ollama.healthy ? `healthy, version ${s.ollama.version}, ${s.ollama.models?.length ?? 0} models` : 'NOT ANSWERING'}`,
    );
  const c = s.cluster ?? {};
  lines.push(
    `cluster: leader ${c.leader || 'none'}${c.isLeader ? ' (this node)' : ''}, term ${c.term}, ${c.servers?.length ?? 0} server node(s)`,
  );
  for (const k of c.conflicts ?? []) lines.push(`  CONFLICT ${k.kind}: ${k.detail}`);
  const peers = s.peers ?? [];
  lines.push(`peers: ${peers.length === 0 ? (s.discovery ? 'none seen yet' : 'discovery is off') : ''}`);
  for (const p of peers) {
    const models = 'models' in p && Array.isArray(p.models) ? `  models: ${p.models.join(', ') || '?'}` : '';
    lines.push(
      `  ${p.id}  ${p.role}  ${p.addr}${'leader' in p && p.leader ? '  leader' : ''}  seen ${Math.round(p.lastSeenMsAgo / 100) / 10} s ago${models}`,
    );
  }
  lines.push(`upstreams: ${(s.upstreams ?? []).length === 0 ? 'none yet' : ''}`);
  // Account requests (sign-in state belongs to one server) and pulls, creates and blobs go to one.
  const account = s.role === 'client' ? affineTarget(s.upstreams ?? []) : null;
  for (const u of s.upstreams ?? [])
    lines.push(
      `  ${u.id}  ${u.url}  ${u.healthy ? 'healthy' : 'unhealthy'}${u === account ? `  account (${ACCOUNT_PATHS}), pull, create` : ''}`,
    );
  lines.push(...schedLines(s.sched));
  const w = s.workers ?? {};
  lines.push(
    `workers: ${w.live}/${w.configured} live, ${w.restarts} restarts; requests ${w.totals?.requests}, in flight ${w.totals?.inFlight}`,
  );
  for (const x of w.list ?? []) {
    if ('ready' in x) lines.push(`  #${x.worker}  not ready`);
    else
      lines.push(
        `  #${x.worker}  requests ${x.requests}  in flight ${x.inFlight}  p50 ${x.durationMs.p50} ms  p99 ${x.durationMs.p99} ms`,
      );
  }
  return `${lines.join('\n')}\n`;
}

export async function statusCommand(
  flags: Partial<Record<ConfigKey, unknown>>,
  url: string | null,
  json: boolean,
  env: Env,
): Promise<number> {
  const { config, dataDir } = loadConfig(flags, env);
  const candidates =
    url !== null
      ? [url.replace(/\/+$/, '')]
      : config.listen !== null
        ? [connectable(config.listen, 'https'), connectable(config.listen, 'http')]
        : [
            connectable('127.0.0.1:11435', 'https'),
            connectable('127.0.0.1:11435', 'http'),
            connectable('127.0.0.1:11434', 'http'),
          ];
  const self = await ownIdentity(dataDir);
  const failures: string[] = [];
  for (const base of candidates) {
    try {
      const status = await fetchStatus(base, self);
      process.stdout.write(json ? `${JSON.stringify(status, null, 2)}\n` : human(status));
      return 0;
    } catch (err) {
      failures.push(`${base}: ${errorMessage(err)}`);
    }
  }
  throw new OllanaError(
    'OLN_STATUS_UNREACHABLE',
    `no ollana node answers (${failures.join('; ')}); start one with \`ollana serve\`, or name it with --url`,
  );
}
