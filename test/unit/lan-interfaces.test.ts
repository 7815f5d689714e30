/**
 * Discovery's interface scan and broadcast addresses against os.networkInterfaces() tables of macOS
 * and Windows (test/fixtures/network-interfaces/, in the shape Node 24 gives there), run on Linux.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { networkInterfaces } from 'node:os';
import { test } from 'node:test';
import { directedBroadcast, lanInterfaces } from '../../src/net/lan-interfaces.ts';

type Table = ReturnType<typeof networkInterfaces>;

function fixture(os: 'darwin' | 'win32'): Table {
  return JSON.parse(
    readFileSync(new URL(`../fixtures/network-interfaces/${os}.json`, import.meta.url), 'utf8'),
  ) as Table;
}

const withBroadcast = (table: Table) =>
  lanInterfaces(table).map((i) => ({ address: i.address, broadcast: directedBroadcast(i) }));

test('macOS: en0, a VPN tunnel (utun, /32: no broadcast), Internet Sharing (bridge100), a self-assigned link; IPv6-only awdl0, llw0 and utun skipped', () => {
  assert.deepEqual(withBroadcast(fixture('darwin')), [
    { address: '192.168.1.23', broadcast: '192.168.1.255' },
    { address: '10.8.0.6', broadcast: null },
    { address: '192.168.2.1', broadcast: '192.168.2.255' },
    { address: '169.254.48.211', broadcast: '169.254.255.255' },
  ]);
});

test("Windows: 'Ethernet', 'Wi-Fi', 'vEthernet (WSL)'; the loopback pseudo-interface skipped, a repeated address once, an invalid netmask (cidr null) without broadcast", () => {
  assert.deepEqual(withBroadcast(fixture('win32')), [
    { address: '10.0.0.15', broadcast: '10.0.0.255' },
    { address: '192.168.1.50', broadcast: '192.168.1.255' },
    { address: '172.28.16.1', broadcast: '172.28.31.255' },
    { address: '192.168.56.1', broadcast: null },
  ]);
});

test('directed broadcast: none for /31, /32, a non-contiguous or unparsable netmask', () => {
  assert.equal(directedBroadcast({ address: '10.1.2.3', netmask: '255.255.255.254' }), null);
  assert.equal(directedBroadcast({ address: '10.1.2.3', netmask: '255.255.255.255' }), null);
  assert.equal(directedBroadcast({ address: '10.1.2.3', netmask: '255.0.255.0' }), null);
  assert.equal(directedBroadcast({ address: '10.1.2.3', netmask: 'ffff:ffff::' }), null);
  assert.equal(directedBroadcast({ address: '10.1.2.3', netmask: '255.255.252.0' }), '10.1.3.255');
});
