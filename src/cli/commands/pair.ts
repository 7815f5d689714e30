/**
 * `ollana pair`: run on two machines at once, on one LAN. They find each other with a small UDP
 * exchange (port 11437, broadcast and multicast with TTL 1, so it stays on the link), each shows the
 * same six-digit code, each person confirms, and each machine allows the other in devices.json
 * through the same code path as `ollana device allow` (a running node applies it). The exchange is
 * pair/session.ts; this file is the socket, the terminal, and the allow list.
 */
import { X509Certificate } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { createInterface } from 'node:readline';
import { systemClock } from '../../clock.ts';
import { loadConfig } from '../../config/load.ts';
import { OllanaError, errorMessage, systemCode } from '../../errors.ts';
import { loadOrCreateIdentity } from '../../identity/identity.ts';
import { directedBroadcast, lanInterfaces } from '../../net/lan-interfaces.ts';
import { PairSession, type PairPeer } from '../../pair/session.ts';
import type { PairCommand } from '../args.ts';
import { allowDevice } from './device.ts';

type Env = Readonly<Record<string, string | undefined>>;

export const PAIR_GROUP = '239.255.11.37';
const LINGER_MS = 2_000;

const printable = (s: string): string => s.replace(/\p{Cc}/gu, '?') || '-';

/** One line from stdin (a terminal or a pipe), or null at its end. */
function readLine(prompt: string | null): Promise<string | null> {
  return new Promise((resolve) => {
    const rl = createInterface({ input: process.stdin, terminal: false });
    let done = false;
    const finish = (v: string | null): void => {
      if (done) return;
      done = true;
      rl.close();
      resolve(v);
    };
    if (prompt !== null) process.stdout.write(prompt);
    rl.once('line', (l) => finish(l));
    rl.once('close', () => finish(null));
  });
}

/** The person's (or the script's) answer to the code shown; true to allow. */
async function decide(cmd: PairCommand, code: string, peer: PairPeer): Promise<boolean> {
  if (cmd.code !== null) {
    const expected = cmd.code === '-' ? ((await readLine(null)) ?? '').replace(/\s/g, '') : cmd.code;
    if (expected !== code) {
      process.stderr.write(`ollana: the expected code ${JSON.stringify(expected)} is not ${code}: refusing\n`);
      return false;
    }
    return cmd.yes || (await readLine(`Allow ${printable(peer.name)}? [y/N] `))?.trim().toLowerCase() === 'y';
  }
  const a = await readLine(`Does ${printable(peer.name)} show ${code}? Allow it? [y/N] `);
  return a?.trim().toLowerCase() === 'y' || a?.trim().toLowerCase() === 'yes';
}

export async function pairCommand(cmd: PairCommand, env: Env): Promise<number> {
  if (cmd.code === null && !process.stdin.isTTY) {
    throw new OllanaError(
      'OLN_USAGE',
      'ollana pair asks the person to confirm the code on a terminal, and stdin is not one; ' +
        'to pair from a script give --code with the expected code (`-` reads it from stdin once shown) and --yes',
    );
  }
  const { dataDir } = loadConfig(cmd.flags, env);
  const { identity } = await loadOrCreateIdentity(dataDir);
  const certDer = new X509Certificate(identity.certPem).raw;
  const socket = createSocket({ type: 'udp4', reuseAddr: true });
  await new Promise<void>((resolve, reject) => {
    socket.once('error', (err) => {
      const c = systemCode(err);
      reject(
        new OllanaError(
          c === 'EACCES' ? 'OLN_PORT_DENIED' : 'OLN_PORT_IN_USE',
          `cannot listen for pairing on UDP port ${cmd.port} (${errorMessage(err)}); give another with --port, the same on both machines`,
          { cause: err },
        ),
      );
    });
    socket.bind(cmd.port, () => resolve());
  });
  try {
    socket.setBroadcast(true);
    socket.setMulticastTTL(1);
    socket.addMembership(PAIR_GROUP);
  } catch {
    // best effort: broadcast alone finds the other machine where there is no multicast route
  }
  const everyone = (): string[] => [
    PAIR_GROUP,
    '255.255.255.255',
    ...lanInterfaces()
      .map(directedBroadcast)
      .filter((a): a is string => a !== null),
  ];
  // Sends still in the socket's queue: a refusal sent just before closing must leave first.
  let sending = 0;
  let flushed: (() => void) | null = null;
  const sent = (): void => {
    sending--;
    if (sending === 0) flushed?.();
  };
  const session = new PairSession({
    certDer,
    clock: systemClock,
    timeoutMs: cmd.timeoutMs,
    transport: {
      send: (bytes, addr) => {
        for (const to of addr === null ? everyone() : [addr]) {
          sending++;
          socket.send(bytes, cmd.port, to, sent);
        }
      },
    },
    onCode: (code, peer) => {
      process.stdout.write(
        `the other machine: ${printable(peer.name)} at ${peer.addr}, device id ${peer.id}\ncode: ${code}\n`,
      );
      decide(cmd, code, peer).then(
        (ok) => session.answer(ok),
        () => session.answer(false),
      );
    },
  });
  socket.on('message', (msg, rinfo) => session.receive(msg, rinfo.address));
  process.stdout.write(
    `looking for another machine running \`ollana pair\` on this LAN (device id ${identity.id}), for up to ${Math.round(cmd.timeoutMs / 1000)}s\n`,
  );
  try {
    const peer = await session.run();
    process.stdout.write(`both confirmed the code\n`);
    allowDevice(dataDir, peer.id, peer.name || 'paired');
    await new Promise((r) => setTimeout(r, LINGER_MS)); // the other side may still need this side's confirm
    return 0;
  } finally {
    const stats = `dropped ${session.stats.malformed} malformed and ${session.stats.stray} stray pairing datagrams`;
    if (cmd.verbose) process.stderr.write(`ollana: ${stats} [OLN_BAD_PAIR_MESSAGE]\n`);
    session.stop();
    if (sending > 0) {
      await new Promise<void>((r) => {
        flushed = r;
        setTimeout(r, 1_000).unref();
      });
    }
    socket.close();
    process.stdin.destroy();
  }
}
