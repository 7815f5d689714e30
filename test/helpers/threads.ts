/**
 * A process's threads by name, from /proc/PID/task/TID/comm (Linux). Node names a worker thread after
 * its `name` option: the supervisor's actors are "discovery" and "election", piscina's proxy workers
 * the default "WorkerThread".
 */
import { readdirSync, readFileSync } from 'node:fs';

/** The names of the process's threads, sorted. */
export function threadNames(pid: number): string[] {
  return readdirSync(`/proc/${pid}/task`)
    .flatMap((tid) => {
      try {
        return [readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()];
      } catch {
        return []; // a thread that ended between the listing and the read
      }
    })
    .sort();
}
