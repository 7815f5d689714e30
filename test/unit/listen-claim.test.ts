/** The listen claim's diagnosis of a taken port, with fake probes (no socket is opened). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { claimListen, isOwnAddress, type PortProbe } from '../../src/actors/listen-claim.ts';
import { DEFAULTS, type ServeConfig } from '../../src/config/defaults.ts';
import { OllanaError } from '../../src/errors.ts';

function taken(there: { ollana?: boolean; ollanaTls?: boolean; ollama?: boolean }): PortProbe {
  return {
    claimPort: (host, port, flag) =>
      Promise.reject(
        new OllanaError(
          'OLN_PORT_IN_USE',
          `port ${port} on ${host} is already in use by another program; stop it, or choose another address with ${flag}`,
          { details: { host, port, holder: 'program' } },
        ),
      ),
    ollana: () => Promise.resolve(there.ollana === true),
    ollanaTls: () => Promise.resolve(there.ollanaTls === true),
    ollama: () => Promise.resolve(there.ollama === true ? { ok: true, version: '0.9.0' } : { ok: false, reason: 'no' }),
  };
}

const config = (c: Partial<ServeConfig> = {}): ServeConfig => ({ ...DEFAULTS, ...c });

test('a free address is claimed as given, port 0 as the one the system picked', async () => {
  const free: PortProbe = { ...taken({}), claimPort: (_h, port) => Promise.resolve(port === 0 ? 40_123 : port) };
  assert.deepEqual(await claimListen(config(), 'server', free), { host: '0.0.0.0', port: 11435 });
  assert.deepEqual(await claimListen(config(), 'client', free), { host: '127.0.0.1', port: 11434 });
  assert.deepEqual(await claimListen(config({ listen: '127.0.0.1:0' }), 'client', free), {
    host: '127.0.0.1',
    port: 40_123,
  });
});

test('a taken port names what holds it: another ollana (plain or TLS), an Ollama (client node), or another program', async () => {
  await assert.rejects(claimListen(config(), 'server', taken({ ollanaTls: true })), {
    code: 'OLN_PORT_IN_USE',
    details: { host: '0.0.0.0', port: 11435, holder: 'ollana' },
  });
  await assert.rejects(claimListen(config(), 'client', taken({ ollana: true })), {
    code: 'OLN_PORT_IN_USE',
    details: { host: '127.0.0.1', port: 11434, holder: 'ollana' },
  });
  await assert.rejects(claimListen(config(), 'client', taken({ ollama: true })), {
    code: 'OLN_OLLAMA_ON_PORT',
    details: { host: '127.0.0.1', port: 11434 },
  });
  await assert.rejects(
    claimListen(config(), 'server', taken({ ollama: true })),
    { code: 'OLN_PORT_IN_USE', details: { host: '0.0.0.0', port: 11435, holder: 'program' } },
    'a server node does not ask for an Ollama there',
  );
});

test('--insecure-http is refused on a non-loopback address, before any port is claimed', async () => {
  await assert.rejects(claimListen(config({ insecureHttp: true }), 'server', taken({})), {
    code: 'OLN_BAD_FLAG',
    details: { flag: '--insecure-http', host: '0.0.0.0', port: 11435 },
  });
  await assert.rejects(claimListen(config({ listen: 'nonsense' }), 'server', taken({})), { code: 'OLN_BAD_FLAG' });
});

test("isOwnAddress: the Ollama URL is this node's own listener (a client node must not take itself for an Ollama)", () => {
  assert.equal(isOwnAddress('http://127.0.0.1:11434', { host: '127.0.0.1', port: 11434 }), true);
  assert.equal(isOwnAddress('http://localhost:11434', { host: '0.0.0.0', port: 11434 }), true);
  assert.equal(isOwnAddress('http://127.0.0.1:11500', { host: '127.0.0.1', port: 11434 }), false);
  assert.equal(isOwnAddress('http://[::1]:11434', { host: '::1', port: 11434 }), true);
});
