/**
 * The life of a bench runner, the same for all of them: parse the options (usage error: exit 2,
 * --help: print it), check the machine can run it (else exit 2), run it under a watchdog, and on
 * every way out (done, watchdog, signal, crash) stop what it started.
 */
import { BenchUsageError, type Env } from './cli.ts';

export interface Runner<O> {
  /** Prefix of its messages: 'bench', 'bench/cluster', 'bench/two-hop'. */
  readonly name: string;
  /** Its script, for the pointer to --help: 'bench/run.ts'. */
  readonly script: string;
  readonly help: string;
  /** argv and environment -> options (throws BenchUsageError); `help` asks for the help text. */
  parse(argv: readonly string[], env: Env): { readonly options: O; readonly help: boolean };
  /** Why this machine cannot run it (exit 2), or undefined. */
  cannotRun?(o: O): string | undefined;
  /** Hard bound on the whole run; past it everything is stopped and the run fails. */
  watchdogMs?(o: O): number;
  /** Stops what it started (processes, LANs); on the watchdog, a signal or a crash. */
  stop?(): Promise<void>;
  /** Synchronous clean-up (data directories) on every way out, process exit included. */
  cleanup?(): void;
  /** The run; resolves with the exit status. */
  run(o: O, log: (msg: string) => void): Promise<number>;
}

const SIGNALS = { SIGINT: 2, SIGTERM: 15, SIGHUP: 1 } as const;

export const log = (msg: string): void => {
  process.stdout.write(`${msg}\n`);
};

/** Runs `r` as the process's main program and exits with its status. */
export function runBench<O>(r: Runner<O>): void {
  const stopThenExit = (code: number): void => {
    void (r.stop?.() ?? Promise.resolve()).catch(() => undefined).finally(() => process.exit(code));
  };
  let parsed: { options: O; help: boolean };
  try {
    parsed = r.parse(process.argv.slice(2), process.env);
  } catch (err) {
    if (!(err instanceof BenchUsageError)) throw err;
    process.stderr.write(`${r.name}: ${err.message}; see node ${r.script} --help\n`);
    process.exit(2);
  }
  if (parsed.help) {
    process.stdout.write(r.help);
    process.exit(0);
  }
  const o = parsed.options;
  const why = r.cannotRun?.(o);
  if (why !== undefined) {
    process.stderr.write(`${r.name}: cannot run here: ${why}\n`);
    process.exit(2);
  }
  if (r.cleanup !== undefined) process.on('exit', r.cleanup);
  for (const [sig, n] of Object.entries(SIGNALS)) {
    process.once(sig, () => {
      log(`${r.name}: ${sig}; stopping everything it started`);
      stopThenExit(128 + n);
    });
  }
  const limit = r.watchdogMs?.(o);
  if (limit !== undefined) {
    setTimeout(() => {
      log(`${r.name}: still running after ${limit / 60_000} min; stopping everything`);
      stopThenExit(1);
    }, limit).unref();
  }
  r.run(o, log).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`${r.name}: ${(err as Error).stack ?? String(err)}\n`);
      stopThenExit(1);
    },
  );
}
