/** Check: the identity files (cert.pem, key.pem) in the data directory, and their permissions. */
import { type CheckResult, result } from './types.ts';

/** What stat said about one file (null: it does not exist). */
export interface FileFacts {
  readonly mode: number;
  readonly uid: number;
}

export interface IdentityFacts {
  readonly dataDir: string;
  readonly dir: FileFacts | null;
  readonly cert: FileFacts | null;
  readonly key: FileFacts | null;
  /** the device id the certificate hashes to; null when it has none or it does not load */
  readonly id: string | null;
  /** why the files do not load (OllanaError message), when they do not */
  readonly problem: string | null;
  /** this process's uid; null where there are no uids (Windows) */
  readonly uid: number | null;
}

export function checkIdentity(f: IdentityFacts): CheckResult<'identity'> {
  const details = { dataDir: f.dataDir, id: f.id, keyMode: f.key === null ? null : (f.key.mode & 0o777).toString(8) };
  if (f.dir === null || (f.cert === null && f.key === null)) {
    return result(
      'identity',
      'warn',
      `no identity in ${f.dataDir} yet: \`ollana device show\` (or the first \`ollana serve\`) makes one`,
      details,
    );
  }
  if (f.problem !== null) {
    return result('identity', 'fail', `identity in ${f.dataDir} does not load: ${f.problem}`, details);
  }
  const wrong: string[] = [];
  if (f.key !== null && (f.key.mode & 0o077) !== 0) {
    wrong.push(
      `key.pem is readable by others (mode ${(f.key.mode & 0o777).toString(8)}): \`chmod 600 ${f.dataDir}/key.pem\``,
    );
  }
  if ((f.dir.mode & 0o077) !== 0) {
    wrong.push(
      `the data directory is open to others (mode ${(f.dir.mode & 0o777).toString(8)}): \`chmod 700 ${f.dataDir}\``,
    );
  }
  if (f.uid !== null) {
    for (const [name, facts] of [
      ['the data directory', f.dir],
      ['cert.pem', f.cert],
      ['key.pem', f.key],
    ] as const) {
      if (facts !== null && facts.uid !== f.uid) {
        wrong.push(
          `${name} belongs to uid ${facts.uid}, not this user (${f.uid}): run ollana as its owner, or \`chown\` it`,
        );
      }
    }
  }
  if (wrong.length > 0) {
    return result('identity', 'fail', `identity ${f.id ?? ''} in ${f.dataDir}: ${wrong.join('; ')}`, details);
  }
  return result(
    'identity',
    'ok',
    `identity: device id ${f.id} in ${f.dataDir}, key readable by this user only`,
    details,
  );
}
