/**
 * The one option parser of the bench runners. A runner declares its options (flag, environment
 * variable, help line, value parser, default); a value comes from the flag, else from the runner's
 * environment variable (`<prefix><ENV>`, e.g. BENCH_ROUNDS, BENCH_TWO_HOP_ROUNDS), else from the
 * default, which may depend on --ci. Parsing is pure, so a typo fails before any process starts,
 * with one error type whose message names where the bad value came from.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';

export class BenchUsageError extends Error {
  override readonly name = 'BenchUsageError';
}

export type Env = Readonly<Record<string, string | undefined>>;

/** What a default may depend on. */
export interface Defaults {
  readonly ci: boolean;
  /** The run's start as a file-name-safe UTC timestamp, for default report directories. */
  readonly stamp: string;
}

export interface OptionSpec<T> {
  /** The long flag without dashes, e.g. 'rate-cases'. */
  readonly flag: string;
  readonly short?: string;
  /** A flag without a value: 'on' sets the option (--ci), 'off' clears it (--no-pin). */
  readonly boolean?: 'on' | 'off';
  /** The flag may be given more than once; the values are joined with commas. */
  readonly repeat?: boolean;
  /** Environment variable after the runner's prefix (ROUNDS -> BENCH_ROUNDS); absent: flag only. */
  readonly env?: string;
  /** Placeholder of the value in the help, e.g. 'N', 'DIR', 'a,b'. */
  readonly arg?: string;
  /** Help text; '\n' continues on the next line. */
  readonly help: string;
  /** The default in words for the help, e.g. 'default 3, CI 2'. */
  readonly shows?: string;
  /** Raw text -> value; `source` names the flag or variable for error messages. */
  readonly parse: (raw: string, source: string) => T;
  readonly fallback: (d: Defaults) => T;
}

/** A runner's options by key; T sits only in result positions, so any spec fits OptionSpec<unknown>. */
export type Specs = Readonly<Record<string, OptionSpec<unknown>>>;
export type Parsed<S extends Specs> = { readonly [K in keyof S]: S[K] extends OptionSpec<infer T> ? T : never };

export interface ParseResult<S extends Specs> {
  readonly options: Parsed<S>;
  /** Keys whose value came from a flag or the environment, not from the default. */
  readonly given: ReadonlySet<keyof S>;
  readonly help: boolean;
  /** Arguments that are not options (only when asked for). */
  readonly positionals: readonly string[];
}

/** A file-name-safe UTC timestamp: 2026-12-07T23-09-45. */
export function stamp(now: Date): string {
  return now.toISOString().replace(/[:.]/g, '-').slice(0, 19);
}

/**
 * argv (without node and script) and environment -> options. A spec keyed `ci` (boolean) is read
 * first, so that the other defaults can depend on it. Throws BenchUsageError.
 */
export function parseOptions<S extends Specs>(
  specs: S,
  argv: readonly string[],
  env: Env,
  envPrefix: string,
  extra: { readonly now?: Date; readonly positionals?: boolean } = {},
): ParseResult<S> {
  const config: Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }> = {
    help: { type: 'boolean', short: 'h' },
  };
  for (const s of Object.values(specs)) {
    config[s.flag] = {
      type: s.boolean ? 'boolean' : 'string',
      ...(s.short ? { short: s.short } : {}),
      ...(s.repeat ? { multiple: true } : {}),
    };
  }
  let values: Record<string, string | boolean | (string | boolean)[] | undefined>;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: extra.positionals ?? false,
      options: config,
    }));
  } catch (err) {
    throw new BenchUsageError((err as Error).message);
  }
  const raw = (spec: OptionSpec<unknown>): { text: string; source: string } | undefined => {
    const v = values[spec.flag];
    if (v !== undefined) {
      const text = Array.isArray(v)
        ? v.join(',')
        : typeof v === 'boolean'
          ? v === (spec.boolean === 'on')
            ? '1'
            : '0'
          : v;
      return { text, source: `--${spec.flag}` };
    }
    const name = spec.env === undefined ? undefined : `${envPrefix}${spec.env}`;
    const text = name === undefined ? undefined : env[name];
    return text === undefined || text === '' ? undefined : { text, source: name! };
  };
  const given = new Set<keyof S>();
  const read = <T>(key: keyof S, spec: OptionSpec<T>, d: Defaults): T => {
    const r = raw(spec);
    if (r === undefined) return spec.fallback(d);
    given.add(key);
    return spec.parse(r.text, r.source);
  };
  const d0: Defaults = { ci: false, stamp: stamp(extra.now ?? new Date()) };
  const d: Defaults = { ...d0, ci: specs.ci === undefined ? false : read('ci', specs.ci, d0) === true };
  const options: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(specs)) options[key] = key === 'ci' ? d.ci : read(key, spec, d);
  return { options: options as Parsed<S>, given, help: values.help === true, positionals };
}

/** The help: usage lines, one entry per option (with its environment variable), then `footer`. */
export function helpText(usage: string, specs: Specs, envPrefix: string, footer = ''): string {
  const lines = [usage, ''];
  const indent = ' '.repeat(23);
  for (const s of Object.values(specs)) {
    const head = `  ${s.short ? `-${s.short}, ` : ''}--${s.flag}${s.arg ? ` ${s.arg}` : ''}`;
    const env =
      s.env === undefined
        ? ''
        : `${envPrefix}${s.env}${s.boolean === undefined ? '' : s.boolean === 'on' ? '=1' : '=0'}`;
    const notes = [env, s.shows ?? ''].filter((n) => n !== '').join('; ');
    const text = `${s.help}${notes === '' ? '' : ` (${notes})`}`.split('\n');
    lines.push(
      head.length < 22 ? `${head.padEnd(23)}${text[0]}` : `${head}  ${text[0]}`,
      ...text.slice(1).map((t) => `${indent}${t}`),
    );
  }
  lines.push(`  -h, --help           this text`);
  if (footer !== '') lines.push('', footer);
  return `${lines.join('\n')}\n`;
}

// Value parsers, shared by the runners' specs.

/** A positive number (integer unless `integer: false`), at most `max`; `zero` admits 0. */
export function positive(
  o: { integer?: boolean; max?: number; min?: number; zero?: boolean } = {},
): (raw: string, source: string) => number {
  const integer = o.integer ?? true;
  return (raw, source) => {
    const n = Number(raw);
    const low = o.min ?? (o.zero ? 0 : Number.MIN_VALUE);
    if (
      raw.trim() === '' ||
      !Number.isFinite(n) ||
      n < low ||
      (o.max !== undefined && n > o.max) ||
      (integer && !Number.isInteger(n))
    ) {
      const range =
        o.min !== undefined
          ? o.max === undefined
            ? `at least ${o.min}`
            : `${o.min}..${o.max}`
          : `a ${o.zero ? 'non-negative' : 'positive'} ${integer ? 'integer' : 'number'}` +
            `${o.max === undefined ? '' : ` up to ${o.max}`}`;
      throw new BenchUsageError(`${source} must be ${range}, got "${raw}"`);
    }
    return n;
  };
}

/** Comma list of positive integers. */
export function integers(max?: number): (raw: string, source: string) => number[] {
  const one = positive(max === undefined ? {} : { max });
  return (raw, source) =>
    nonEmpty(
      source,
      raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '')
        .map((s) => one(s, source)),
    );
}

/** Comma list of ids out of `known`. */
export function ids<T extends string>(known: readonly T[]): (raw: string, source: string) => T[] {
  return (raw, source) => {
    const list = raw
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
    for (const id of list) {
      if (!(known as readonly string[]).includes(id))
        throw new BenchUsageError(`${source}: unknown "${id}"; choose from ${known.join(', ')}`);
    }
    return nonEmpty(source, list as T[]);
  };
}

/** One id out of `known`. */
export function oneOf<T extends string>(known: readonly T[]): (raw: string, source: string) => T {
  return (raw, source) => {
    if (!(known as readonly string[]).includes(raw))
      throw new BenchUsageError(`${source}: unknown "${raw}"; choose from ${known.join(', ')}`);
    return raw as T;
  };
}

function nonEmpty<T>(source: string, list: T[]): T[] {
  if (list.length === 0) throw new BenchUsageError(`${source} needs at least one value`);
  return list;
}

/** A default that --ci changes. */
export const byCi =
  <T>(full: T, ci: T) =>
  (d: Defaults): T =>
    d.ci ? ci : full;

/** On unless 0, false, no or off. */
export const bool = (raw: string): boolean => !['0', 'false', 'no', 'off'].includes(raw.toLowerCase());
export const text = (raw: string): string => raw;
/** "--a 1 --b" -> argv words; quotes are not needed for ollana's flags. */
export const words = (raw: string): string[] => raw.split(/\s+/).filter((s) => s !== '');
/** An absolute path. */
export const path = (raw: string): string => resolve(raw);
/** An absolute path to a file that exists. */
export function existingFile(raw: string, source: string): string {
  const p = resolve(raw);
  if (!existsSync(p)) throw new BenchUsageError(`${source} ${p} does not exist`);
  return p;
}
