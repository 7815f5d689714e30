/**
 * argv -> a typed command, with commander. Pure: no process exit, no output; help and version come
 * back as text for main.ts to print, errors as OllanaError(OLN_USAGE / OLN_BAD_FLAG).
 */
import { Command, CommanderError, Option } from 'commander';
import { DEFAULTS, OPTION_SPECS, type ConfigKey } from '../config/defaults.ts';
import { OllanaError } from '../errors.ts';

export type CliCommand =
  | { readonly command: 'serve'; readonly flags: Partial<Record<ConfigKey, unknown>> }
  | { readonly command: 'stop'; readonly flags: Partial<Record<ConfigKey, unknown>>; readonly timeoutMs: string | null }
  | {
      readonly command: 'status';
      readonly flags: Partial<Record<ConfigKey, unknown>>;
      readonly url: string | null;
      readonly json: boolean;
      /** --watch's interval as given ('2s' when given without one); null without --watch */
      readonly watch: string | null;
    }
  | DeviceCommand
  | {
      readonly command: 'doctor';
      readonly flags: Partial<Record<ConfigKey, unknown>>;
      readonly wait: string | null;
      readonly json: boolean;
    }
  | {
      readonly command: 'service';
      readonly verb: 'install' | 'uninstall' | 'status';
      readonly scope: 'user' | 'system' | null;
      readonly root: string | null;
    }
  | PairCommand
  | { readonly command: 'print'; readonly text: string };

/** `ollana pair`: `code` is the expected code (6 digits, or `-` to read it from stdin once shown). */
export interface PairCommand {
  readonly command: 'pair';
  readonly flags: Partial<Record<ConfigKey, unknown>>;
  readonly code: string | null;
  readonly yes: boolean;
  readonly timeoutMs: number;
  readonly port: number;
  readonly verbose: boolean;
}

/** --code, --yes, --timeout and --port of `ollana pair`, checked. */
function pairOptions(o: {
  code?: string;
  yes?: boolean;
  timeout?: string;
  port?: string;
}): Omit<PairCommand, 'command' | 'flags' | 'verbose'> {
  const code = o.code === undefined ? null : o.code.replace(/\s/g, '');
  if (code !== null && code !== '-' && !/^[0-9]{6}$/.test(code)) {
    throw new OllanaError(
      'OLN_BAD_FLAG',
      `--code (flag) must be the 6 digits shown, or - to read them from stdin; got ${JSON.stringify(o.code)}`,
    );
  }
  if (o.yes === true && code === null) {
    throw new OllanaError(
      'OLN_BAD_FLAG',
      '--yes (flag) allows without asking, so it needs --code with the code the other machine shows (or - to read it from stdin): a blind yes would pair with whichever machine answered',
    );
  }
  const secs = o.timeout === undefined ? 120 : Number(o.timeout);
  if (!/^[0-9]+$/.test(o.timeout?.trim() ?? '120') || secs < 1 || secs > 3600) {
    throw new OllanaError(
      'OLN_BAD_FLAG',
      `--timeout (flag) must be whole seconds from 1 to 3600; got ${JSON.stringify(o.timeout)}`,
    );
  }
  const port = o.port === undefined ? 11437 : Number(o.port);
  if (!/^[0-9]+$/.test(o.port?.trim() ?? '11437') || port < 1 || port > 65535) {
    throw new OllanaError(
      'OLN_BAD_FLAG',
      `--port (flag) must be a UDP port from 1 to 65535; got ${JSON.stringify(o.port)}`,
    );
  }
  return { code, yes: o.yes === true, timeoutMs: secs * 1000, port };
}

export type DeviceVerb = 'show' | 'list' | 'pending' | 'allow' | 'disable';

/** `ollana device <verb>`; `id` is what the user typed (allow, disable), `name` the --name of allow. */
export interface DeviceCommand {
  readonly command: 'device';
  readonly verb: DeviceVerb;
  readonly flags: Partial<Record<ConfigKey, unknown>>;
  readonly id: string | null;
  readonly name: string | null;
  /** --weight of allow: the device's share of a busy server node (docs/fairness.md) */
  readonly weight: number | null;
  readonly json: boolean;
}

const DEVICE_VERBS: readonly { verb: DeviceVerb; args: string; help: string }[] = [
  { verb: 'show', args: '', help: "print this machine's device id (made on first use), to allow it on the others" },
  { verb: 'list', args: '', help: 'the devices this machine allows or has disabled' },
  {
    verb: 'pending',
    args: '',
    help: 'devices seen on the LAN or refused that are not allowed yet, with the command to allow each',
  },
  {
    verb: 'allow',
    args: '<id>',
    help: 'allow a device: its full id as `ollana device show` prints it there (a unique prefix only for a device in `list`)',
  },
  {
    verb: 'disable',
    args: '<id>',
    help: 'refuse a device from now on (its full id, or a unique prefix of one in `list`)',
  },
];

/** --name: shown in lists and logs, so one printable line of reasonable length. */
function deviceName(raw: string | undefined): string | null {
  if (raw === undefined) return null;
  const name = raw.trim();
  if (name.length === 0 || name.length > 64 || /[\p{Cc}]/u.test(name)) {
    throw new OllanaError(
      'OLN_BAD_FLAG',
      `--name (flag) must be 1 to 64 printable characters; got ${JSON.stringify(raw)}`,
    );
  }
  return name;
}

/** --weight: a device's share per round when devices wait for the same model, 1 to 100. */
function deviceWeight(raw: string | undefined): number | null {
  if (raw === undefined) return null;
  const n = Number(raw);
  if (!/^[0-9]+$/.test(raw.trim()) || n < 1 || n > 100) {
    throw new OllanaError(
      'OLN_BAD_FLAG',
      `--weight (flag) must be a whole number from 1 to 100; got ${JSON.stringify(raw)}`,
    );
  }
  return n;
}

function defaultText(key: ConfigKey, override?: string): string {
  if (override !== undefined) return override;
  const value = DEFAULTS[key];
  if (Array.isArray(value)) return value.length === 0 ? 'none' : value.join(',');
  if (value === null) return 'none';
  return String(value);
}

function optionFor(key: ConfigKey): Option {
  const spec = OPTION_SPECS.find((s) => s.key === key)!;
  const flags = `${spec.short ? `${spec.short}, ` : ''}${spec.flag}${spec.kind === 'bool' ? '' : ' <value>'}`;
  const env = spec.env.length > 0 ? `; env ${spec.env.join(', ')}` : '';
  return new Option(flags, `${spec.help} (default: ${defaultText(key, spec.defaultText)}${env})`);
}

function collectFlags(cmd: Command, keys: readonly ConfigKey[]): Partial<Record<ConfigKey, unknown>> {
  const given = cmd.opts() as Record<string, unknown>;
  const out: Partial<Record<ConfigKey, unknown>> = {};
  for (const key of keys) {
    const spec = OPTION_SPECS.find((s) => s.key === key)!;
    const attr = new Option(spec.flag).attributeName();
    if (given[attr] !== undefined) out[key] = given[attr];
  }
  return out;
}

/**
 * The first command word in `argv` that names no command where it stands, or null. Only levels that
 * have subcommands are walked (the program, `device`), and their options take no values, so every
 * word there is a command name; `help` is transparent (`help device forget` checks both words).
 */
function unknownCommand(program: Command, argv: readonly string[]): string | null {
  let level = program;
  for (const word of argv) {
    if (word === '--') return null;
    if (word.startsWith('-')) continue;
    if (level.commands.length === 0) return null;
    if (word === 'help') continue;
    const sub = level.commands.find((c) => c.name() === word || c.aliases().includes(word));
    if (sub === undefined) return word;
    level = sub;
  }
  return null;
}

export function parseCli(argv: readonly string[], version: string): CliCommand {
  let result: CliCommand | null = null;
  let printed = '';
  const program = new Command('ollana')
    .description('Ollama over LAN: share one Ollama with every machine on the network, with no configuration')
    .version(version, '-v, --version')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => {
        printed += s;
      },
      writeErr: (s) => {
        printed += s;
      },
    })
    .showHelpAfterError(false)
    .addHelpText(
      'after',
      '\nRun `ollana serve` on every machine: the one with Ollama shares it, the others use it.\n' +
        'Each command has its own help: ollana serve --help',
    );

  const serveKeys = OPTION_SPECS.map((s) => s.key);
  const serve = program
    .command('serve')
    .description("run this machine's node: a server node if a local Ollama answers, else a client node");
  for (const key of serveKeys) serve.addOption(optionFor(key));
  serve.action(() => {
    result = { command: 'serve', flags: collectFlags(serve, serveKeys) };
  });

  const stopKeys: ConfigKey[] = ['pidFile', 'dataDir'];
  const stop = program
    .command('stop')
    .description('stop the ollana started with `ollana serve -d`: in-flight streams finish first');
  for (const key of stopKeys) stop.addOption(optionFor(key));
  stop.addOption(new Option('--timeout <value>', 'how long to wait for it to exit (default: its drain timeout + 10s)'));
  stop.action(() => {
    const t = stop.opts().timeout as string | undefined;
    result = { command: 'stop', flags: collectFlags(stop, stopKeys), timeoutMs: t ?? null };
  });

  const statusKeys: ConfigKey[] = ['listen', 'dataDir'];
  const status = program.command('status').description('show the local node: role, upstreams, workers and their stats');
  for (const key of statusKeys) status.addOption(optionFor(key));
  status.addOption(
    new Option('--url <url>', 'the node to ask (default: the local server node, else the local client node)'),
  );
  status.addOption(new Option('--json', 'print the raw JSON'));
  status.addOption(new Option('--watch [interval]', 'redraw in place every interval (default: 2s) until Ctrl-C'));
  status.action(() => {
    const o = status.opts() as { url?: string; json?: boolean; watch?: string | true };
    result = {
      command: 'status',
      flags: collectFlags(status, statusKeys),
      url: o.url ?? null,
      json: o.json === true,
      watch: o.watch === undefined ? null : o.watch === true ? '2s' : o.watch,
    };
  });

  const doctorKeys: ConfigKey[] = ['dataDir', 'ollamaUrl', 'listen', 'discovery', 'discoveryPort', 'trustLan'];
  const doctor = program
    .command('doctor')
    .description(
      'check what discovery and pairing need here (Ollama, ports, firewall, interfaces, the LAN), one line each',
    );
  for (const key of doctorKeys) doctor.addOption(optionFor(key));
  doctor.addOption(new Option('--wait <value>', 'how long to listen for this machine and other nodes (default: 3s)'));
  doctor.addOption(new Option('--json', 'print the report as JSON (docs/doctor.md)'));
  doctor.action(() => {
    const o = doctor.opts() as { wait?: string; json?: boolean };
    result = {
      command: 'doctor',
      flags: collectFlags(doctor, doctorKeys),
      wait: o.wait ?? null,
      json: o.json === true,
    };
  });

  const device = program.command('device').description("this machine's device id, and which devices it trusts");
  const deviceCmds = DEVICE_VERBS.map(({ verb, args, help }) => {
    const sub = device.command(`${verb}${args ? ` ${args}` : ''}`).description(help);
    sub.addOption(optionFor('dataDir'));
    if (verb === 'allow') {
      sub.addOption(new Option('--name <name>', 'what to call it in lists and logs (default: the name it announces)'));
      sub.addOption(
        new Option(
          '--weight <n>',
          "its share of a busy server node's model slots against other devices, 1-100 (default: 1)",
        ),
      );
    }
    sub.addOption(new Option('--json', 'print JSON'));
    sub.action((id?: string) => {
      const o = sub.opts() as { name?: string; weight?: string; json?: boolean };
      result = {
        command: 'device',
        verb,
        flags: collectFlags(sub, ['dataDir']),
        id: typeof id === 'string' ? id : null,
        name: deviceName(o.name),
        weight: deviceWeight(o.weight),
        json: o.json === true,
      };
    });
    return sub;
  });
  device.addHelpText(
    'after',
    '\nPairing: run `ollana device show` on one machine, then `ollana device allow <ID>` on the other, and the\n' +
      'same the other way round. `ollana device pending` lists the devices this machine met but does not allow.',
  );

  const pair = program
    .command('pair')
    .description('pair with another machine by a six-digit code: run it on both at once, compare the code, confirm');
  pair.addOption(optionFor('dataDir'));
  pair.addOption(new Option('--code <code>', 'the code expected (from a script: - reads it from stdin once shown)'));
  pair.addOption(new Option('--yes', 'allow without asking when the code is the one given with --code'));
  pair.addOption(
    new Option('--timeout <seconds>', 'how long to look for the other machine, and wait for it (default: 120)'),
  );
  pair.addOption(new Option('--port <port>', 'UDP port of the exchange, the same on both machines (default: 11437)'));
  pair.addOption(new Option('--verbose', 'say how many pairing datagrams were dropped'));
  pair.action(() => {
    const o = pair.opts() as { code?: string; yes?: boolean; timeout?: string; port?: string; verbose?: boolean };
    result = {
      command: 'pair',
      flags: collectFlags(pair, ['dataDir']),
      ...pairOptions(o),
      verbose: o.verbose === true,
    };
  });

  const service = program
    .command('service')
    .description('start this node at boot or login: a systemd unit (Linux) or a launchd agent (macOS)');
  const serviceCmds = (
    [
      ['install', 'write the service and have systemd or launchd enable and start it'],
      ['uninstall', 'stop the service and remove it'],
      ['status', 'whether the service is installed, enabled and running'],
    ] as const
  ).map(([verb, help]) => {
    const sub = service.command(verb).description(help);
    sub.addOption(
      new Option('--user', "the current user's service (the default, except for root)").conflicts('system'),
    );
    sub.addOption(new Option('--system', 'a system service, started at boot (the default for root)'));
    sub.addOption(
      new Option(
        '--root <dir>',
        'write under this directory instead of /, and leave systemd/launchd alone; env OLLANA_SERVICE_ROOT',
      ),
    );
    sub.action(() => {
      const o = sub.opts() as { user?: boolean; system?: boolean; root?: string };
      result = {
        command: 'service',
        verb,
        scope: o.system === true ? 'system' : o.user === true ? 'user' : null,
        root: o.root ?? null,
      };
    });
    return sub;
  });

  for (const cmd of [program, serve, stop, status, doctor, device, ...deviceCmds, pair, service, ...serviceCmds]) {
    cmd.exitOverride().configureOutput({
      writeOut: (s) => {
        printed += s;
      },
      writeErr: (s) => {
        printed += s;
      },
    });
  }

  // Commander acts on --help before it looks up the command, so `ollana nosuch --help` would print the
  // overview and exit 0 where `ollana nosuch` is an unknown command: check the command words first.
  const unknown = unknownCommand(program, argv);
  if (unknown !== null) throw new OllanaError('OLN_USAGE', `unknown command '${unknown}'; see \`ollana --help\``);

  try {
    program.parse([...argv], { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') {
        return { command: 'print', text: printed };
      }
      const message = err.message.replace(/^error: /, '').replace(/\s*\n\s*/g, ' ');
      const code =
        err.code === 'commander.invalidArgument' || err.code === 'commander.optionMissingArgument'
          ? 'OLN_BAD_FLAG'
          : 'OLN_USAGE';
      throw new OllanaError(code, `${message}; see \`ollana --help\``);
    }
    throw err;
  }
  if (result === null) {
    // No command given: show the overview rather than guess.
    return { command: 'print', text: program.helpInformation() };
  }
  return result;
}
