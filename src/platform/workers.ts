/**
 * How many proxy workers this OS lets a node run. Each worker thread listens on the node's port with
 * its own socket, which takes SO_REUSEPORT; where the OS has none (macOS, Windows), a node runs one
 * proxy worker: a laptop's client node serves one user and needs no more.
 */
import type { ServeConfig } from '../config/defaults.ts';
import type { Origin } from '../config/schema.ts';
import { OllanaError } from '../errors.ts';
import { hasReusePort, osName } from './platform.ts';

export interface WorkerPlan {
  readonly workers: number;
  /** Whether the workers' sockets take SO_REUSEPORT. */
  readonly reusePort: boolean;
  /** Said once at info when the OS held the count down, else null. */
  readonly note: string | null;
}

/**
 * The worker count and socket option for `config` on `os`. A count above 1 that the user set (flag,
 * environment, config file) is refused there with OLN_WORKERS_UNSUPPORTED; the default becomes 1.
 */
export function planWorkers(config: ServeConfig, origin: Origin, os: NodeJS.Platform): WorkerPlan {
  if (hasReusePort(os)) return { workers: config.workers, reusePort: true, note: null };
  const why = `${osName(os)} has no SO_REUSEPORT, which proxy worker threads need to share one port`;
  if (config.workers > 1 && origin !== 'default') {
    const where =
      origin === 'flag' ? '--workers' : origin === 'environment' ? 'OLLANA_WORKERS' : 'workers in config.json';
    throw new OllanaError(
      'OLN_WORKERS_UNSUPPORTED',
      `${where} is ${config.workers} (${origin}), but ${why}: a node here runs one proxy worker; ` +
        `leave ${where} out or set it to 1 (a node that needs more workers runs on Linux)`,
      { details: { workers: config.workers, os } },
    );
  }
  return { workers: 1, reusePort: false, note: `${why}: this node runs one proxy worker` };
}
