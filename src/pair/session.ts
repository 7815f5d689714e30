/**
 * One pairing exchange, as a state machine over an injected transport and clock (the CLI gives it a
 * UDP socket and real time; tests give it a fake LAN and a fake clock).
 *
 * looking    broadcast `commit` every resend interval; the first other session's commit is the peer
 * exchanging send the peer `commit` + `reveal` (the reveal only after the peer's commitment arrived)
 * comparing  the peer's reveal opened its commitment: both sides show the same code; the person
 *            answers (answer()), and `confirm` carries the answer bound to the transcript
 * done       both said yes: resolves with the peer's certificate; keeps answering for a short linger
 *            so a peer that lost this side's confirm still gets it
 *
 * Fails (rejects with an OllanaError) when nobody answers in time (OLN_PAIR_TIMEOUT), a second
 * machine pairs at once (OLN_PAIR_CROWDED: the code would not say which one it is), a reveal does not
 * open its commitment or is this machine's own certificate (OLN_PAIR_MISMATCH), or either person says
 * no (OLN_PAIR_REFUSED). Datagrams that are malformed, or not for this exchange (a replay of another
 * session's reveal, from another address), are dropped and counted.
 */
import { X509Certificate, randomBytes } from 'node:crypto';
import type { Clock, TimerHandle } from '../clock.ts';
import { OllanaError } from '../errors.ts';
import { deviceIdFromDer } from '../identity/device-id.ts';
import { commitment, shortCode, transcript, type PairSide } from './code.ts';
import { NONCE_LENGTH, SID_LENGTH, decodePairMessage, encodePairMessage, type PairMessage } from './messages.ts';

export interface PairTransport {
  /** Sends to `addr`, or to everyone on the LAN (broadcast and multicast) when null. */
  send(bytes: Buffer, addr: string | null): void;
}

export interface PairPeer {
  readonly id: string;
  readonly certDer: Uint8Array;
  /** The host part of the certificate's CN. */
  readonly name: string;
  readonly addr: string;
}

export interface PairOptions {
  readonly certDer: Uint8Array;
  readonly transport: PairTransport;
  readonly clock: Clock;
  /** Called once, when both sides can show the code. */
  readonly onCode: (code: string, peer: PairPeer) => void;
  /** How long to look for the other machine, and then to wait for its answer. */
  readonly timeoutMs: number;
  readonly resendMs?: number;
  readonly lingerMs?: number;
  readonly random?: (n: number) => Uint8Array;
}

export type PairState = 'looking' | 'exchanging' | 'comparing' | 'done' | 'failed';

export interface PairStats {
  malformed: number;
  stray: number;
}

const eq = (a: Uint8Array, b: Uint8Array): boolean => Buffer.from(a).equals(Buffer.from(b));

export class PairSession {
  state: PairState = 'looking';
  readonly stats: PairStats = { malformed: 0, stray: 0 };
  private readonly me: PairSide;
  private readonly myId: string;
  private readonly myCommit: Buffer;
  private peer: { sid: Uint8Array; commit: Uint8Array; addr: string; side?: PairSide; info?: PairPeer } | null = null;
  private hash: Buffer | null = null;
  private myAnswer: boolean | null = null;
  private peerOk = false;
  private ticker: TimerHandle | null = null;
  private deadline: TimerHandle | null = null;
  private settle: { resolve: (p: PairPeer) => void; reject: (e: OllanaError) => void } | null = null;
  private readonly result: Promise<PairPeer>;

  private readonly o: PairOptions;

  constructor(o: PairOptions) {
    this.o = o;
    const random = o.random ?? ((n: number) => randomBytes(n));
    this.me = { sid: random(SID_LENGTH), cert: o.certDer, nonce: random(NONCE_LENGTH) };
    this.myId = deviceIdFromDer(o.certDer);
    this.myCommit = commitment(this.me);
    this.result = new Promise((resolve, reject) => {
      this.settle = { resolve, reject };
    });
  }

  /** Starts looking; resolves with the peer once both people confirmed the code. */
  run(): Promise<PairPeer> {
    this.tick();
    this.ticker = this.o.clock.setInterval(() => this.tick(), this.o.resendMs ?? 500);
    this.armDeadline('no other machine running `ollana pair` answered on this LAN');
    return this.result;
  }

  /** The local person's answer to "does the other machine show this code?". */
  answer(ok: boolean): void {
    if (this.state !== 'comparing' || this.myAnswer !== null) return;
    this.myAnswer = ok;
    this.sendConfirm();
    if (!ok) {
      this.sendConfirm();
      this.fail('OLN_PAIR_REFUSED', 'the code was not confirmed on this machine; nothing was allowed');
      return;
    }
    this.armDeadline('the other machine did not confirm the code');
    this.maybeDone();
  }

  /** Stops timers; a session stopped before it ended fails with OLN_PAIR_TIMEOUT. */
  stop(): void {
    if (this.state !== 'done' && this.state !== 'failed') this.fail('OLN_PAIR_TIMEOUT', 'pairing was stopped');
    this.clearTimers();
  }

  receive(bytes: Uint8Array, from: string): void {
    const d = decodePairMessage(bytes);
    if (!d.ok) {
      this.stats.malformed++;
      return;
    }
    const m = d.message;
    if (eq(m.sid, this.me.sid) || this.state === 'failed') return; // our own broadcast, heard back
    if (m.kind === 'commit') {
      this.onCommit(m, from);
      return;
    }
    // A reveal or confirm counts only from the locked peer's address, for this session.
    const p = this.peer;
    if (p === null || !eq(m.sid, p.sid) || !eq(m.to, this.me.sid) || from !== p.addr) {
      this.stats.stray++;
      return;
    }
    if (m.kind === 'reveal') this.onReveal(m, p);
    else this.onConfirm(m);
  }

  private onCommit(m: Extract<PairMessage, { kind: 'commit' }>, from: string): void {
    if (this.peer === null) {
      this.peer = { sid: m.sid, commit: m.commit, addr: from };
      this.state = 'exchanging';
      this.tick();
      return;
    }
    // The peer's resends, or its copies through another interface of the same machine.
    if (eq(m.sid, this.peer.sid)) return;
    if (this.state === 'done') return;
    this.fail(
      'OLN_PAIR_CROWDED',
      `more than one other machine is pairing on this LAN (${this.peer.addr} and ${from}), so a code could not ` +
        'say which one this is; nothing was allowed. Pair one machine at a time',
    );
  }

  private onReveal(m: Extract<PairMessage, { kind: 'reveal' }>, p: NonNullable<PairSession['peer']>): void {
    if (p.side !== undefined) return; // a resend
    const side: PairSide = { sid: m.sid, cert: m.cert, nonce: m.nonce };
    if (!eq(commitment(side), p.commit)) {
      this.fail(
        'OLN_PAIR_MISMATCH',
        `the certificate ${p.addr} revealed is not the one it committed to: another machine may be interfering; ` +
          'nothing was allowed. Pair again, and compare the code on both screens',
      );
      return;
    }
    let name: string;
    try {
      const cn = new X509Certificate(m.cert).toLegacyObject().subject?.CN;
      name = String((Array.isArray(cn) ? cn[0] : cn) ?? '').replace(/^ollana /, '');
    } catch {
      this.fail('OLN_PAIR_MISMATCH', `${p.addr} sent something that is not a certificate; nothing was allowed`);
      return;
    }
    const id = deviceIdFromDer(m.cert);
    if (id === this.myId) {
      this.fail(
        'OLN_PAIR_MISMATCH',
        `${p.addr} answered with this machine's own certificate: another machine is replaying it; nothing was allowed`,
      );
      return;
    }
    p.side = side;
    p.info = { id, certDer: m.cert, name: name.slice(0, 64), addr: p.addr };
    this.hash = transcript(this.me, side);
    this.state = 'comparing';
    this.armDeadline('the code was not confirmed on both machines');
    this.tick();
    this.o.onCode(shortCode(this.hash), p.info);
  }

  private onConfirm(m: Extract<PairMessage, { kind: 'confirm' }>): void {
    if (this.hash === null || !eq(m.transcript, this.hash)) {
      this.stats.stray++;
      return;
    }
    if (!m.ok) {
      if (this.state === 'done') return;
      this.fail('OLN_PAIR_REFUSED', 'the code was not confirmed on the other machine; nothing was allowed');
      return;
    }
    this.peerOk = true;
    this.maybeDone();
  }

  private maybeDone(): void {
    if (this.state !== 'comparing' || this.myAnswer !== true || !this.peerOk) return;
    this.state = 'done';
    this.clearDeadline();
    // Keep sending the confirm a little: the peer may not have it yet.
    this.deadline = this.o.clock.setTimeout(() => this.clearTimers(), this.o.lingerMs ?? 2_000);
    this.settle?.resolve(this.peer!.info!);
  }

  private tick(): void {
    const p = this.peer;
    const send = (m: PairMessage, addr: string | null): void => this.o.transport.send(encodePairMessage(m), addr);
    if (this.state === 'looking') send({ kind: 'commit', sid: this.me.sid, commit: this.myCommit }, null);
    else if (p !== null && (this.state === 'exchanging' || this.state === 'comparing' || this.state === 'done')) {
      send({ kind: 'commit', sid: this.me.sid, commit: this.myCommit }, p.addr);
      send({ kind: 'reveal', sid: this.me.sid, to: p.sid, cert: this.me.cert, nonce: this.me.nonce }, p.addr);
      if (this.myAnswer !== null) this.sendConfirm();
    }
  }

  private sendConfirm(): void {
    if (this.peer === null || this.hash === null || this.myAnswer === null) return;
    const m: PairMessage = {
      kind: 'confirm',
      sid: this.me.sid,
      to: this.peer.sid,
      ok: this.myAnswer,
      transcript: this.hash,
    };
    this.o.transport.send(encodePairMessage(m), this.peer.addr);
  }

  private armDeadline(why: string): void {
    this.clearDeadline();
    const s = Math.round(this.o.timeoutMs / 1000);
    this.deadline = this.o.clock.setTimeout(
      () =>
        this.fail(
          'OLN_PAIR_TIMEOUT',
          `${why} within ${s}s; nothing was allowed. Run \`ollana pair\` on both machines at the same time, on the same LAN (UDP port 11437 must pass the firewall: \`ollana doctor\`)`,
        ),
      this.o.timeoutMs,
    );
  }

  private fail(
    code: 'OLN_PAIR_TIMEOUT' | 'OLN_PAIR_CROWDED' | 'OLN_PAIR_MISMATCH' | 'OLN_PAIR_REFUSED',
    why: string,
  ): void {
    if (this.state === 'done' || this.state === 'failed') return;
    this.state = 'failed';
    this.clearTimers();
    this.settle?.reject(new OllanaError(code, why));
  }

  private clearDeadline(): void {
    if (this.deadline !== null) this.o.clock.clearTimeout(this.deadline);
    this.deadline = null;
  }

  private clearTimers(): void {
    this.clearDeadline();
    if (this.ticker !== null) this.o.clock.clearInterval(this.ticker);
    this.ticker = null;
  }
}
