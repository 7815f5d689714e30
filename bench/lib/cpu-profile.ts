/**
 * Summarises the .cpuprofile files `node --cpu-prof` writes (one per thread: the supervisor and
 * each proxy worker) into the functions with the most self time, across all threads of a system.
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface HotFunction {
  readonly name: string;
  readonly where: string;
  readonly selfMs: number;
  /** Share of all non-idle samples of the system. */
  readonly percent: number;
}

export interface ProfileSummary {
  readonly system: string;
  readonly files: number;
  readonly busyMs: number;
  readonly top: readonly HotFunction[];
  /** Self time by where the code lives: ollana's src, undici, Node's own JS, GC, native... (% of busy). */
  readonly byOrigin: Readonly<Record<string, number>>;
}

/** Where a frame's code lives, to tell ollana's own cost from the runtime's. */
function originOf(functionName: string, url: string): string {
  if (functionName === '(garbage collector)') return 'GC';
  if (functionName === '(program)') return 'V8/native (program)';
  if (url === '')
    return functionName.startsWith('wasm') || functionName.includes('wasm')
      ? 'undici (llhttp wasm)'
      : 'native (syscalls, C++)';
  if (url.includes('/node_modules/undici/')) return 'undici';
  if (url.includes('/node_modules/')) return 'other packages';
  if (url.startsWith('node:')) return 'Node core JS (http, net, streams)';
  if (url.includes('/src/')) return 'ollana src';
  if (url.startsWith('wasm')) return 'undici (llhttp wasm)';
  return 'other';
}

function shortUrl(url: string): string {
  if (url === '') return '';
  const clean = url.replace(/^file:\/\//, '');
  const nm = clean.lastIndexOf('/node_modules/');
  if (nm >= 0) return clean.slice(nm + '/node_modules/'.length);
  const src = clean.lastIndexOf('/src/');
  if (src >= 0) return clean.slice(src + 1);
  return clean.startsWith('node:') ? clean : clean.split('/').slice(-2).join('/');
}

/** Top `limit` self-time functions over every .cpuprofile in `dir`. */
export function summarizeProfiles(system: string, dir: string, limit = 15): ProfileSummary | null {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  } catch {
    return null;
  }
  if (files.length === 0) return null;
  const self = new Map<string, { name: string; where: string; us: number }>();
  const origins = new Map<string, number>();
  let busyUs = 0;
  for (const f of files) {
    const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile;
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    for (let i = 0; i < p.samples.length; i++) {
      const node = byId.get(p.samples[i]!);
      if (node === undefined) continue;
      const us = p.timeDeltas[i] ?? 0;
      const { functionName, url, lineNumber } = node.callFrame;
      if (functionName === '(idle)') continue;
      busyUs += us;
      const origin = originOf(functionName, url);
      origins.set(origin, (origins.get(origin) ?? 0) + us);
      const where = url === '' ? '' : `${shortUrl(url)}:${lineNumber + 1}`;
      const name = functionName === '' ? '(anonymous)' : functionName;
      const key = `${name}@${where}`;
      const entry = self.get(key) ?? { name, where, us: 0 };
      entry.us += us;
      self.set(key, entry);
    }
  }
  const top = [...self.values()]
    .sort((a, b) => b.us - a.us)
    .slice(0, limit)
    .map((e) => ({
      name: e.name,
      where: e.where,
      selfMs: e.us / 1000,
      percent: busyUs > 0 ? (100 * e.us) / busyUs : 0,
    }));
  const byOrigin = Object.fromEntries(
    [...origins]
      .sort((a, b) => b[1] - a[1])
      .map(([k, us]) => [k, busyUs > 0 ? Math.round((1000 * us) / busyUs) / 10 : 0]),
  );
  return { system, files: files.length, busyMs: busyUs / 1000, top, byOrigin };
}
