/**
 * This node's id on the LAN: 32 hex digits made once and kept in the data directory. (The trust issue
 * replaces it with the device id, the SHA-256 fingerprint of the node's certificate.) Each process
 * start also gets a random boot id, which is how a copied data directory (two nodes, one id) is told
 * apart from a restart.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { OllanaError, systemCode } from '../errors.ts';

export const NODE_ID_FILE = 'node-id';

export function loadNodeId(dataDir: string): string {
  const file = join(dataDir, NODE_ID_FILE);
  try {
    const id = readFileSync(file, 'utf8').trim();
    if (/^[0-9a-f]{32}$/.test(id)) return id;
  } catch (err) {
    if (systemCode(err) !== 'ENOENT') {
      throw new OllanaError('OLN_DIR_UNWRITABLE', `cannot read this node's id from ${file}: ${(err as Error).message}`, { cause: err });
    }
  }
  const id = randomBytes(16).toString('hex');
  try {
    writeFileSync(file, `${id}\n`, { mode: 0o600 });
  } catch (err) {
    throw new OllanaError('OLN_DIR_UNWRITABLE',
      `cannot save this node's id in ${file}: ${(err as Error).message}; fix the data directory or choose another with --data-dir`, { cause: err });
  }
  return id;
}

export function newBootId(): string {
  return randomBytes(8).toString('hex');
}
