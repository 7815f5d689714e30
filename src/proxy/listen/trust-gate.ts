/**
 * Who may talk to this server node: the proxy worker's copy of the allow list, checked right after
 * each TLS handshake. The supervisor pushes a new copy whenever `ollana device allow/disable` changes
 * devices.json; connections of a device that is no longer allowed are cut at once.
 */
import type { TLSSocket } from 'node:tls';
import { peerDeviceId, peerName } from '../../net/tls.ts';
import { rememberDevice } from '../../metrics/device-label.ts';
import type { TrustSettings } from '../../protocol/messages.ts';

/** 'bad-handshake': no TLS session came about at all (plain HTTP on the TLS port, a scanner, a stall). */
export type Verdict = 'allowed' | 'no-certificate' | 'unknown' | 'disabled' | 'bad-handshake';

export interface Admission {
  readonly verdict: Verdict;
  readonly id: string | null;
  /** the certificate's common name, read for refusals only ('' when allowed) */
  readonly name: string;
}

export class TrustGate {
  readonly #self: string;
  #trustLan = false;
  #allowed = new Set<string>();
  #disabled = new Set<string>();
  /** Live connections and whose they are, so a change of mind reaches them too. */
  readonly #live = new Map<TLSSocket, string>();

  constructor(selfId: string, settings: TrustSettings) {
    this.#self = selfId;
    this.update(settings);
  }

  verdictFor(id: string | null): Verdict {
    if (id === null) return 'no-certificate';
    // The node itself (`ollana status` uses its own certificate) is always welcome.
    if (id === this.#self) return 'allowed';
    if (this.#disabled.has(id)) return 'disabled';
    if (this.#trustLan || this.#allowed.has(id)) return 'allowed';
    return 'unknown';
  }

  /** Checks a socket whose handshake just finished; an allowed one is tracked until it closes. */
  admit(socket: TLSSocket): Admission {
    const id = peerDeviceId(socket);
    const verdict = this.verdictFor(id);
    // The name is for the refusal's log line and the pending list; an admitted peer's is not read.
    const name = id === null || verdict === 'allowed' ? '' : peerName(socket);
    if (verdict === 'allowed' && id !== null) {
      this.#live.set(socket, id);
      rememberDevice(socket, id);
      socket.once('close', () => this.#live.delete(socket));
    }
    return { verdict, id, name };
  }

  /** Applies a new allow list; returns the ids whose live connections were cut. */
  update(settings: TrustSettings): string[] {
    this.#trustLan = settings.trustLan;
    this.#allowed = new Set(settings.allowed);
    this.#disabled = new Set(settings.disabled);
    const cut = new Set<string>();
    for (const [socket, id] of this.#live) {
      if (this.verdictFor(id) === 'allowed') continue;
      cut.add(id);
      this.#live.delete(socket);
      socket.destroy();
    }
    return [...cut];
  }
}
