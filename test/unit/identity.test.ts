/**
 * The node's identity on real files: made once and stable, private file modes, a key that does not
 * belong to the certificate refused with a message naming both files, and the certificate library
 * kept out of processes that only read an identity.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { X509Certificate, createHash, createPrivateKey } from 'node:crypto';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { connect, createServer } from 'node:tls';
import { OllanaError } from '../../src/errors.ts';
import { deviceIdFromDer } from '../../src/identity/device-id.ts';
import { loadIdentity, loadOrCreateIdentity } from '../../src/identity/identity.ts';
import { removeHome, tempHome } from '../helpers/ollana-process.ts';

const homes: string[] = [];
after(() => {
  for (const h of homes) removeHome(h);
});
function dir(): string {
  const h = tempHome('ollana-identity-');
  homes.push(h);
  return join(h, 'data');
}

const mode = (file: string): number => statSync(file).mode & 0o777;

function identityError(fn: () => Promise<unknown>, pattern: RegExp, code = 'OLN_IDENTITY_BAD'): Promise<void> {
  return assert.rejects(fn, (err: unknown) => {
    assert.ok(err instanceof OllanaError, String(err));
    assert.equal(err.code, code);
    assert.match(err.message, pattern);
    return true;
  });
}

test('made once, then the same identity on every load; node:crypto agrees on the id', async () => {
  const d = dir();
  assert.equal(loadIdentity(d), null);
  const first = await loadOrCreateIdentity(d);
  assert.equal(first.created, true);
  const again = await loadOrCreateIdentity(d);
  assert.equal(again.created, false);
  assert.deepEqual(again.identity, first.identity);
  assert.deepEqual(loadIdentity(d), first.identity);

  const { identity } = first;
  assert.equal(identity.certFile, join(d, 'cert.pem'));
  assert.equal(identity.keyFile, join(d, 'key.pem'));
  const cert = new X509Certificate(readFileSync(identity.certFile));
  assert.equal(deviceIdFromDer(cert.raw), identity.id);
  assert.equal(identity.fingerprint, cert.fingerprint256.replace(/:/g, '').toLowerCase());
  assert.equal(identity.fingerprint, createHash('sha256').update(cert.raw).digest('hex'));
  assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(identity.keyFile))));
  assert.equal(cert.subject, `CN=ollana ${hostname()}`);
  assert.equal(identity.name, hostname());
  assert.equal(cert.publicKey.asymmetricKeyType, 'ec');
  assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.equal(cert.ca, false);
  assert.equal(cert.issuer, cert.subject, 'self-signed');
  assert.ok(cert.verify(cert.publicKey));
  const years = (Date.parse(cert.validTo) - Date.parse(cert.validFrom)) / (365.25 * 86_400_000);
  assert.ok(years > 19.9 && years < 20.1, `valid ${years} years`);
  assert.ok(Date.parse(cert.validFrom) <= Date.now());
});

test("an identity works on both ends of a mutual TLS handshake (loopback), each trusting the other's cert", async (t) => {
  const server = (await loadOrCreateIdentity(dir())).identity;
  const client = (await loadOrCreateIdentity(dir())).identity;
  const srv = createServer(
    { cert: server.certPem, key: server.keyPem, ca: [client.certPem], requestCert: true, rejectUnauthorized: true },
    (socket) => socket.end(`peer ${deviceIdFromDer(socket.getPeerX509Certificate()!.raw)}`),
  );
  t.after(() => srv.close());
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const socket = connect({
    host: '127.0.0.1',
    port: (srv.address() as { port: number }).port,
    cert: client.certPem,
    key: client.keyPem,
    ca: [server.certPem],
    checkServerIdentity: () => undefined,
  });
  t.after(() => socket.destroy());
  await once(socket, 'secureConnect');
  assert.equal(socket.authorized, true, String(socket.authorizationError));
  assert.equal(deviceIdFromDer(socket.getPeerX509Certificate()!.raw), server.id);
  const [reply] = (await once(socket, 'data')) as [Buffer];
  assert.equal(reply.toString(), `peer ${client.id}`);
});

test('file modes: data dir 0700 (an existing looser one tightened), key 0600', async () => {
  const d = dir();
  mkdirSync(d, { mode: 0o755 });
  chmodSync(d, 0o755);
  const { identity } = await loadOrCreateIdentity(d);
  assert.equal(mode(d), 0o700);
  assert.equal(mode(identity.keyFile), 0o600);
  chmodSync(identity.keyFile, 0o644);
  chmodSync(d, 0o750);
  await loadOrCreateIdentity(d);
  assert.equal(mode(identity.keyFile), 0o600);
  assert.equal(mode(d), 0o700);
});

test('two identities are different devices, and a key from another identity is refused', async () => {
  const a = await loadOrCreateIdentity(dir());
  const b = await loadOrCreateIdentity(dir());
  assert.notEqual(a.identity.id, b.identity.id);
  copyFileSync(b.identity.keyFile, a.identity.keyFile);
  const d = join(a.identity.keyFile, '..');
  const pattern = new RegExp(
    `${a.identity.keyFile} is not the private key of ${a.identity.certFile}; .*move both away ` +
      "to make a new identity \\(that changes this node's device id",
  );
  await identityError(() => loadOrCreateIdentity(d), pattern);
  assert.throws(
    () => loadIdentity(d),
    (err: unknown) => err instanceof OllanaError && err.exitCode === 12,
  );
});

test('a certificate without its key, or a broken file, is refused rather than replaced', async () => {
  const { identity } = await loadOrCreateIdentity(dir());
  const d = join(identity.certFile, '..');
  const cert = readFileSync(identity.certFile);
  rmSync(identity.keyFile);
  await identityError(() => loadOrCreateIdentity(d), /cert\.pem is there but .*key\.pem is missing/);
  assert.deepEqual(readFileSync(identity.certFile), cert, 'the certificate is left alone');
  writeFileSync(identity.keyFile, identity.keyPem);
  writeFileSync(identity.certFile, 'not a certificate\n');
  await identityError(() => loadOrCreateIdentity(d), /cert\.pem is not a PEM certificate/);
  writeFileSync(identity.certFile, cert);
  writeFileSync(identity.keyFile, '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n');
  await identityError(() => loadOrCreateIdentity(d), /key\.pem is not a PEM private key/);
});

test('a key left alone by a creation that died is replaced; one being written is waited for', async () => {
  const d = dir();
  mkdirSync(d, { recursive: true });
  const orphan = join(d, 'key.pem');
  writeFileSync(orphan, 'left over\n', { mode: 0o600 });
  const old = new Date(Date.now() - 60_000);
  utimesSync(orphan, old, old);
  const made = await loadOrCreateIdentity(d);
  assert.equal(made.created, true);
  assert.notEqual(readFileSync(orphan, 'utf8'), 'left over\n');

  // A fresh key without a certificate is another process's creation under way: wait for its cert.
  const d3 = dir();
  mkdirSync(d3, { recursive: true });
  writeFileSync(join(d3, 'key.pem'), made.identity.keyPem, { mode: 0o600 });
  const waiting = loadOrCreateIdentity(d3);
  setTimeout(() => writeFileSync(join(d3, 'cert.pem'), made.identity.certPem), 300);
  const joined = await waiting;
  assert.equal(joined.created, false);
  assert.equal(joined.identity.id, made.identity.id);

  // Several creators at once end up with one identity.
  const d2 = dir();
  const all = await Promise.all([1, 2, 3, 4].map(() => loadOrCreateIdentity(d2)));
  assert.equal(new Set(all.map((r) => r.identity.id)).size, 1);
  assert.equal(all.filter((r) => r.created).length, 1);
});

test('a data directory that cannot be made: OLN_DIR_UNWRITABLE naming it', async () => {
  const h = tempHome('ollana-identity-');
  homes.push(h);
  writeFileSync(join(h, 'file'), '');
  await identityError(
    () => loadOrCreateIdentity(join(h, 'file', 'data')),
    /cannot use the data directory .*file\/data: .*choose another data directory with --data-dir or OLLANA_HOME/,
    'OLN_DIR_UNWRITABLE',
  );
});

test('reading an identity does not load the certificate library; making one does', async () => {
  const d = dir();
  const url = new URL('../../src/identity/identity.ts', import.meta.url).href;
  // reflect-metadata, which @peculiar/x509 needs, patches the global Reflect: a visible trace.
  const probe = (fn: string): string =>
    execFileSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const m = await import(${JSON.stringify(url)}); const r = await m.${fn}(${JSON.stringify(d)});
     process.stdout.write(JSON.stringify({ id: r?.identity?.id ?? r?.id, loaded: typeof Reflect.getMetadata }));`,
      ],
      { encoding: 'utf8' },
    );
  const made = JSON.parse(probe('loadOrCreateIdentity')) as { id: string; loaded: string };
  assert.equal(made.loaded, 'function');
  const read = JSON.parse(probe('loadOrCreateIdentity')) as { id: string; loaded: string };
  assert.deepEqual(read, { id: made.id, loaded: 'undefined' });
  const plain = JSON.parse(probe('loadIdentity')) as { id: string; loaded: string };
  assert.deepEqual(plain, { id: made.id, loaded: 'undefined' });
});
