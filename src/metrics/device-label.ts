/**
 * Which allowed device a server node's connection belongs to, for the `device` label: the trust gate
 * computes the id once per handshake and remembers it here, so a request only looks it up.
 */
import type { Socket } from 'node:net';

const devices = new WeakMap<object, string>();

/** Called by the trust gate for an admitted connection. */
export function rememberDevice(socket: object, id: string): void {
  devices.set(socket, id);
}

/**
 * The device of a connection: the TLS socket the gate admitted, or the TCP socket under it (the
 * fast front reads the TLS socket; node:http's request sockets are the same one). '' when unknown.
 */
export function deviceOf(socket: Socket | null | undefined): string {
  if (socket === null || socket === undefined) return '';
  return devices.get(socket) ?? '';
}
