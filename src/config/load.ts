/**
 * Merges the setting layers, lowest first: defaults < config file < environment < flags. Each value
 * remembers its origin so that an error can say which layer to fix.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { OllanaError, systemCode } from '../errors.ts';
import { DEFAULTS, NOT_IN_CONFIG_FILE, OPTION_SPECS, type ConfigKey, type ServeConfig } from './defaults.ts';
import { defaultDataDir } from './paths.ts';
import { parseValue, type Origin } from './schema.ts';

type Env = Readonly<Record<string, string | undefined>>;

export interface LoadedConfig {
  readonly config: ServeConfig;
  readonly origins: Readonly<Record<ConfigKey, Origin>>;
  /** The config file that was read, or null when there was none. */
  readonly file: string | null;
  readonly dataDir: string;
}

export const CONFIG_FILE_NAME = 'config.json';

/**
 * @param flags raw flag values as the CLI parsed them; only the flags the user gave.
 * @param env the environment (process.env in production, a plain object in tests).
 */
export function loadConfig(flags: Partial<Record<ConfigKey, unknown>>, env: Env): LoadedConfig {
  const values: Record<string, unknown> = { ...DEFAULTS };
  const origins = Object.fromEntries(Object.keys(DEFAULTS).map((k) => [k, 'default'])) as Record<ConfigKey, Origin>;
  const specByKey = new Map(OPTION_SPECS.map((s) => [s.key, s]));

  // The data directory decides where the config file is, so it cannot come from that file.
  const dataDirSpec = specByKey.get('dataDir')!;
  const dataDir =
    flags.dataDir !== undefined ? (parseValue(dataDirSpec, flags.dataDir, 'flag') as string) : defaultDataDir(env);

  const file = join(dataDir, CONFIG_FILE_NAME);
  const fromFile = readConfigFile(file);
  if (fromFile) {
    for (const [key, raw] of Object.entries(fromFile)) {
      const spec = specByKey.get(key as ConfigKey);
      if (!spec || NOT_IN_CONFIG_FILE.includes(spec.key)) {
        const known = OPTION_SPECS.filter((s) => !NOT_IN_CONFIG_FILE.includes(s.key)).map((s) => s.key);
        throw new OllanaError(
          'OLN_BAD_CONFIG',
          `${file}: unknown setting "${key}"; the settings are ${known.join(', ')}`,
          { details: { key, origin: 'config file', known: known.join(',') } },
        );
      }
      values[key] = parseValue(spec, raw, 'config file');
      origins[spec.key] = 'config file';
    }
  }

  for (const spec of OPTION_SPECS) {
    // The first variable listed wins: OLLANA_* before the names shared with Ollama or other tools.
    const envName = spec.env.find((name) => env[name] !== undefined && env[name] !== '');
    if (envName === undefined) continue;
    values[spec.key] = parseValue(spec, env[envName], 'environment', envName);
    origins[spec.key] = 'environment';
  }

  for (const spec of OPTION_SPECS) {
    const raw = flags[spec.key];
    if (raw === undefined) continue;
    values[spec.key] = parseValue(spec, raw, 'flag');
    origins[spec.key] = 'flag';
  }
  values.dataDir = dataDir;

  return Object.freeze({
    config: Object.freeze(values) as unknown as ServeConfig,
    origins: Object.freeze(origins),
    file: fromFile ? file : null,
    dataDir,
  });
}

function readConfigFile(file: string): Record<string, unknown> | null {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    // No file, or no directory to hold one: nothing to read (an unusable data directory is reported
    // by the command that needs to write there, with the fix).
    if (systemCode(err) === 'ENOENT' || systemCode(err) === 'ENOTDIR') return null;
    throw new OllanaError('OLN_BAD_CONFIG', `cannot read the config file ${file}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new OllanaError(
      'OLN_BAD_CONFIG',
      `the config file ${file} is not valid JSON (${(err as Error).message}); fix it or move it away`,
      { cause: err },
    );
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new OllanaError('OLN_BAD_CONFIG', `the config file ${file} must hold a JSON object of settings`);
  }
  return parsed as Record<string, unknown>;
}
