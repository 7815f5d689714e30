/**
 * What the supervisor starts its threads with (protocol/workers.ts): the proxy workers' settings and
 * the discovery thread's options, derived from the node's config, identity and role.
 */
import type { ServeConfig } from '../config/defaults.ts';
import type { Identity } from '../identity/identity.ts';
import type { LogSettings } from '../log.ts';
import type { NodeRole } from '../protocol/lan.ts';
import type { TrustSettings } from '../protocol/messages.ts';
import { hasReusePort, hostPlatform } from '../platform/platform.ts';
import type { DiscoveryWorkerData, ProxyWorkerData } from '../protocol/workers.ts';
import { DISCOVERY_DEFAULTS } from './discovery/index.ts';

/** A node silent for this many heartbeats is gone. */
const DEAD_AFTER_HEARTBEATS = 3.5;

export interface ProxyDataParts {
  readonly config: ServeConfig;
  readonly identity: Identity;
  readonly logSettings: LogSettings;
  readonly listen: { readonly host: string; readonly port: number };
  readonly role: NodeRole;
  /** TLS session ticket keys shared by every proxy worker of this process */
  readonly ticketKeys: string;
  readonly trust: TrustSettings;
  readonly debugHooks: boolean;
}

export function proxyWorkerData(p: ProxyDataParts): ProxyWorkerData {
  const { config } = p;
  return {
    log: p.logSettings,
    proxy: {
      host: p.listen.host,
      port: p.listen.port,
      origins: config.origins,
      connectTimeoutMs: config.connectTimeoutMs,
      headersTimeoutMs: config.headersTimeoutMs,
      bodyTimeoutMs: config.bodyTimeoutMs,
      upstreamConnections: config.upstreamConnections,
      spillAfter: config.spillAfter,
      upstreamKeepAliveMs: config.upstreamKeepAliveMs,
      requestHeadersTimeoutMs: config.requestHeadersTimeoutMs,
      keepAliveTimeoutMs: config.keepAliveTimeoutMs,
      requestBodyTimeoutMs: config.requestBodyTimeoutMs,
      maxConnections: config.maxConnections,
      debugHooks: p.debugHooks,
      tls: { id: p.identity.id, certPem: p.identity.certPem, keyPem: p.identity.keyPem, ticketKeys: p.ticketKeys },
      listenTls: p.role === 'server' && !config.insecureHttp,
      reusePort: hasReusePort(hostPlatform().os),
      trust: p.trust,
      sched:
        p.role === 'server'
          ? { slots: config.slots, maxWaitMs: config.queueTimeoutMs, queueDepth: config.queueDepth }
          : null,
    },
  };
}

export function discoveryWorkerData(
  config: ServeConfig,
  identity: Identity,
  logSettings: LogSettings,
): DiscoveryWorkerData {
  return {
    log: logSettings,
    options: {
      ...DISCOVERY_DEFAULTS,
      port: config.discoveryPort,
      multicast: config.discovery !== 'broadcast',
      broadcast: config.discovery !== 'multicast',
      heartbeatMs: config.heartbeatMs,
      deadAfterMs: Math.round(config.heartbeatMs * DEAD_AFTER_HEARTBEATS),
      queryIntervalMs: config.heartbeatMs,
      answerJitterMs: Math.min(DISCOVERY_DEFAULTS.answerJitterMs, config.heartbeatMs / 4),
    },
    identity: { certPem: identity.certPem, keyPem: identity.keyPem },
  };
}
