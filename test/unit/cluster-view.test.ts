/**
 * ClusterView in-process: model lists come from a fake connector and time from a FakeClock, so the
 * fetch pacing (2 s, doubling after failures to 16 s), the refusal of addresses a client node must
 * not connect to, and the cap on server nodes are checked without a socket, thread or child process.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { pino } from 'pino';
import { ClusterView, MAX_SERVERS, type TagsConnection, type TagsConnector } from '../../src/actors/cluster.ts';
import type { TlsIdentity } from '../../src/net/tls.ts';
import type { PeerInfo } from '../../src/protocol/lan.ts';
import { FakeClock } from '../helpers/fake-clock.ts';

interface Line {
  level: string;
  msg: string;
}

function sink(): { log: pino.Logger; lines: Line[] } {
  const lines: Line[] = [];
  const dest = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(JSON.parse(chunk.toString()) as Line);
      done();
    },
  });
  return { log: pino({ level: 'debug', formatters: { level: (label) => ({ level: label }) } }, dest), lines };
}

const SELF = {} as TlsIdentity; // used only by the real (undici) connector

function server(id: string, addr: string, models = 'd1', port = 11435): PeerInfo {
  return {
    id,
    boot: 'b1',
    role: 'server',
    addr,
    port,
    fp: `fp-${id}`,
    load: { inFlight: 0, workers: 2 },
    models,
    term: 1,
    leader: '',
    draining: false,
    lastSeen: 0,
  };
}

/** A connector whose fetches the test answers: each tags() call is recorded with the time and waits for `answer`. */
class FakeTags {
  readonly fetches: { origin: string; at: number; answer: (models: string[] | Error) => void }[] = [];
  readonly opened: string[] = [];
  readonly closed: string[] = [];
  readonly #clock: FakeClock;

  constructor(clock: FakeClock) {
    this.#clock = clock;
  }

  readonly connector = (): Promise<TagsConnector> =>
    Promise.resolve((origin: string, id: string): TagsConnection => {
      this.opened.push(id);
      return {
        tags: () =>
          new Promise<string[]>((resolve, reject) => {
            this.fetches.push({
              origin,
              at: this.#clock.now(),
              answer: (m) => (m instanceof Error ? reject(m) : resolve(m)),
            });
          }),
        close: () => {
          this.closed.push(id);
          return Promise.resolve();
        },
      };
    });
}

async function settle(): Promise<void> {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
}

function view(clock: FakeClock, own: ReadonlySet<string> = new Set(['10.0.0.1'])) {
  const { log, lines } = sink();
  const tags = new FakeTags(clock);
  let changes = 0;
  const cluster = new ClusterView(
    log,
    SELF,
    () => {
      changes++;
    },
    { clock, ownAddresses: () => own, connector: tags.connector },
  );
  return { cluster, tags, lines, changes: () => changes };
}

test('model lists are fetched at most every 2 s, and after failures every 4, 8, then 16 s; a success goes back to 2 s', async () => {
  const clock = new FakeClock();
  const t0 = clock.now();
  const { cluster, tags } = view(clock);
  /** Hears the server (with `digest`) every 100 ms until a fetch starts; returns when it started, relative to t0. */
  const nextFetch = async (digest: string): Promise<number> => {
    const before = tags.fetches.length;
    for (let i = 0; i < 400 && tags.fetches.length === before; i++) {
      cluster.seen(server('A', '10.0.0.2', digest));
      await settle();
      if (tags.fetches.length === before) clock.advance(100);
    }
    assert.equal(tags.fetches.length, before + 1, 'a fetch started');
    return tags.fetches.at(-1)!.at - t0;
  };
  const starts: number[] = [await nextFetch('d1')];
  tags.fetches.at(-1)!.answer(['llama3.2']);
  await settle();
  assert.deepEqual(cluster.models('A'), ['llama3.2']);
  clock.advance(100);
  starts.push(await nextFetch('d2')); // models changed: fetched again, 2 s after the last fetch
  for (let i = 0; i < 4; i++) {
    tags.fetches.at(-1)!.answer(new Error('connection refused'));
    await settle();
    starts.push(await nextFetch('d2'));
  }
  tags.fetches.at(-1)!.answer(['qwen']);
  await settle();
  assert.deepEqual(cluster.models('A'), ['qwen']);
  starts.push(await nextFetch('d3'));
  const gaps = starts.slice(1).map((s, i) => s - starts[i]!);
  assert.deepEqual(gaps, [2_000, 4_000, 8_000, 16_000, 16_000, 2_000]);
  assert.deepEqual(tags.opened, ['A'], 'one kept connection for all of the fetches');
  cluster.close();
});

test("a server node heard from this machine's address, loopback, multicast or broadcast is not used, and said so once a minute", async () => {
  const clock = new FakeClock();
  const { cluster, tags, lines } = view(clock, new Set(['10.0.0.1', '10.0.0.255']));
  for (const [i, addr] of [
    '10.0.0.1',
    '10.0.0.255',
    '127.0.0.1',
    '::1',
    '0.0.0.0',
    '224.0.0.5',
    '255.255.255.255',
    '::ffff:127.0.0.1',
  ].entries()) {
    cluster.seen(server(`X${i}`, addr));
    await settle();
    assert.deepEqual(cluster.upstreams(), [], `${addr} is not used`);
  }
  assert.equal(tags.fetches.length, 0, 'nothing connected to');
  const warns = (): Line[] => lines.filter((l) => l.level === 'warn' && /was heard from .* not used/.test(l.msg));
  assert.equal(warns().length, 1, 'one warning, the rest at debug');
  clock.advance(60_000);
  cluster.seen(server('X', '127.0.0.1'));
  assert.equal(warns().length, 2, 'said again a minute later');

  // A known server that is then heard from a refused address is dropped.
  cluster.seen(server('B', '10.0.0.7'));
  await settle();
  assert.equal(cluster.upstreams().length, 1);
  assert.deepEqual(tags.opened, ['B']);
  cluster.seen(server('B', '127.0.0.1'));
  assert.deepEqual(cluster.upstreams(), []);
  assert.deepEqual(tags.closed, ['B']);
});

test(`at most ${MAX_SERVERS} server nodes are used; past that one warning a minute, and a place that frees up is taken`, async () => {
  const clock = new FakeClock();
  const { cluster, lines } = view(clock);
  for (let i = 0; i < MAX_SERVERS + 8; i++) cluster.seen(server(`S${String(i).padStart(2, '0')}`, `10.0.1.${i + 1}`));
  await settle();
  assert.equal(cluster.upstreams().length, MAX_SERVERS);
  assert.ok(!cluster.upstreams().some((u) => u.id === `S${MAX_SERVERS}`));
  const full = lines.filter((l) => l.level === 'warn' && /server nodes are in use already/.test(l.msg));
  assert.equal(full.length, 1, 'one warning for the 8 turned away');
  cluster.gone('S00', 'bye');
  cluster.seen(server(`S${MAX_SERVERS}`, `10.0.1.${MAX_SERVERS + 1}`));
  assert.equal(cluster.upstreams().length, MAX_SERVERS);
  assert.ok(cluster.upstreams().some((u) => u.id === `S${MAX_SERVERS}`));
  cluster.close();
});
