/**
 * Entry: parse argv, run the command, and turn errors into one message and an exit status. Library
 * code throws; only this file prints errors and exits.
 */
import pkg from '../package.json' with { type: 'json' };
import { parseCli } from './cli/args.ts';
import { EXIT_CODES, errorMessage, isOllanaError } from './errors.ts';

export async function main(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): Promise<number> {
  const cmd = parseCli(argv, pkg.version);
  // Each command's modules load when it runs: a node (serve) does not carry the other commands'
  // libraries for its whole life (undici for `status`, say), and `status` does not load the node.
  switch (cmd.command) {
    case 'print':
      process.stdout.write(cmd.text.endsWith('\n') ? cmd.text : `${cmd.text}\n`);
      return 0;
    case 'serve':
      return (await import('./cli/commands/serve.ts')).serveCommand(cmd.flags, argv, env, pkg.version);
    case 'stop':
      return (await import('./cli/commands/stop.ts')).stopCommand(cmd.flags, cmd.timeoutMs, env);
    case 'status':
      return (await import('./cli/commands/status.ts')).statusCommand(cmd.flags, cmd.url, cmd.json, env, cmd.watch);
    case 'doctor':
      return (await import('./cli/commands/doctor.ts')).doctorCommand(cmd.flags, cmd.wait, cmd.json, env);
    case 'device':
      return (await import('./cli/commands/device.ts')).deviceCommand(cmd, env);
    case 'pair':
      return (await import('./cli/commands/pair.ts')).pairCommand(cmd, env);
    case 'service':
      return (await import('./service/service.ts')).serviceCommand(cmd, env);
    default: {
      const never: never = cmd;
      throw new Error(`unknown command ${JSON.stringify(never)}`);
    }
  }
}

/** Runs the CLI and exits the process with the command's status, or with the error's. */
export function runAndExit(argv: readonly string[], env: Readonly<Record<string, string | undefined>>): void {
  main(argv, env).then(
    (status) => process.exit(status),
    (err: unknown) => {
      if (isOllanaError(err)) {
        process.stderr.write(`ollana: ${err.message} [${err.code}]\n`);
        process.exit(err.exitCode);
      }
      process.stderr.write(
        `ollana: unexpected error: ${errorMessage(err)}\n${err instanceof Error ? (err.stack ?? '') : ''}\n`,
      );
      process.exit(EXIT_CODES.OLN_INTERNAL);
    },
  );
}

if (import.meta.main) runAndExit(process.argv.slice(2), process.env);
