/**
 * Errors ollana raises on bad input carry stable codes (src/errors.ts), which callers and tests match
 * instead of message text: a message on an actor port, a discovery datagram field, an upstream's
 * response framing, a server node that is not the device announced.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EXIT_CODES } from '../../src/errors.ts';
import { ProtocolError, unpack } from '../../src/protocol/wire.ts';
import { encodeDatagram } from '../../src/net/datagram.ts';
import { FramingError, parseResponseHead } from '../../src/proxy/relay/framing.ts';
import { PinMismatchError } from '../../src/net/tls.ts';
import type { LanDatagram } from '../../src/protocol/lan.ts';
import { makeIdentities } from '../helpers/lan-identities.ts';

const [ME] = (await makeIdentities(1)) as [Awaited<ReturnType<typeof makeIdentities>>[number]];

test('a message that is not one on an actor port: ProtocolError OLN_BAD_MESSAGE', () => {
  assert.throws(
    () => unpack('not bytes'),
    (err: Error & { code?: string }) => err instanceof ProtocolError && err.code === 'OLN_BAD_MESSAGE',
  );
  assert.throws(
    () => unpack(Uint8Array.of(0xc1)),
    (err: Error & { code?: string }) => err instanceof ProtocolError && err.code === 'OLN_BAD_MESSAGE',
  );
});

test('a datagram field out of bounds: the encoder refuses it with the field check as the cause, OLN_BAD_DATAGRAM_FIELD', () => {
  const base: LanDatagram = {
    kind: 'announce',
    id: ME.id,
    boot: 'k3x9-boot',
    role: 'server',
    port: 11435,
    seq: 42,
    load: { inFlight: 3, workers: 8 },
    models: 'sha256.1a2b',
    term: 7,
    leader: ME.id,
    draining: false,
  };
  for (const patch of [{ port: 70_000 }, { draining: 'yes' }, { role: 'boss' }, { load: [1, 2] }]) {
    assert.throws(
      () => encodeDatagram({ ...base, ...patch } as LanDatagram, ME.signer),
      (err: Error) =>
        err instanceof TypeError && (err.cause as { code?: string } | undefined)?.code === 'OLN_BAD_DATAGRAM_FIELD',
      JSON.stringify(patch),
    );
  }
});

test('an upstream response the relay cannot frame: FramingError OLN_BAD_UPSTREAM_FRAMING', () => {
  assert.throws(
    () => parseResponseHead(Buffer.from('HTTP/1.1 200 OK\ncontent-length: 2\n\n{}', 'latin1'), 'GET'),
    (err: Error & { code?: string }) => err instanceof FramingError && err.code === 'OLN_BAD_UPSTREAM_FRAMING',
  );
});

test("OLN_PIN_MISMATCH is one of ollana's error codes", () => {
  const err = new PinMismatchError('https://127.0.0.1:1', 'A'.repeat(8), null);
  assert.equal(err.code, 'OLN_PIN_MISMATCH');
  assert.ok(err.code in EXIT_CODES);
});
