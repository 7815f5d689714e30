/**
 * The one table of `ollana serve` settings: each key's default, flag, environment variables and help.
 * The CLI help, the config-file keys and docs/settings.md (`npm run docs`) are all derived from it.
 */
import { availableParallelism } from 'node:os';

export const LOG_LEVELS = ['error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const MODES = ['auto', 'server', 'client'] as const;
export type Mode = (typeof MODES)[number];
export const DISCOVERY_MODES = ['both', 'multicast', 'broadcast', 'off'] as const;
export type DiscoveryMode = (typeof DISCOVERY_MODES)[number];

export interface ServeConfig {
  readonly mode: Mode;
  /** host:port to accept on; null = by role (server 0.0.0.0:11435, client 127.0.0.1:11434). */
  readonly listen: string | null;
  /** The local Ollama, as given (OLLAMA_HOST rules); parsed by parseOllamaHost. */
  readonly ollamaUrl: string;
  readonly workers: number;
  readonly logLevel: LogLevel;
  readonly logFile: string | null;
  readonly pidFile: string | null;
  readonly daemon: boolean;
  readonly dataDir: string | null;
  readonly drainTimeoutMs: number;
  readonly probeTimeoutMs: number;
  readonly connectTimeoutMs: number;
  readonly headersTimeoutMs: number;
  readonly bodyTimeoutMs: number;
  readonly upstreamConnections: number;
  /** A client node's in-flight requests on one server before the next request for its model spills elsewhere. */
  readonly spillAfter: number;
  readonly upstreamKeepAliveMs: number;
  readonly requestHeadersTimeoutMs: number;
  readonly keepAliveTimeoutMs: number;
  readonly requestBodyTimeoutMs: number;
  readonly maxConnections: number;
  readonly origins: readonly string[];
  readonly discoveryPort: number;
  readonly discovery: DiscoveryMode;
  readonly heartbeatMs: number;
  readonly roleSwitchAfterMs: number;
  /** Accept any device (still TLS, still pinned to announced ids): demos, not shared networks. */
  readonly trustLan: boolean;
  /** Plain HTTP instead of TLS on a server node's port; only with a loopback --listen (benchmarks). */
  readonly insecureHttp: boolean;
  /** Server node: requests in flight at Ollama per model (its OLLAMA_NUM_PARALLEL); the rest wait fairly (src/sched/). */
  readonly slots: number;
  /** Server node: longest a request waits for a slot before it gets 503. */
  readonly queueTimeoutMs: number;
  /** Server node: requests one device may have waiting per model; 0 = no limit. */
  readonly queueDepth: number;
}

export type ConfigKey = keyof ServeConfig;

/** Default worker count: one per core, at most 8 (past that a proxy is bound by the network, not CPU). */
export const DEFAULT_WORKERS = Math.max(1, Math.min(8, availableParallelism()));

export const DEFAULTS: ServeConfig = Object.freeze({
  mode: 'auto',
  listen: null,
  ollamaUrl: 'http://127.0.0.1:11434',
  workers: DEFAULT_WORKERS,
  logLevel: 'info',
  logFile: null,
  pidFile: null,
  daemon: false,
  dataDir: null,
  drainTimeoutMs: 30_000,
  probeTimeoutMs: 1_500,
  connectTimeoutMs: 5_000,
  // 0 = no timeout: a cold model load can take minutes before the first byte, and Ollama itself
  // never times a request out. Users who want a bound set one.
  headersTimeoutMs: 0,
  bodyTimeoutMs: 0,
  upstreamConnections: 512,
  // Ollama runs up to 4 requests of a loaded model at once when memory allows (OLLAMA_NUM_PARALLEL);
  // a fifth waits in its queue, and a cold load elsewhere costs seconds and the model's memory again.
  spillAfter: 4,
  upstreamKeepAliveMs: 60_000,
  // Clients send their headers in one write; a connection that has not finished them in 10 s (from
  // connect, or from the request's first byte) is a stalled or hostile one (slowloris).
  requestHeadersTimeoutMs: 10_000,
  // Empty lines a client sends while idle do not extend it (proxy/listen/idle-watch.ts).
  keepAliveTimeoutMs: 65_000,
  // Clients send a body as fast as the network lets them; one that sends nothing for 30 s while
  // ollana reads is stalled or hostile, and would hold its connection and an upstream request.
  requestBodyTimeoutMs: 30_000,
  // Ollama queues at most 512 requests (OLLAMA_MAX_QUEUE) and answers 503 past that; four times that
  // covers a client node in front of several servers, and bounds what a connection flood can hold
  // (about 17 KiB per idle connection, up to ~90 KiB with maximal headers).
  maxConnections: 2048,
  origins: Object.freeze([]),
  discoveryPort: 11436,
  discovery: 'both',
  heartbeatMs: 1_000,
  roleSwitchAfterMs: 30_000,
  trustLan: false,
  insecureHttp: false,
  // Ollama's own default for OLLAMA_NUM_PARALLEL since 0.11 (and what it forces for embedding models).
  slots: 1,
  // Long enough for a cold model load plus a few requests ahead; a client never waits unbounded.
  queueTimeoutMs: 120_000,
  // Ollama's own OLLAMA_MAX_QUEUE: a device is refused no sooner than Ollama would refuse it. A deep
  // queue costs the other devices nothing: they are served in turn beside it.
  queueDepth: 512,
});

export const SERVER_LISTEN = '0.0.0.0:11435';
export const CLIENT_LISTEN = '127.0.0.1:11434';

export type ValueKind =
  | 'discovery'
  | 'port'
  | 'mode'
  | 'listen'
  | 'url'
  | 'count'
  | 'limit'
  | 'level'
  | 'path'
  | 'bool'
  | 'duration'
  | 'list';

export interface OptionSpec {
  readonly key: ConfigKey;
  readonly flag: string;
  readonly short?: string;
  readonly kind: ValueKind;
  readonly env: readonly string[];
  readonly help: string;
  /** How the default reads in help, where the raw value would mislead. */
  readonly defaultText?: string;
  /** The setting's meaning in docs/settings.md (Markdown), where it says more than `help`. */
  readonly doc?: string;
  /** How the default reads in docs/settings.md, where neither the value nor `defaultText` fits (machine-independent). */
  readonly docDefault?: string;
}

/** Settings given only as flags or environment: the data directory holds the config file, `daemon` is per run. */
export const NOT_IN_CONFIG_FILE: readonly ConfigKey[] = Object.freeze(['dataDir', 'daemon']);

export const OPTION_SPECS: readonly OptionSpec[] = Object.freeze([
  {
    key: 'mode',
    flag: '--mode',
    kind: 'mode',
    env: ['OLLANA_MODE'],
    help: 'auto: server node if a local Ollama answers, else client node; or force server / client',
    doc: '`auto`: server node if a local Ollama answers, else client node; `server` / `client` force it',
  },
  {
    key: 'listen',
    flag: '--listen',
    kind: 'listen',
    env: ['OLLANA_LISTEN'],
    help: 'address to accept on, host:port',
    defaultText: `${SERVER_LISTEN} (server), ${CLIENT_LISTEN} (client)`,
    doc: 'where the node accepts requests',
    docDefault: '`0.0.0.0:11435` (server), `127.0.0.1:11434` (client)',
  },
  {
    key: 'ollamaUrl',
    flag: '--ollama-url',
    kind: 'url',
    env: ['OLLANA_OLLAMA_URL', 'OLLAMA_HOST'],
    help: 'the local Ollama (parsed like OLLAMA_HOST)',
    doc: 'the local Ollama, parsed exactly as Ollama parses `OLLAMA_HOST` (`http://h` means port 80!)',
  },
  {
    key: 'workers',
    flag: '--workers',
    kind: 'count',
    env: ['OLLANA_WORKERS'],
    help: 'proxy worker threads sharing the port (1 on macOS and Windows, which lack SO_REUSEPORT)',
    defaultText: `${DEFAULT_WORKERS} (cores, at most 8)`,
    docDefault: 'cores, at most 8',
  },
  {
    key: 'logLevel',
    flag: '--log-level',
    kind: 'level',
    env: ['OLLANA_LOG', 'LOG_LEVEL'],
    help: `log level: ${LOG_LEVELS.join(', ')}`,
    doc: LOG_LEVELS.map((l) => `\`${l}\``).join(', '),
  },
  {
    key: 'logFile',
    flag: '--log-file',
    kind: 'path',
    env: ['OLLANA_LOG_FILE'],
    help: 'write logs to this file',
    defaultText: 'stdout; with -d: <state dir>/ollana.log',
    docDefault:
      'stdout; with `-d`: `$XDG_STATE_HOME/ollana/ollana.log` (Linux), `~/Library/Logs/ollana/ollana.log` (macOS), `%LOCALAPPDATA%\\ollana\\logs\\ollana.log` (Windows)',
  },
  {
    key: 'pidFile',
    flag: '--pid-file',
    kind: 'path',
    env: ['OLLANA_PID_FILE'],
    help: 'pid file',
    defaultText: '<runtime dir>/ollana.pid',
    doc: 'first line the pid, then its start time, a token, the drain timeout and the listen address; written to a temporary file and renamed, so never seen half-written. A node whose drain timeout cut requests leaves `<pid file>.cut` for `ollana stop` to report',
    docDefault:
      '`$XDG_RUNTIME_DIR/ollana/ollana.pid`, else in the data dir (Linux); in the data dir (macOS); `%LOCALAPPDATA%\\ollana\\ollana.pid` (Windows)',
  },
  {
    key: 'daemon',
    flag: '--daemon',
    short: '-d',
    kind: 'bool',
    env: [],
    help: 'run in the background; returns once the node listens',
  },
  {
    key: 'dataDir',
    flag: '--data-dir',
    kind: 'path',
    env: ['OLLANA_HOME'],
    help: 'data directory (identity, config.json)',
    defaultText:
      '$XDG_CONFIG_HOME/ollana or ~/.config/ollana; macOS ~/Library/Application Support/ollana; Windows %APPDATA%\\ollana',
    doc: 'data directory (mode 0700): config file, identity (`cert.pem`, `key.pem` 0600), `devices.json`, `pending.json`, `trust.lock` (see [the trust files](lan.md#the-trust-files)), `control.token` (0600, while the node runs: `ollana stop` without signals)',
    docDefault:
      '`$XDG_CONFIG_HOME/ollana` or `~/.config/ollana` (Linux), `~/Library/Application Support/ollana` (macOS), `%APPDATA%\\ollana` (Windows)',
  },
  {
    key: 'drainTimeoutMs',
    flag: '--drain-timeout',
    kind: 'duration',
    env: ['OLLANA_DRAIN_TIMEOUT'],
    help: 'on stop, how long in-flight streams may finish (ms, or 30s, 2m)',
    doc: 'on stop, how long in-flight streams may run on',
  },
  {
    key: 'probeTimeoutMs',
    flag: '--probe-timeout',
    kind: 'duration',
    env: ['OLLANA_PROBE_TIMEOUT'],
    help: 'how long auto mode waits for the local Ollama to answer',
    doc: 'how long the probe of the local Ollama waits',
  },
  {
    key: 'connectTimeoutMs',
    flag: '--connect-timeout',
    kind: 'duration',
    env: ['OLLANA_CONNECT_TIMEOUT'],
    help: 'upstream TCP connect timeout',
  },
  {
    key: 'headersTimeoutMs',
    flag: '--headers-timeout',
    kind: 'duration',
    env: ['OLLANA_HEADERS_TIMEOUT'],
    help: 'upstream time to first byte limit; 0 = none (cold model loads take minutes)',
    doc: 'upstream time to first byte; none by default, since a cold model load takes minutes',
    docDefault: '`0` (none)',
  },
  {
    key: 'bodyTimeoutMs',
    flag: '--body-timeout',
    kind: 'duration',
    env: ['OLLANA_BODY_TIMEOUT'],
    help: 'upstream idle time between body chunks limit; 0 = none',
    doc: 'upstream idle time between chunks',
    docDefault: '`0` (none)',
  },
  {
    key: 'upstreamConnections',
    flag: '--upstream-connections',
    kind: 'count',
    env: ['OLLANA_UPSTREAM_CONNECTIONS'],
    help: 'keep-alive connections per worker per upstream',
  },
  {
    key: 'spillAfter',
    flag: '--spill-after',
    kind: 'count',
    env: ['OLLANA_SPILL_AFTER'],
    help: "client node: a model's requests in flight on its server before the next goes to another server",
    doc: 'A client node sends every request for a model to the one server that has it loaded (warm) while that server has fewer than this many requests of this worker in flight; past it, the request goes to another server that has the model loaded, or else is loaded on one (see docs/residency.md). Set it to the `OLLAMA_NUM_PARALLEL` of your servers.',
  },
  {
    key: 'upstreamKeepAliveMs',
    flag: '--upstream-keep-alive',
    kind: 'duration',
    env: ['OLLANA_UPSTREAM_KEEP_ALIVE'],
    help: 'how long an idle upstream connection is kept',
    doc: 'idle upstream connection lifetime',
  },
  {
    key: 'requestHeadersTimeoutMs',
    flag: '--request-headers-timeout',
    kind: 'duration',
    env: ['OLLANA_REQUEST_HEADERS_TIMEOUT'],
    help: "clients must finish sending request headers within this (from connect or the request's first byte); slower connections get 408 and are closed; 0 = no limit",
    doc: "a client must finish its request headers this long after connecting or after the request's first byte; slower connections (slowloris) get 408 and are closed; `0` = no limit",
  },
  {
    key: 'keepAliveTimeoutMs',
    flag: '--keep-alive-timeout',
    kind: 'duration',
    env: ['OLLANA_KEEP_ALIVE_TIMEOUT'],
    help: 'how long a client connection may stay idle between requests; empty lines sent meanwhile do not count as a request; 0 = until the client closes it',
    doc: 'how long a client connection may stay idle between requests; empty lines (CRLF) sent meanwhile do not count as a request; `0` = until the client closes it',
  },
  {
    key: 'requestBodyTimeoutMs',
    flag: '--request-body-timeout',
    kind: 'duration',
    env: ['OLLANA_REQUEST_BODY_TIMEOUT'],
    help: 'a request body that sends nothing for this long (while ollana reads it) gets 408 and is closed, and its upstream request ends; 0 = no limit',
    doc: 'a request body that sends nothing for this long (while ollana reads it; waiting on a slow upstream does not count) gets 408 and is closed, and its upstream request ends; at `--max-connections`, a body stalled for 5 s counts as idle; `0` = no limit',
  },
  {
    key: 'maxConnections',
    flag: '--max-connections',
    kind: 'limit',
    env: ['OLLANA_MAX_CONNECTIONS'],
    help: 'open client connections per node, whichever worker holds them; new ones past it are closed at once, and idle ones closed to make room; 0 = no limit',
    doc: 'open client connections per node, whichever worker holds them; past it new connections are closed at once, idle ones are closed to make room, and a warning is logged; `0` = no limit',
  },
  {
    key: 'origins',
    flag: '--origins',
    kind: 'list',
    env: ['OLLANA_ORIGINS', 'OLLAMA_ORIGINS'],
    help: "extra browser origins allowed (comma-separated, * wildcard), added to Ollama's defaults",
    doc: "extra browser origins (comma-separated, `*` wildcard) on top of Ollama's defaults",
  },
  {
    key: 'discoveryPort',
    flag: '--discovery-port',
    kind: 'port',
    env: ['OLLANA_DISCOVERY_PORT'],
    help: 'UDP port of LAN discovery (every node of a LAN must use the same)',
    doc: 'UDP port of LAN discovery; the same on every node',
  },
  {
    key: 'discovery',
    flag: '--discovery',
    kind: 'discovery',
    env: ['OLLANA_DISCOVERY'],
    help: 'how to reach the LAN: multicast (group 239.255.11.36), broadcast, both, or off (no LAN traffic at all)',
    doc: '`multicast`, `broadcast`, `both`, or `off` (no LAN traffic; a server node then serves only clients that know its address)',
  },
  {
    key: 'heartbeatMs',
    flag: '--heartbeat',
    kind: 'duration',
    env: ['OLLANA_HEARTBEAT'],
    help: 'server announce interval; a node silent for 3.5 heartbeats is gone',
    doc: 'announce interval; a node silent for 3.5 heartbeats is gone',
  },
  {
    key: 'roleSwitchAfterMs',
    flag: '--role-switch-after',
    kind: 'duration',
    env: ['OLLANA_ROLE_SWITCH_AFTER'],
    help: 'auto mode: a server node whose Ollama stays away this long becomes a client node',
  },
  {
    key: 'trustLan',
    flag: '--trust-lan',
    kind: 'bool',
    env: ['OLLANA_TRUST_LAN'],
    help: 'accept every device on the LAN without pairing (still TLS): for demos; anyone on the LAN can then use a server node, and a client node uses any server that announces itself',
    doc: 'accept every device without pairing (still TLS; see [what it gives up](lan.md#--trust-lan-what-it-gives-up))',
  },
  {
    key: 'insecureHttp',
    flag: '--insecure-http',
    kind: 'bool',
    env: ['OLLANA_INSECURE_HTTP'],
    help: 'server node: plain HTTP instead of TLS, allowed only with a loopback --listen (benchmarks, local tests); never reachable from the LAN',
    doc: 'a server node serves plain HTTP instead of TLS; refused unless `--listen` is a loopback address (benchmarks, local tests)',
  },
  {
    key: 'slots',
    flag: '--slots',
    kind: 'count',
    env: ['OLLANA_SLOTS', 'OLLAMA_NUM_PARALLEL'],
    help: "server node: requests in flight at the local Ollama per model; set it to Ollama's OLLAMA_NUM_PARALLEL; the rest wait, shared fairly between devices",
    doc: "a server node keeps at most this many requests per model in flight at its Ollama and queues the rest per device, served in turn ([fairness](fairness.md)); set it to the Ollama's `OLLAMA_NUM_PARALLEL` (read from the environment when ollana's own is unset)",
  },
  {
    key: 'queueTimeoutMs',
    flag: '--queue-timeout',
    kind: 'duration',
    env: ['OLLANA_QUEUE_TIMEOUT'],
    help: 'server node: a request that waits this long for a free slot gets 503 with Retry-After',
    doc: 'a request that waits this long for a free slot of its model gets 503 with `Retry-After` ([fairness](fairness.md))',
  },
  {
    key: 'queueDepth',
    flag: '--queue-depth',
    kind: 'limit',
    env: ['OLLANA_QUEUE_DEPTH'],
    help: 'server node: requests one device may have waiting per model; more get 503 with Retry-After at once; 0 = no limit',
    doc: 'requests one device may have waiting per model; past it a request gets 503 with `Retry-After` at once ([fairness](fairness.md)); `0` = no limit',
  },
] satisfies OptionSpec[]);
