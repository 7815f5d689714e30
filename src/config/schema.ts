/**
 * Turns raw setting values (flag strings, environment strings, JSON from the config file) into typed
 * values, with zod doing the checking. Errors name where the bad value came from and the form expected.
 */
import { z } from 'zod';
import { OllanaError } from '../errors.ts';
import { DISCOVERY_MODES, LOG_LEVELS, MODES, type OptionSpec, type ValueKind } from './defaults.ts';
import { parseOllamaHost } from './ollama-host.ts';

export type Origin = 'default' | 'config file' | 'environment' | 'flag';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000 };

const duration = z.union([
  z.number().int().min(0),
  z
    .string()
    .trim()
    .regex(/^\d+(\.\d+)?(ms|s|m|h)?$/)
    .transform((text) => {
      const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text)!;
      return Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!);
    }),
]);

const count = z
  .union([z.number(), z.string().trim().regex(/^\d+$/).transform(Number)])
  .pipe(z.number().int().min(1).max(1024));

/** host:port, [v6]:port, :port or a bare port (every interface). Port 0 asks the OS for a free port. */
export function parseListen(text: string): { host: string; port: number } | null {
  const t = text.trim();
  let host: string;
  let portText: string;
  if (/^\d+$/.test(t)) {
    host = '0.0.0.0';
    portText = t;
  } else {
    const m = /^(?:\[([0-9a-fA-F:.]+(?:%[A-Za-z0-9_.-]+)?)\]|([A-Za-z0-9.\-_]*)):(\d{1,5})$/.exec(t);
    if (!m) return null;
    host = m[1] ?? (m[2] === undefined || m[2] === '' ? '0.0.0.0' : m[2]);
    portText = m[3]!;
  }
  const port = Number(portText);
  return port > 65535 ? null : { host, port };
}

const SCHEMAS: Record<ValueKind, z.ZodType> = {
  mode: z.enum(MODES),
  discovery: z.enum(DISCOVERY_MODES),
  port: z
    .union([z.number(), z.string().trim().regex(/^\d+$/).transform(Number)])
    .pipe(z.number().int().min(1).max(65535)),
  level: z.string().trim().toLowerCase().pipe(z.enum(LOG_LEVELS)),
  count,
  limit: z
    .union([z.number(), z.string().trim().regex(/^\d+$/).transform(Number)])
    .pipe(z.number().int().min(0).max(1_000_000)),
  duration,
  bool: z.union([
    z.boolean(),
    z
      .enum(['1', 'true', 'yes', 'on', '0', 'false', 'no', 'off'])
      .transform((v) => ['1', 'true', 'yes', 'on'].includes(v)),
  ]),
  path: z.string().trim().min(1),
  listen: z.string().refine((s) => parseListen(s) !== null),
  url: z.string().superRefine((s, ctx) => {
    // The value's source is named by parseValue; here only the reason is wanted.
    try {
      parseOllamaHost(s, 'the address');
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
    }
  }),
  list: z.union([
    z.array(z.string()),
    z.string().transform((s) =>
      s
        .split(',')
        .map((x) => x.trim())
        .filter((x) => x !== ''),
    ),
  ]),
};

const EXPECTED: Record<ValueKind, string> = {
  mode: `one of ${MODES.join(', ')}`,
  discovery: `one of ${DISCOVERY_MODES.join(', ')}`,
  port: 'a port number from 1 to 65535',
  level: `one of ${LOG_LEVELS.join(', ')}`,
  count: 'a whole number from 1 to 1024',
  limit: 'a whole number from 0 (no limit) to 1000000',
  duration: 'a duration: milliseconds, or a number with ms, s, m or h (30s, 2m)',
  bool: 'true or false',
  path: 'a file or directory path',
  listen: 'host:port, e.g. 0.0.0.0:11435, [::1]:11434 or :11435 (port 0 to 65535)',
  url: 'an Ollama address, e.g. http://127.0.0.1:11434',
  list: 'a comma-separated list',
};

export function describeSource(spec: OptionSpec, origin: Origin, envName?: string): string {
  switch (origin) {
    case 'flag':
      return `${spec.flag} (flag)`;
    case 'environment':
      return `${envName ?? spec.env[0]} (environment)`;
    case 'config file':
      return `"${spec.key}" (config file)`;
    case 'default':
      return `${spec.key} (default)`;
  }
}

/** Checks and converts one raw value; throws OLN_BAD_FLAG / OLN_BAD_CONFIG naming its source. */
export function parseValue(spec: OptionSpec, raw: unknown, origin: Origin, envName?: string): unknown {
  const result = SCHEMAS[spec.kind].safeParse(raw);
  if (result.success) return result.data;
  const where = describeSource(spec, origin, envName);
  const custom = spec.kind === 'url' ? result.error.issues.find((i) => i.code === 'custom')?.message : undefined;
  if (custom !== undefined) throw new OllanaError('OLN_BAD_OLLAMA_URL', `${where}: ${custom}`);
  throw new OllanaError(
    origin === 'flag' ? 'OLN_BAD_FLAG' : 'OLN_BAD_CONFIG',
    `${where} must be ${EXPECTED[spec.kind]}; got ${JSON.stringify(raw)}`,
    { details: { key: spec.key, origin } },
  );
}
