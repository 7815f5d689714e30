/**
 * A node with --discovery off hears no peer: it runs neither a discovery nor an election thread (each
 * would be a V8 isolate of its own), and still reports what the election would: a server node whose
 * Ollama answers is its own leader, a new term when that changes, no leader on a client node. Threads
 * are told by their names in /proc (test/helpers/threads.ts); test/netns/cluster.test.ts sees the
 * "discovery" and "election" threads of a node with discovery on.
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { startEmulator, type Emulator } from '../../testkit/ollama-emulator.ts';
import {
  freePort,
  removeHome,
  runCli,
  type Started,
  startServerNode,
  startClientNode,
} from '../helpers/ollana-process.ts';
import { json, raw } from '../helpers/http.ts';
import { threadNames } from '../helpers/threads.ts';

const nodes: Started[] = [];
const emulators: Emulator[] = [];
after(async () => {
  for (const n of nodes) {
    await n.stop();
    removeHome(n.home);
  }
  for (const e of emulators) await e.close();
});

interface Status {
  ollana: { pid: number };
  node: { id: string };
  role: string;
  ollama: { healthy: boolean } | null;
  cluster: { term: number; leader: string; isLeader: boolean; servers: string[]; conflicts: unknown[] };
  discovery: unknown;
  workers: { live: number };
}

async function status(node: Started): Promise<Status> {
  return json(await raw(`${node.url}/ollana/v1/status`)) as Status;
}

/** Polls the node's status every 100 ms until `ok` holds, at most 15 s; fails saying what was missing. */
async function statusUntil(node: Started, what: string, ok: (s: Status) => boolean): Promise<Status> {
  const deadline = Date.now() + 15_000;
  let last: Status | null = null;
  while (Date.now() < deadline) {
    last = await status(node);
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`the node's status never showed ${what}; last: ${JSON.stringify(last?.cluster)}`);
}

test('a server node with --discovery off runs no election thread and is its own leader', {
  timeout: 90_000,
}, async () => {
  const emuPort = await freePort();
  let emu = await startEmulator({ port: emuPort });
  emulators.push(emu);
  const node = await startServerNode(emu.url, { workers: 2, args: ['--discovery', 'off'] });
  nodes.push(node);
  const first = await statusUntil(
    node,
    'two live workers and this node leader',
    (s) => s.workers.live === 2 && s.cluster.isLeader,
  );
  const threads = threadNames(first.ollana.pid);
  assert.equal(
    threads.filter((t) => t === 'WorkerThread').length,
    2,
    `the two proxy workers, by name: ${threads.join(', ')}`,
  );
  assert.ok(!threads.includes('election') && !threads.includes('discovery'), `threads: ${threads.join(', ')}`);

  const id = first.node.id;
  assert.equal(first.discovery, null);
  assert.deepEqual(first.cluster, { term: 1, leader: id, isLeader: true, servers: [id], conflicts: [] });
  const human = await runCli(['status', '--listen', node.url.replace('http://', '')], { home: node.home });
  assert.equal(human.code, 0, human.stderr);
  assert.ok(human.stdout.includes(`cluster: leader ${id} (this node), term 1, 1 server node(s)`), human.stdout);
  assert.ok(human.stdout.includes('peers: discovery is off'), human.stdout);

  // Ollama goes away: no healthy server is left, so no leader; it comes back: leader again, a new term.
  await emu.close();
  emulators.splice(emulators.indexOf(emu), 1);
  // Health and the election's view change one after the other: wait for both, then check the whole.
  const down = await statusUntil(
    node,
    'the local Ollama down and no leader',
    (s) => s.ollama?.healthy === false && s.cluster.leader === '',
  );
  assert.deepEqual(down.cluster, { term: 2, leader: '', isLeader: false, servers: [], conflicts: [] });
  emu = await startEmulator({ port: emuPort });
  emulators.push(emu);
  const back = await statusUntil(
    node,
    'the local Ollama back and this node leader',
    (s) => s.ollama?.healthy === true && s.cluster.isLeader,
  );
  assert.deepEqual(back.cluster, { term: 3, leader: id, isLeader: true, servers: [id], conflicts: [] });
  assert.ok(!threadNames(back.ollana.pid).includes('election'), 'no election thread started later');
  // The log line may reach the pipe after the status showed the new term.
  await node.waitFor(
    (l) => l.actor === 'election' && l.msg === 'this node is the leader (term 3)',
    15_000,
    'the third term logged',
  );
  assert.deepEqual(
    node.lines.filter((l) => l.actor === 'election').map((l) => l.msg),
    ['this node is the leader (term 1)', 'no server node is left: no leader', 'this node is the leader (term 3)'],
  );
});

test('a client node with --discovery off runs no election thread and knows no leader', {
  timeout: 60_000,
}, async () => {
  const node = await startClientNode({ workers: 1, args: ['--discovery', 'off'] });
  nodes.push(node);
  const s = await statusUntil(node, 'one live worker', (x) => x.workers.live === 1);
  assert.equal(s.role, 'client');
  assert.deepEqual(s.cluster, { term: 0, leader: '', isLeader: false, servers: [], conflicts: [] });
  const threads = threadNames(s.ollana.pid);
  assert.ok(
    threads.includes('WorkerThread') && !threads.includes('election') && !threads.includes('discovery'),
    `threads: ${threads.join(', ')}`,
  );
});
