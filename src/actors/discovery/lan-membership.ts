/**
 * The discovery socket's place on the LAN: the interfaces it sends on and its multicast group
 * memberships (joined as interfaces appear, kept when they vanish), best-effort socket options, and
 * the error for a discovery port that cannot be bound.
 */
import { errorMessage, OllanaError, systemCode } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { LanInterface } from '../../net/lan-interfaces.ts';
import type { DatagramSocketLike } from './lan-sender.ts';

export class LanMembership {
  readonly #socket: DatagramSocketLike;
  readonly #group: string;
  readonly #log: Logger;
  #interfaces: LanInterface[] = [];
  /** joined the group without an interface address (there was no LAN interface) */
  #joinedDefault = false;

  constructor(socket: DatagramSocketLike, group: string, log: Logger) {
    this.#socket = socket;
    this.#group = group;
    this.#log = log;
  }

  /** The interfaces known now (datagrams go out on each). */
  get interfaces(): readonly LanInterface[] {
    return this.#interfaces;
  }

  /** Joins the group on interfaces new to us; forgets vanished ones. */
  /** `running`: discovery is up (a change is then logged). */
  adopt(next: readonly LanInterface[], running: boolean): void {
    const known = this.#interfaces;
    const added = next.filter((n) => !known.some((k) => k.address === n.address));
    const removed = known.filter((k) => !next.some((n) => n.address === k.address));
    if (next.length === 0 && !this.#joinedDefault) {
      // No LAN interface (yet): let the kernel pick one by route; rescans join real ones later.
      this.#joinedDefault = true;
      trySocketOption(this.#log, 'addMembership', () => this.#socket.addMembership(this.#group));
    }
    if (added.length === 0 && removed.length === 0) return;
    // An interface whose link is down drops out of os.networkInterfaces() while keeping its address,
    // and the kernel keeps its group membership: leaving the group here would deafen this node to
    // multicast after the cable is back, until a later rescan. So vanished interfaces only stop being
    // sent to; the kernel drops the membership itself when the address really goes. Re-joining one
    // that returns then answers EADDRINUSE, which means "already a member".
    for (const iface of added)
      trySocketOption(
        this.#log,
        'addMembership',
        () => this.#socket.addMembership(this.#group, iface.address),
        'EADDRINUSE',
      );
    if (running) this.#log.info({ interfaces: next.map((i) => i.address) }, 'discovery interfaces changed');
    this.#interfaces = [...next];
  }
}

/** Runs a best-effort socket option; a failure is logged (not at all if its code is `harmless`). */
export function trySocketOption(log: Logger, what: string, fn: () => unknown, harmless?: string): void {
  try {
    fn();
  } catch (err) {
    if (harmless !== undefined && systemCode(err) === harmless) return;
    log.warn({ err, code: systemCode(err) }, `discovery ${what} failed (${systemCode(err) ?? errorMessage(err)})`);
  }
}

export function bindError(port: number, err: unknown): OllanaError {
  const code = systemCode(err);
  const what =
    code === 'EADDRINUSE'
      ? 'is in use by a program that does not share it'
      : code === 'EACCES'
        ? 'needs privileges this user lacks'
        : `cannot be bound (${errorMessage(err)})`;
  return new OllanaError(
    code === 'EADDRINUSE' ? 'OLN_PORT_IN_USE' : code === 'EACCES' ? 'OLN_PORT_DENIED' : 'OLN_INTERNAL',
    `discovery UDP port 0.0.0.0:${port} ${what}; choose another with --discovery-port (every node of the LAN must use the same one)`,
    { cause: err, details: { port, code: code ?? null } },
  );
}
