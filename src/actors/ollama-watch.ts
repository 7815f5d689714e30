/**
 * The local Ollama as the supervisor sees it: the probe at start that decides the role in auto mode,
 * then a health check every HEALTH_INTERVAL_MS (a server node's Ollama, and in auto mode one that
 * appears on a client node), its models and since when it has not answered, which drives the switch
 * from server to client after --role-switch-after. The probe and the clock are injected, so tests
 * run it without a network or waiting.
 */
import { createHash } from 'node:crypto';
import type { Clock } from '../clock.ts';
import type { OllamaTarget } from '../config/ollama-host.ts';
import type { Logger } from '../log.ts';
import { outOfFilesAdvice } from '../net/open-files.ts';
import { fetchModels, probeOllama, type ProbeResult } from '../net/probe.ts';

export const HEALTH_INTERVAL_MS = 2_000;

/** How the local Ollama is asked; tests replace it. */
export interface OllamaProbe {
  /** GET /api/version: whether an Ollama answers, and its version. */
  ollama(target: OllamaTarget, timeoutMs: number): Promise<ProbeResult>;
  /** GET /api/tags: its models, or null when they could not be read. */
  models(target: OllamaTarget, timeoutMs: number): Promise<string[] | null>;
}

export const netOllamaProbe: OllamaProbe = { ollama: probeOllama, models: fetchModels };

export interface OllamaState {
  readonly healthy: boolean;
  readonly version: string | null;
  readonly models: string[];
  /** clock time of the last check */
  readonly checkedAt: number;
}

/** What one health check of a server node's Ollama found. */
export interface HealthCheck {
  /** it answered the check before this one */
  readonly was: boolean;
  /** it answered this one */
  readonly ok: boolean;
  readonly modelsChanged: boolean;
  /** how long it has not answered, or null while it answers */
  readonly downForMs: number | null;
}

export function modelsDigest(models: readonly string[]): string {
  return createHash('sha256')
    .update([...models].sort().join('\n'))
    .digest('hex')
    .slice(0, 16);
}

export class OllamaWatch {
  readonly #target: OllamaTarget;
  readonly #timeoutMs: number;
  readonly #probe: OllamaProbe;
  readonly #clock: Clock;
  readonly #log: Logger;
  #state: OllamaState = { healthy: false, version: null, models: [], checkedAt: 0 };
  /** Since when the local Ollama has not answered (server role), or null. */
  #downSince: number | null = null;
  /** The last health check could not be made for lack of file descriptors (logged once). */
  #starved = false;
  #stopped = false;

  constructor(target: OllamaTarget, timeoutMs: number, probe: OllamaProbe, clock: Clock, log: Logger) {
    this.#target = target;
    this.#timeoutMs = timeoutMs;
    this.#probe = probe;
    this.#clock = clock;
    this.#log = log;
  }

  get state(): OllamaState {
    return this.#state;
  }

  /** The node stops: a check under way changes nothing when it returns. */
  stop(): void {
    this.#stopped = true;
  }

  /** The start-up probe; with `withModels` (a server node) its models are read when it answers. */
  async first(withModels: (probe: ProbeResult) => boolean): Promise<ProbeResult> {
    const probe = await this.#probe.ollama(this.#target, this.#timeoutMs);
    this.#state = {
      healthy: probe.ok,
      version: probe.ok ? probe.version : null,
      models: [],
      checkedAt: this.#clock.now(),
    };
    if (withModels(probe) && probe.ok) {
      this.#state = { ...this.#state, models: (await this.#probe.models(this.#target, this.#timeoutMs)) ?? [] };
    }
    return probe;
  }

  /** A client node in auto mode: the version of an Ollama that now answers (the state says it is healthy), or null. */
  async appeared(): Promise<string | null> {
    const probe = await this.#probe.ollama(this.#target, this.#timeoutMs);
    if (!probe.ok || this.#stopped) return null;
    this.#state = {
      healthy: true,
      version: probe.version,
      models: (await this.#probe.models(this.#target, this.#timeoutMs)) ?? [],
      checkedAt: this.#clock.now(),
    };
    this.#downSince = null;
    return probe.version;
  }

  /**
   * A server node's health check: logs a change of health, and returns what changed, or null when
   * nothing can be said (the node stops, or it could not ask for lack of file descriptors).
   */
  async check(): Promise<HealthCheck | null> {
    const probe = await this.#probe.ollama(this.#target, this.#timeoutMs);
    if (this.#stopped) return null;
    if (!probe.ok && probe.outOfFiles === true) {
      // This node could not open a connection to ask, which says nothing about Ollama: leaving the
      // cluster (or, in auto mode, becoming a client) would be wrong. Asked again next round.
      if (!this.#starved)
        this.#log.error(
          { ollama: this.#target.origin },
          `cannot check the local Ollama at ${this.#target.origin}: ${outOfFilesAdvice()}`,
        );
      this.#starved = true;
      return null;
    }
    this.#starved = false;
    const was = this.#state.healthy;
    const models = probe.ok ? await this.#probe.models(this.#target, this.#timeoutMs) : null;
    const modelsChanged = models !== null && modelsDigest(models) !== modelsDigest(this.#state.models);
    this.#state = {
      healthy: probe.ok,
      version: probe.ok ? probe.version : this.#state.version,
      models: models ?? this.#state.models,
      checkedAt: this.#clock.now(),
    };
    if (probe.ok) this.#downSince = null;
    else this.#downSince ??= this.#clock.now();
    if (was !== probe.ok) {
      if (probe.ok)
        this.#log.info(
          { ollama: this.#target.origin },
          `local Ollama at ${this.#target.origin} answers again: announcing this server node`,
        );
      else
        this.#log.warn(
          { ollama: this.#target.origin, reason: probe.reason },
          `local Ollama at ${this.#target.origin} stopped answering (${probe.reason}): this node leaves the cluster until it is back`,
        );
    }
    return {
      was,
      ok: probe.ok,
      modelsChanged,
      downForMs: this.#downSince === null ? null : this.#clock.now() - this.#downSince,
    };
  }
}
