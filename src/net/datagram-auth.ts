/**
 * Signing and checking LAN datagrams. Each datagram carries its sender's certificate and a signature
 * made with the sender's identity key; the receiver accepts it only if the certificate hashes to the
 * device id the datagram claims and the signature verifies. A host on the LAN can then speak only for
 * itself: it cannot say bye, move or announce for another node's id (issue #22).
 *
 * Checking costs CPU, so it is bounded: certificates already verified are cached per id (a known
 * peer's datagram costs one byte compare and one signature check), certificates not seen before are
 * checked at most NEW_CERT_LIMIT a second, and signatures at most VERIFY_LIMIT a second, whatever
 * the number of source addresses a flood uses.
 */
import { X509Certificate, createHash, createPrivateKey, sign, verify, type KeyObject } from 'node:crypto';
import { deviceIdFromDer } from '../identity/device-id.ts';
import type { DatagramSigner, DecodedDatagram } from './datagram.ts';
import { SourceRateLimiter, type RateLimit } from './rate-limiter.ts';

/** New certificates (unknown ids) checked per second: X.509 parsing, once per peer. */
export const NEW_CERT_LIMIT: RateLimit = Object.freeze({ perSecond: 50, burst: 200 });
/** Signatures checked per second: a LAN of 100 nodes sends ~100 fresh datagrams a second. */
export const VERIFY_LIMIT: RateLimit = Object.freeze({ perSecond: 2_000, burst: 4_000 });
/** Certificates kept; past it the least recently used goes (it is checked again if heard). */
const MAX_CACHED = 512;

/** A signer over this node's identity (the PEM texts of the data directory). */
export function pemSigner(certPem: string, keyPem: string): DatagramSigner {
  const certDer = new X509Certificate(certPem).raw;
  const key = createPrivateKey(keyPem);
  return { certDer, sign: (data) => sign('sha256', data, { key, dsaEncoding: 'ieee-p1363' }) };
}

export type VerifyDropReason = 'forged' | 'verifyLimited';
export type VerifyResult =
  | { readonly ok: true; readonly fp: string }
  | { readonly ok: false; readonly reason: VerifyDropReason };

interface KnownCert {
  readonly der: Buffer;
  readonly key: KeyObject;
  /** SHA-256 of the DER, hex */
  readonly fp: string;
}

export class DatagramVerifier {
  readonly #certs = new Map<string, KnownCert>();
  readonly #newCerts: SourceRateLimiter;
  readonly #verifies: SourceRateLimiter;

  constructor(limits: { newCerts?: RateLimit; verifies?: RateLimit } = {}) {
    this.#newCerts = new SourceRateLimiter(limits.newCerts ?? NEW_CERT_LIMIT, 1);
    this.#verifies = new SourceRateLimiter(limits.verifies ?? VERIFY_LIMIT, 1);
  }

  /** Whether `d` was signed by the holder of the certificate of device `d.datagram.id`. */
  verify(d: DecodedDatagram, now: number): VerifyResult {
    const id = d.datagram.id;
    let known = this.#certs.get(id);
    if (known !== undefined && !known.der.equals(d.cert)) known = undefined; // another cert for this id: check it afresh
    if (known === undefined) {
      if (!this.#newCerts.admit('all', now)) return { ok: false, reason: 'verifyLimited' };
      const parsed = parseCert(d.cert, id);
      if (parsed === null) return { ok: false, reason: 'forged' };
      known = parsed;
    }
    if (!this.#verifies.admit('all', now)) return { ok: false, reason: 'verifyLimited' };
    let good = false;
    try {
      good = verify('sha256', d.signed, { key: known.key, dsaEncoding: 'ieee-p1363' }, d.signature);
    } catch {
      good = false; // a key type that cannot verify this: not a datagram of ours
    }
    if (!good) return { ok: false, reason: 'forged' };
    // Cached only once a signature verified, so garbage certificates never take a place.
    this.#certs.delete(id);
    this.#certs.set(id, known);
    if (this.#certs.size > MAX_CACHED) this.#certs.delete(this.#certs.keys().next().value ?? '');
    return { ok: true, fp: known.fp };
  }

  get cached(): number {
    return this.#certs.size;
  }
}

/** The certificate's key and hash, if its device id is `id`; null otherwise or when it does not parse. */
function parseCert(der: Uint8Array, id: string): KnownCert | null {
  try {
    if (deviceIdFromDer(der) !== id) return null;
    const buf = Buffer.from(der);
    return { der: buf, key: new X509Certificate(buf).publicKey, fp: createHash('sha256').update(buf).digest('hex') };
  } catch {
    return null;
  }
}
