/**
 * The election and conflict actor: keeps the membership view, elects the leader, and detects conflicts.
 *
 * Election is deterministic: the leader is the live, healthy server node with the lowest id. Every
 * node computes the same answer from the same membership, so there are no votes to lose; liveness
 * comes from discovery's heartbeats (a leader whose heartbeats stop is gone after the dead-after time,
 * which is its lease). A change of leader starts a new term (one above any term seen), so a node that
 * comes back from a partition claiming an old leadership is recognised and yields.
 *
 * Conflicts it reports: the same id from two processes (a cloned identity: two boots of one id heard
 * alternately), and two leaders claimed at once (a healed partition; resolved by the rule above).
 */
import type { Clock } from '../clock.ts';
import type { Logger } from '../log.ts';
import type { Conflict, ElectionToSupervisor, ElectionView, SupervisorToElection } from '../protocol/messages.ts';
import type { PeerInfo } from '../protocol/lan.ts';

export interface ElectionDeps {
  readonly send: (msg: ElectionToSupervisor) => void;
  /** the time of membership and conflict records (tick() is driven by the caller) */
  readonly clock: Clock;
  readonly log: Logger;
  /** How long a conflict stays reported after it was last seen. */
  readonly conflictTtlMs: number;
}

interface BootRecord {
  boot: string;
  addr: string;
  at: number;
}

const MAX_REMEMBERED = 1024;
/** Conflicts reported at once at most: each is a warning and a line in status. */
const MAX_CONFLICTS = 64;

export class ElectionActor {
  readonly #deps: ElectionDeps;
  #self = { id: '', boot: '', role: 'client' as 'server' | 'client', healthy: false };
  readonly #peers = new Map<string, PeerInfo>();
  /** Recent boots per id, newest last, for clone detection. */
  readonly #boots = new Map<string, BootRecord[]>();
  readonly #conflicts = new Map<string, Conflict & { lastSeen: number }>();
  /** Boots ever heard per id (bounded), to tell a healed partition from a fresh start. */
  readonly #everSeen = new Map<string, Set<string>>();
  #term = 0;
  #leader = '';
  #lastView = '';

  constructor(deps: ElectionDeps) {
    this.#deps = deps;
  }

  handle(msg: SupervisorToElection): void {
    switch (msg.type) {
      case 'election.self':
        this.#self = { id: msg.id, boot: msg.boot, role: msg.role, healthy: msg.healthy };
        break;
      case 'peer.seen':
        this.#onPeer(msg.peer);
        break;
      case 'peer.gone':
        this.#peers.delete(msg.id);
        break;
      case 'peer.clone':
        if (msg.id !== this.#self.id) {
          const other = this.#peers.get(msg.id)?.addr ?? 'another address';
          this.#conflict(
            'duplicate-id',
            msg.id,
            `two ollana nodes (at ${other} and ${msg.addr}) use the same id ${msg.id}: a cloned data directory or ` +
              'machine image; give one of them a fresh identity and restart it',
            [other, msg.addr],
          );
          break;
        }
        this.#conflict(
          'duplicate-id',
          this.#self.id,
          `another ollana (at ${msg.addr}) uses this node's id ${this.#self.id}: a cloned data directory or machine image; ` +
            "give one of them a fresh identity (remove its data directory's identity) and restart it",
          ['self', msg.addr],
        );
        break;
      default: {
        const never: never = msg;
        throw new Error(`unhandled message ${JSON.stringify(never)}`);
      }
    }
    this.#recompute();
  }

  /** Periodic: expires old conflicts and boots, and re-announces the view if that changed it. */
  tick(): void {
    const now = this.#deps.clock.now();
    // Boots older than the conflict window can no longer make a conflict: forget them, and the ids of
    // peers gone meanwhile with them, so a stream of short-lived ids leaves nothing behind.
    for (const [id, boots] of this.#boots) {
      const kept = boots.filter((b) => now - b.at < this.#deps.conflictTtlMs);
      if (kept.length === 0) this.#boots.delete(id);
      else if (kept.length !== boots.length) this.#boots.set(id, kept);
    }
    for (const [key, c] of this.#conflicts) {
      if (now - c.lastSeen > this.#deps.conflictTtlMs) {
        this.#conflicts.delete(key);
        this.#deps.log.info({ conflict: c.kind, id: c.id }, `conflict cleared: ${c.kind} for ${c.id}`);
      }
    }
    this.#recompute();
  }

  /** How many ids the clone detection remembers boots of (bounded by tick's pruning). */
  get rememberedBoots(): number {
    return this.#boots.size;
  }

  view(): ElectionView {
    return {
      term: this.#term,
      leader: this.#leader,
      servers: this.#servers(),
      conflicts: [...this.#conflicts.values()].map(({ lastSeen: _lastSeen, ...c }) => c),
    };
  }

  #onPeer(peer: PeerInfo): void {
    const now = this.#deps.clock.now();
    // A boot heard before, now back: a partition healed (or a link came back). A boot never heard
    // before is a node that just started, and claims leadership only until it hears the others.
    const returning = this.#everSeen.get(peer.id)?.has(peer.boot) === true && !this.#peers.has(peer.id);
    this.#remember(peer);
    const boots = this.#boots.get(peer.id) ?? [];
    const prev = boots.at(-1);
    if (prev === undefined || prev.boot !== peer.boot) {
      // A boot that had been replaced is heard again: two processes share this id. (A restart only
      // ever moves forward to a new boot.)
      const returning = boots.find((b) => b.boot === peer.boot && now - b.at < this.#deps.conflictTtlMs);
      if (returning !== undefined && prev !== undefined) {
        this.#conflict(
          'duplicate-id',
          peer.id,
          `two ollana nodes (at ${prev.addr} and ${peer.addr}) use the same id ${peer.id}: a cloned data directory or ` +
            'machine image; give one of them a fresh identity and restart it',
          [prev.addr, peer.addr],
        );
      }
      const kept = boots.filter((b) => b.boot !== peer.boot && now - b.at < this.#deps.conflictTtlMs);
      kept.push({ boot: peer.boot, addr: peer.addr, at: now });
      this.#boots.set(peer.id, kept.slice(-4));
    } else {
      prev.at = now;
    }
    this.#peers.set(peer.id, peer);

    // Two leaders: a server back from a partition claims leadership while another (or this node)
    // claims it too.
    if (returning && peer.role === 'server' && peer.leader === peer.id) {
      const rival =
        this.#leader !== '' &&
        this.#leader !== peer.id &&
        (this.#leader === this.#self.id || this.#peers.get(this.#leader)?.leader === this.#leader);
      if (rival) {
        // biome-ignore lint/complexity/useMathMinMax: device ids are strings, compared as strings; Math.min would make NaN
        const winner = peer.id < this.#leader ? peer.id : this.#leader;
        this.#conflict(
          'two-leaders',
          `${[peer.id, this.#leader].sort().join('/')}`,
          `two leaders after a partition healed: ${peer.id} (term ${peer.term}) and ${this.#leader} (term ${this.#term}); ` +
            `${winner} stays leader`,
          [peer.addr],
        );
      }
    }
    if (peer.term > this.#term && peer.leader !== '' && peer.leader === this.#computeLeader()) this.#term = peer.term;
  }

  #remember(peer: PeerInfo): void {
    let boots = this.#everSeen.get(peer.id);
    if (boots === undefined) {
      if (this.#everSeen.size >= MAX_REMEMBERED) this.#everSeen.delete(this.#everSeen.keys().next().value!);
      boots = new Set();
      this.#everSeen.set(peer.id, boots);
    }
    if (boots.size >= 8) boots.delete(boots.values().next().value!);
    boots.add(peer.boot);
  }

  #conflict(kind: Conflict['kind'], id: string, detail: string, addrs: string[]): void {
    const key = `${kind}:${id}`;
    const now = this.#deps.clock.now();
    const known = this.#conflicts.get(key);
    if (known) {
      known.lastSeen = now;
      return;
    }
    if (this.#conflicts.size >= MAX_CONFLICTS) return;
    this.#conflicts.set(key, { kind, id, detail, addrs, since: now, lastSeen: now });
    this.#deps.log.warn({ conflict: kind, id, addrs }, detail);
  }

  #servers(): string[] {
    const ids = [...this.#peers.values()].filter((p) => p.role === 'server').map((p) => p.id);
    if (this.#self.role === 'server' && this.#self.healthy && this.#self.id !== '') ids.push(this.#self.id);
    return [...new Set(ids)].sort();
  }

  #computeLeader(): string {
    return this.#servers()[0] ?? '';
  }

  #recompute(): void {
    const leader = this.#computeLeader();
    if (leader !== this.#leader) {
      const maxSeen = Math.max(this.#term, ...[...this.#peers.values()].map((p) => p.term));
      this.#term = maxSeen + 1;
      const was = this.#leader;
      this.#leader = leader;
      if (leader === '') this.#deps.log.info({ term: this.#term, was }, 'no server node is left: no leader');
      else
        this.#deps.log.info(
          { term: this.#term, leader, was: was || null },
          leader === this.#self.id
            ? `this node is the leader (term ${this.#term})`
            : `leader is ${leader} (term ${this.#term})`,
        );
    }
    const view = this.view();
    const text = JSON.stringify(view);
    if (text !== this.#lastView) {
      this.#lastView = text;
      this.#deps.send({ type: 'election.view', view });
    }
  }
}
