/**
 * Device identities for LAN discovery tests: real ECDSA P-256 keys and self-signed certificates, as
 * nodes make them, each with the signer its datagrams are signed with.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { pemSigner } from '../../src/net/datagram-auth.ts';
import type { DatagramSigner } from '../../src/net/datagram.ts';
import { deviceIdFromDer } from '../../src/identity/device-id.ts';
import { createSelfSigned } from '../../src/identity/self-signed.ts';

export interface TestIdentity {
  readonly id: string;
  readonly certPem: string;
  readonly keyPem: string;
  /** SHA-256 of the certificate, hex: what a verified peer's `fp` is */
  readonly fp: string;
  readonly signer: DatagramSigner;
}

export async function makeIdentity(name = 'test'): Promise<TestIdentity> {
  const { certPem, keyPem } = await createSelfSigned(`ollana ${name}`, 1);
  const der = new X509Certificate(certPem).raw;
  return {
    id: deviceIdFromDer(der),
    certPem,
    keyPem,
    fp: createHash('sha256').update(der).digest('hex'),
    signer: pemSigner(certPem, keyPem),
  };
}

export async function makeIdentities(n: number): Promise<TestIdentity[]> {
  return Promise.all(Array.from({ length: n }, (_, i) => makeIdentity(`test${i}`)));
}
