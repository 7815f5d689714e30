/**
 * Makes the node's key pair and self-signed certificate with @peculiar/x509. Loaded by a dynamic
 * import only when a node has no identity yet: the library and its reflect-metadata polyfill (which
 * patches the global Reflect) stay out of every process and thread that only reads an identity.
 */
import 'reflect-metadata';
import {
  BasicConstraintsExtension,
  ExtendedKeyUsage,
  ExtendedKeyUsageExtension,
  KeyUsageFlags,
  KeyUsagesExtension,
  SubjectKeyIdentifierExtension,
  X509CertificateGenerator,
} from '@peculiar/x509';
import { createPrivateKey, randomBytes } from 'node:crypto';

const DAY_MS = 86_400_000;
const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };

export interface NewCertificate {
  readonly certPem: string;
  readonly keyPem: string;
}

/** An ECDSA P-256 key and a certificate for it, valid `years` years, for TLS on both ends. */
export async function createSelfSigned(commonName: string, years: number): Promise<NewCertificate> {
  const keys = await crypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify']);
  const serial = randomBytes(16);
  serial[0] = (serial[0]! & 0x7f) | 0x40; // positive, and no leading zero byte, as DER integers want
  const now = Date.now();
  const cert = await X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: [{ CN: [commonName] }],
    // A day of slack for a peer whose clock runs behind; the id pins the cert, dates are secondary.
    notBefore: new Date(now - DAY_MS),
    notAfter: new Date(now + years * 365.25 * DAY_MS),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new BasicConstraintsExtension(false, undefined, true),
      new KeyUsagesExtension(KeyUsageFlags.digitalSignature, true),
      new ExtendedKeyUsageExtension([ExtendedKeyUsage.serverAuth, ExtendedKeyUsage.clientAuth]),
      await SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const pkcs8 = Buffer.from(await crypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = createPrivateKey({ key: pkcs8, format: 'der', type: 'pkcs8' }).export({
    format: 'pem',
    type: 'pkcs8',
  });
  const certPem = cert.toString('pem');
  return { certPem: certPem.endsWith('\n') ? certPem : `${certPem}\n`, keyPem: String(keyPem) };
}
