/**
 * The service definitions `ollana service install` writes, as text: a systemd unit on Linux (user or
 * system) and a launchd property list on macOS (a LaunchAgent for the user, a LaunchDaemon for the
 * system). Pure functions of the program to run and the OS's paths, so tests check every OS's on Linux.
 * Windows has no file of this kind: windowsTaskCommand is the Task Scheduler command its docs give.
 */
import { posix, win32 } from 'node:path';
import type { Platform } from '../platform/platform.ts';

export type ServiceScope = 'user' | 'system';

export const SERVICE_NAME = 'ollana';
/** launchd's label: reverse-DNS by convention. */
export const LAUNCHD_LABEL = 'io.github.ollana';
/** Where a system node keeps its data (systemd's StateDirectory, launchd's working directory). */
export const SYSTEM_DATA_DIR = { linux: '/var/lib/ollana', darwin: '/Library/Application Support/ollana' } as const;

/** What the service runs: Node 24 and ollana's entry, both absolute. */
export interface ServiceProgram {
  readonly node: string;
  readonly entry: string;
}

/** Where the definition goes: systemd's and launchd's own directories for the scope. */
export function serviceFile(p: Platform, scope: ServiceScope): string {
  if (p.os === 'darwin') {
    return scope === 'system'
      ? posix.join('/Library/LaunchDaemons', `${LAUNCHD_LABEL}.plist`)
      : posix.join(p.home, 'Library', 'LaunchAgents', `${LAUNCHD_LABEL}.plist`);
  }
  if (scope === 'system') return posix.join('/etc/systemd/system', `${SERVICE_NAME}.service`);
  const config = p.env.XDG_CONFIG_HOME || posix.join(p.home, '.config');
  return posix.join(config, 'systemd', 'user', `${SERVICE_NAME}.service`);
}

/** One word of an ExecStart= line: quoted when it holds a space, a quote, a backslash or a specifier. */
function systemdWord(word: string): string {
  const escaped = word.replace(/%/g, '%%');
  if (!/[\s"'\\$;]/.test(escaped)) return escaped;
  return `"${escaped.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

/**
 * The systemd unit. Stopping is systemd's SIGTERM, which ollana drains on; TimeoutStopSec leaves the
 * default drain timeout (30 s) and the rest of the shutdown room. A system unit keeps its data in
 * /var/lib/ollana (StateDirectory=) and waits for the network to be up.
 */
export function systemdUnit(prog: ServiceProgram, scope: ServiceScope): string {
  const system = scope === 'system';
  const lines = [
    '[Unit]',
    'Description=ollana: Ollama over LAN',
    ...(system ? ['Wants=network-online.target', 'After=network-online.target'] : []),
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${[prog.node, prog.entry, 'serve'].map(systemdWord).join(' ')}`,
    ...(system
      ? [`Environment=OLLANA_HOME=${SYSTEM_DATA_DIR.linux}`, 'StateDirectory=ollana', 'StateDirectoryMode=0700']
      : []),
    'Restart=on-failure',
    'RestartSec=2',
    'TimeoutStopSec=45',
    'NoNewPrivileges=yes',
    ...(system ? ['ProtectSystem=full', 'PrivateTmp=yes'] : []),
    '',
    '[Install]',
    `WantedBy=${system ? 'multi-user.target' : 'default.target'}`,
    '',
  ];
  return lines.join('\n');
}

function xmlText(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/**
 * The launchd property list: started at load (login for an agent, boot for a daemon), restarted when
 * it exits with a failure, its output in ~/Library/Logs/ollana (an agent) or /Library/Logs/ollana.
 * launchd's stop is SIGTERM too, with ExitTimeOut before SIGKILL.
 */
export function launchdPlist(prog: ServiceProgram, p: Platform, scope: ServiceScope): string {
  const system = scope === 'system';
  const logDir = system ? '/Library/Logs/ollana' : posix.join(p.home, 'Library', 'Logs', 'ollana');
  const args = [prog.node, prog.entry, 'serve'].map((a) => `\t\t<string>${xmlText(a)}</string>`);
  const env = system
    ? [
        '\t<key>EnvironmentVariables</key>',
        '\t<dict>',
        '\t\t<key>OLLANA_HOME</key>',
        `\t\t<string>${xmlText(SYSTEM_DATA_DIR.darwin)}</string>`,
        '\t</dict>',
      ]
    : [];
  return [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!DOCTYPE plist PUBLIC "-//Apple//DTD PLIST 1.0//EN" "http://www.apple.com/DTDs/PropertyList-1.0.dtd">',
    '<plist version="1.0">',
    '<dict>',
    '\t<key>Label</key>',
    `\t<string>${LAUNCHD_LABEL}</string>`,
    '\t<key>ProgramArguments</key>',
    '\t<array>',
    ...args,
    '\t</array>',
    ...env,
    '\t<key>RunAtLoad</key>',
    '\t<true/>',
    '\t<key>KeepAlive</key>',
    '\t<dict>',
    '\t\t<key>SuccessfulExit</key>',
    '\t\t<false/>',
    '\t</dict>',
    '\t<key>ThrottleInterval</key>',
    '\t<integer>2</integer>',
    '\t<key>ExitTimeOut</key>',
    '\t<integer>45</integer>',
    '\t<key>StandardOutPath</key>',
    `\t<string>${xmlText(posix.join(logDir, 'ollana.log'))}</string>`,
    '\t<key>StandardErrorPath</key>',
    `\t<string>${xmlText(posix.join(logDir, 'ollana.log'))}</string>`,
    '</dict>',
    '</plist>',
    '',
  ].join('\n');
}

/** Windows: a Task Scheduler task that starts the node at logon (run in a console as the user). */
export function windowsTaskCommand(prog: ServiceProgram): string {
  const run = `\\"${win32.normalize(prog.node)}\\" \\"${win32.normalize(prog.entry)}\\" serve`;
  return `schtasks /Create /TN ${SERVICE_NAME} /SC ONLOGON /RL LIMITED /TR "${run}"`;
}
