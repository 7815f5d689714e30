/**
 * This node's identity: a private key and a self-signed certificate in the data directory, made on
 * first use and kept for good, since the device id other machines allow is the certificate's hash.
 * Reading uses node:crypto only; the certificate library is imported only to make a new identity.
 */
import { X509Certificate, createHash, createPrivateKey, type KeyObject } from 'node:crypto';
import { chmodSync, readFileSync, rmSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { OllanaError, errorMessage, systemCode } from '../errors.ts';
import { createFileExclusive, removeStaleTemps, writeFileAtomic } from './atomic-file.ts';
import { dirError, ensurePrivateDir } from './data-dir.ts';
import { deviceIdFromDer } from './device-id.ts';

export const CERT_FILE = 'cert.pem';
export const KEY_FILE = 'key.pem';
const VALID_YEARS = 20;
/** How long a key without its certificate may be a creation in progress rather than a leftover. */
const CREATING_MS = 5_000;

export interface Identity {
  readonly id: string;
  readonly certPem: string;
  readonly keyPem: string;
  /** SHA-256 of the certificate's DER: hex, lower case, no colons. */
  readonly fingerprint: string;
  readonly certFile: string;
  readonly keyFile: string;
  /** The host part of the certificate's CN ("ollana <host>"). */
  readonly name: string;
}

function readOptional(file: string): string | null {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    if (systemCode(err) === 'ENOENT') return null;
    throw dirError(file, 'read', err);
  }
}

function badIdentity(certFile: string, keyFile: string, what: string, cause?: unknown): OllanaError {
  return new OllanaError(
    'OLN_IDENTITY_BAD',
    `${what}; put back the matching ${certFile} and ${keyFile}, or move both away to make a new identity ` +
      "(that changes this node's device id: the other machines must then allow the new one)",
    { cause, details: { certFile, keyFile } },
  );
}

function fromPem(certPem: string, keyPem: string, certFile: string, keyFile: string): Identity {
  let cert: X509Certificate;
  let key: KeyObject;
  try {
    cert = new X509Certificate(certPem);
  } catch (err) {
    throw badIdentity(certFile, keyFile, `${certFile} is not a PEM certificate (${errorMessage(err)})`, err);
  }
  try {
    key = createPrivateKey(keyPem);
  } catch (err) {
    throw badIdentity(certFile, keyFile, `${keyFile} is not a PEM private key (${errorMessage(err)})`, err);
  }
  let matches = false;
  try {
    matches = cert.checkPrivateKey(key);
  } catch {
    /* a key of another type: not this certificate's either */
  }
  if (!matches) throw badIdentity(certFile, keyFile, `${keyFile} is not the private key of ${certFile}`);
  const cn = cert.toLegacyObject().subject?.CN;
  const name = (Array.isArray(cn) ? cn[0] : cn) ?? '';
  return Object.freeze({
    id: deviceIdFromDer(cert.raw),
    certPem,
    keyPem,
    certFile,
    keyFile,
    fingerprint: createHash('sha256').update(cert.raw).digest('hex'),
    name: name.replace(/^ollana /, ''),
  });
}

/** The key file's mode is part of keeping it secret: tighten a looser one. */
function tightenKey(keyFile: string): void {
  try {
    if ((statSync(keyFile).mode & 0o077) !== 0) chmodSync(keyFile, 0o600);
  } catch (err) {
    throw dirError(keyFile, 'use', err);
  }
}

/** The identity in `dataDir`, or null when it has none yet. Never creates anything. */
export function loadIdentity(dataDir: string): Identity | null {
  const certFile = join(dataDir, CERT_FILE);
  const keyFile = join(dataDir, KEY_FILE);
  const certPem = readOptional(certFile);
  const keyPem = readOptional(keyFile);
  if (certPem === null) return null; // a key alone is a creation under way or a leftover of one
  if (keyPem === null) throw badIdentity(certFile, keyFile, `${certFile} is there but ${keyFile} is missing`);
  return fromPem(certPem, keyPem, certFile, keyFile);
}

/**
 * A key without a certificate: another process is creating the identity (it writes the key first,
 * the certificate a moment later), or a creation died in between; no peer can know that id, so a
 * leftover is removed. Resolves when the certificate appeared or the leftover is gone: true when it
 * removed one.
 */
async function settleLoneKey(certFile: string, keyFile: string): Promise<boolean> {
  const seen = statSync(keyFile, { throwIfNoEntry: false });
  if (seen === undefined) return false;
  while (Date.now() - seen.mtimeMs < CREATING_MS) {
    if (readOptional(certFile) !== null) return false;
    await sleep(50);
  }
  if (readOptional(certFile) !== null) return false;
  const now = statSync(keyFile, { throwIfNoEntry: false });
  if (now?.ino !== seen.ino || now.mtimeMs !== seen.mtimeMs) return false;
  rmSync(keyFile, { force: true });
  return true;
}

export interface LoadedIdentity {
  readonly identity: Identity;
  /** Made now, in this call. */
  readonly created: boolean;
  /**
   * What a killed writer had left in the data directory and this call removed (temporary files, a
   * key without its certificate), by name: the caller says so once.
   */
  readonly removed: readonly string[];
}

/**
 * This node's identity from `<dataDir>/cert.pem` and `key.pem`, made (ECDSA P-256, self-signed, CN
 * "ollana <host>", ~20 years) when there is none. Safe against another ollana doing the same at the
 * same moment: both end up with the one identity. First removes what a killed writer left behind
 * (removeStaleTemps), since a temporary key file is a private key lying around.
 */
export async function loadOrCreateIdentity(dataDir: string): Promise<LoadedIdentity> {
  ensurePrivateDir(dataDir);
  const certFile = join(dataDir, CERT_FILE);
  const keyFile = join(dataDir, KEY_FILE);
  const removed = removeStaleTemps(dataDir);
  for (let attempt = 0; attempt < 5; attempt++) {
    const existing = loadIdentity(dataDir);
    if (existing !== null) {
      tightenKey(keyFile);
      return { identity: existing, created: false, removed };
    }
    if (readOptional(keyFile) !== null) {
      if (await settleLoneKey(certFile, keyFile)) removed.push(`${KEY_FILE} (without its ${CERT_FILE})`);
      continue;
    }
    const { createSelfSigned } = await import('./self-signed.ts');
    const made = await createSelfSigned(`ollana ${hostname()}`, VALID_YEARS);
    try {
      // Key first, and only if no other process wrote one meanwhile: a certificate is never on disk
      // without its key, and two racing creators cannot end up with one's key and the other's cert.
      if (!createFileExclusive(keyFile, made.keyPem, 0o600)) continue;
      writeFileAtomic(certFile, made.certPem, 0o644);
    } catch (err) {
      throw dirError(`the identity files in ${dataDir}`, 'write', err);
    }
    return { identity: fromPem(made.certPem, made.keyPem, certFile, keyFile), created: true, removed };
  }
  throw badIdentity(
    certFile,
    keyFile,
    `could not settle this node's identity in ${dataDir}: another process keeps replacing ${keyFile}`,
  );
}
