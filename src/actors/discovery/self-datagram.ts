/**
 * This node's datagrams: the LAN datagram built from the supervisor's SelfInfo, and what counts as
 * news worth announcing before the next heartbeat.
 */
import type { LanDatagram, LanKind } from '../../protocol/lan.ts';
import type { SelfInfo } from '../../protocol/messages.ts';

/** The datagram of `kind` saying `self`, numbered `seq`. */
export function selfDatagram(kind: LanKind, self: SelfInfo, seq: number): LanDatagram {
  return {
    kind,
    id: self.id,
    boot: self.boot,
    role: self.role,
    port: self.port,
    seq,
    load: self.load,
    models: self.models,
    term: self.term,
    leader: self.leader,
    draining: self.draining,
  };
}

/** Anything but load: what makes an announce worth sending before the next heartbeat. */
export function selfChanged(a: SelfInfo, b: SelfInfo): boolean {
  return (
    a.id !== b.id ||
    a.boot !== b.boot ||
    a.role !== b.role ||
    a.port !== b.port ||
    a.fp !== b.fp ||
    a.models !== b.models ||
    a.term !== b.term ||
    a.leader !== b.leader ||
    a.draining !== b.draining
  );
}
