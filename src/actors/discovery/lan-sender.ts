/**
 * The sending side of the discovery socket: where "to the LAN" goes (the group through each
 * interface, each broadcast address), and one queue that hands datagrams to the socket in order.
 */
import { directedBroadcast, type LanInterface } from '../../net/lan-interfaces.ts';
import { errorMessage, systemCode } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { ResolvedOptions } from './options.ts';

const LIMITED_BROADCAST = '255.255.255.255';

/** The subset of node:dgram's Socket that discovery uses; a dgram.Socket satisfies it. */
export interface DatagramSocketLike {
  bind(port: number, address: string, callback: () => void): unknown;
  on(event: 'message', listener: (msg: Buffer, rinfo: { address: string; port: number }) => void): unknown;
  on(event: 'error', listener: (err: Error) => void): unknown;
  address(): { address: string; port: number };
  addMembership(group: string, iface?: string): void;
  dropMembership(group: string, iface?: string): void;
  setBroadcast(flag: boolean): void;
  setMulticastTTL(ttl: number): unknown;
  setMulticastLoopback(flag: boolean): unknown;
  setMulticastInterface(iface: string): void;
  send(msg: Uint8Array, port: number, address: string, callback: (err: Error | null) => void): void;
  close(callback?: () => void): unknown;
}

export interface Target {
  readonly address: string;
  readonly port: number;
  /** multicast: the interface to send through */
  readonly via?: string;
}

/** "To the LAN": the group through each interface, and each broadcast address. */
export function lanTargets(
  opts: Pick<ResolvedOptions, 'group' | 'multicast' | 'broadcast' | 'limitedBroadcast'>,
  interfaces: readonly LanInterface[],
  port: number,
): Target[] {
  const group = opts.group;
  const targets: Target[] = [];
  if (opts.multicast) {
    if (interfaces.length === 0) targets.push({ address: group, port });
    for (const iface of interfaces) targets.push({ address: group, port, via: iface.address });
  }
  if (opts.broadcast) {
    for (const iface of interfaces) {
      const address = directedBroadcast(iface);
      if (address !== null && !targets.some((t) => t.address === address)) targets.push({ address, port });
    }
    if (opts.limitedBroadcast) targets.push({ address: LIMITED_BROADCAST, port });
  }
  return targets;
}

/** Sends datagrams one after another, counting into `counts`; a target that fails is said once. */
export class LanSender {
  readonly #socket: DatagramSocketLike;
  readonly #log: Logger;
  readonly #counts: { sent: number; sendErrors: number };
  readonly #failingTargets = new Set<string>();
  /** sends run one after another: setMulticastInterface applies to the next send only once it ran */
  #sendChain: Promise<void> = Promise.resolve();

  constructor(socket: DatagramSocketLike, log: Logger, counts: { sent: number; sendErrors: number }) {
    this.#socket = socket;
    this.#log = log;
    this.#counts = counts;
  }

  /** Sends `buf` to every target after everything queued before. */
  enqueue(buf: Buffer, targets: readonly Target[]): void {
    // #sendAll does not throw; the catch is what keeps one surprise from stopping every later send.
    this.#sendChain = this.#sendChain
      .then(() => this.#sendAll(buf, targets))
      .catch((err: unknown) => this.#log.error({ err }, 'discovery send failed unexpectedly'));
  }

  /** Resolves once every datagram queued so far has been handed to the socket. */
  flushed(): Promise<void> {
    return this.#sendChain;
  }

  async #sendAll(buf: Buffer, targets: readonly Target[]): Promise<void> {
    for (const target of targets) {
      const name = target.via === undefined ? target.address : `${target.address} via ${target.via}`;
      const err = await new Promise<unknown>((resolve) => {
        try {
          if (target.via !== undefined) this.#socket.setMulticastInterface(target.via);
          this.#socket.send(buf, target.port, target.address, resolve);
        } catch (thrown) {
          resolve(thrown);
        }
      });
      if (err === null || err === undefined) {
        this.#counts.sent++;
        if (this.#failingTargets.delete(name)) this.#log.info({ target: name }, 'discovery sends again');
        continue;
      }
      // ENETUNREACH (no route), ENODEV, EPERM (a firewall drops it), EADDRNOTAVAIL (address gone):
      // counted, said once per target, never thrown.
      this.#counts.sendErrors++;
      const fields = { target: name, code: systemCode(err), err: errorMessage(err) };
      if (this.#failingTargets.has(name)) this.#log.debug(fields, 'discovery send failed');
      else {
        this.#failingTargets.add(name);
        this.#log.warn(fields, 'discovery send failed');
      }
    }
  }
}
