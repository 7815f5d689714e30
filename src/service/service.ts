/**
 * `ollana service install|uninstall|status`: writes the service definition (service/units.ts) and has
 * the OS's service manager enable and start it: systemctl on Linux, launchctl on macOS. Windows has
 * none that ollana drives: the command says so with the Task Scheduler command (OLN_SERVICE_UNSUPPORTED).
 *
 * --root DIR (or OLLANA_SERVICE_ROOT) writes under DIR instead of / and leaves the service manager
 * alone: for packaging, and for tests, which must never touch the real /etc/systemd.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { errorMessage, OllanaError } from '../errors.ts';
import { hostPlatform, osName, type Platform } from '../platform/platform.ts';
import {
  LAUNCHD_LABEL,
  launchdPlist,
  SERVICE_NAME,
  type ServiceProgram,
  type ServiceScope,
  serviceFile,
  systemdUnit,
  windowsTaskCommand,
} from './units.ts';

type Env = Readonly<Record<string, string | undefined>>;

export type ServiceVerb = 'install' | 'uninstall' | 'status';

export interface ServiceRequest {
  readonly verb: ServiceVerb;
  /** null: system for root, user for everyone else. */
  readonly scope: ServiceScope | null;
  readonly root: string | null;
}

/** Runs a service manager command; returns its output, throws on a non-zero exit. */
export type Runner = (command: string, args: readonly string[]) => string;

const execRunner: Runner = (command, args) =>
  execFileSync(command, args, { encoding: 'utf8', timeout: 30_000, stdio: ['ignore', 'pipe', 'pipe'] });

/** bin/ollana.mjs of this installation, the same from src/ and dist/. */
const ENTRY = fileURLToPath(new URL('../../bin/ollana.mjs', import.meta.url));

export function serviceProgram(): ServiceProgram {
  return { node: process.execPath, entry: ENTRY };
}

function definition(p: Platform, scope: ServiceScope, prog: ServiceProgram): string {
  return p.os === 'darwin' ? launchdPlist(prog, p, scope) : systemdUnit(prog, scope);
}

/** The manager's commands for the scope, as [command, args] lists. */
function managerSteps(p: Platform, scope: ServiceScope, file: string): Record<'enable' | 'disable', string[][]> {
  if (p.os === 'darwin') {
    const domain = scope === 'system' ? 'system' : `gui/${process.getuid?.() ?? 501}`;
    return {
      enable: [['launchctl', 'bootstrap', domain, file]],
      disable: [['launchctl', 'bootout', `${domain}/${LAUNCHD_LABEL}`]],
    };
  }
  const user = scope === 'user' ? ['--user'] : [];
  return {
    enable: [
      ['systemctl', ...user, 'daemon-reload'],
      ['systemctl', ...user, 'enable', '--now', `${SERVICE_NAME}.service`],
    ],
    disable: [
      ['systemctl', ...user, 'disable', '--now', `${SERVICE_NAME}.service`],
      ['systemctl', ...user, 'daemon-reload'],
    ],
  };
}

function runSteps(run: Runner, steps: readonly string[][]): void {
  for (const [command, ...args] of steps) {
    try {
      run(command!, args);
    } catch (err) {
      const stderr = (err as { stderr?: string }).stderr?.toString().trim();
      throw new OllanaError(
        'OLN_SERVICE_FAILED',
        `\`${[command, ...args].join(' ')}\` failed: ${stderr || errorMessage(err)}`,
        { cause: err },
      );
    }
  }
}

const shell = (steps: readonly string[][]): string => steps.map((s) => s.join(' ')).join(' && ');

export function serviceCommand(
  req: ServiceRequest,
  env: Env,
  run: Runner = execRunner,
  out: (text: string) => void = (t) => process.stdout.write(t),
): number {
  const p = hostPlatform(env);
  const prog = serviceProgram();
  if (p.os === 'win32') {
    throw new OllanaError(
      'OLN_SERVICE_UNSUPPORTED',
      `Windows has no service manager that ollana drives; to start a node at logon, run in a console: ${windowsTaskCommand(prog)} ` +
        '(docs/service.md says more)',
    );
  }
  if (p.os !== 'linux' && p.os !== 'darwin') {
    throw new OllanaError(
      'OLN_SERVICE_UNSUPPORTED',
      `ollana service knows systemd (Linux) and launchd (macOS), not ${osName(p.os)}'s service manager; run \`ollana serve\` from yours`,
    );
  }
  const scope: ServiceScope = req.scope ?? (process.getuid?.() === 0 ? 'system' : 'user');
  const root = req.root ?? (env.OLLANA_SERVICE_ROOT || null);
  const target = serviceFile(p, scope);
  const file = root === null ? target : join(root, target);
  const steps = managerSteps(p, scope, target);
  const text = definition(p, scope, prog);
  const manager = p.os === 'darwin' ? 'launchd' : 'systemd';

  switch (req.verb) {
    case 'install': {
      try {
        mkdirSync(dirname(file), { recursive: true });
        writeFileSync(file, text, { mode: 0o644 });
      } catch (err) {
        throw new OllanaError('OLN_SERVICE_FAILED', `cannot write ${file}: ${errorMessage(err)}`, { cause: err });
      }
      if (root !== null) {
        out(
          `wrote the ${scope} ${manager} service ${file}; under --root it is not enabled (then: ${shell(steps.enable)})\n`,
        );
        return 0;
      }
      // A definition loaded before (an earlier install) is unloaded first, so the new one takes effect.
      if (p.os === 'darwin') {
        try {
          run(steps.disable[0]![0]!, steps.disable[0]!.slice(1));
        } catch {
          // not loaded: nothing to unload
        }
      }
      runSteps(run, steps.enable);
      out(`installed ${file}: ollana starts now and at every ${scope === 'user' ? 'login' : 'boot'}\n`);
      if (p.os === 'linux' && scope === 'user')
        out('  to start it at boot without a login too: loginctl enable-linger $USER\n');
      return 0;
    }
    case 'uninstall': {
      if (!existsSync(file)) {
        out(`no ${scope} ${manager} service to remove (${file} does not exist)\n`);
        return 0;
      }
      if (root === null) runSteps(run, steps.disable.slice(0, 1));
      rmSync(file, { force: true });
      if (root === null && p.os === 'linux') runSteps(run, steps.disable.slice(1));
      out(`removed ${file}${root === null ? ': ollana is stopped and no longer starts by itself' : ''}\n`);
      return 0;
    }
    case 'status': {
      if (!existsSync(file)) {
        out(`not installed: no ${scope} ${manager} service at ${file} (install it with: ollana service install)\n`);
        return 0;
      }
      const current = readFileSync(file, 'utf8') === text;
      out(
        `installed: ${file}${current ? '' : ' (written by another ollana or edited: `ollana service install` rewrites it)'}\n`,
      );
      if (root === null) out(`  ${managerState(p, scope, run)}\n`);
      return 0;
    }
  }
}

/** What the service manager says of the service, in one line. */
function managerState(p: Platform, scope: ServiceScope, run: Runner): string {
  const ask = (command: string, args: string[]): string => {
    try {
      return run(command, args).trim();
    } catch (err) {
      return (err as { stdout?: string }).stdout?.toString().trim() || 'unknown';
    }
  };
  if (p.os === 'darwin') {
    const domain = scope === 'system' ? 'system' : `gui/${process.getuid?.() ?? 501}`;
    const loaded = ask('launchctl', ['print', `${domain}/${LAUNCHD_LABEL}`]) !== 'unknown';
    return `launchd: ${loaded ? 'loaded' : 'not loaded'}`;
  }
  const user = scope === 'user' ? ['--user'] : [];
  const enabled = ask('systemctl', [...user, 'is-enabled', `${SERVICE_NAME}.service`]);
  const active = ask('systemctl', [...user, 'is-active', `${SERVICE_NAME}.service`]);
  return `systemd: ${enabled}, ${active}`;
}
