/**
 * The boot id: random per process start. A node's id on the LAN is its device id (identity.ts); the
 * boot id is how a copied data directory (two nodes, one device id) is told apart from a restart.
 */
import { randomBytes } from 'node:crypto';

export function newBootId(): string {
  return randomBytes(8).toString('hex');
}
