/**
 * Device ids: the Syncthing format (base32 of SHA-256, Luhn mod 32 check characters, 8 groups of 7),
 * parsing in any spelling, typo detection, and prefix resolution (only against the allow list, never
 * against ids met on the LAN) with errors that say what to do.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { OllanaError } from '../../src/errors.ts';
import { deviceIdFromDer, parseDeviceId, resolveDeviceId, shortId } from '../../src/identity/device-id.ts';

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/** Base32 the slow, obvious way: bytes as a bit string, cut in fives, the last one zero-padded. */
function base32ByHand(bytes: Uint8Array): string {
  const bits = [...bytes].map((b) => b.toString(2).padStart(8, '0')).join('');
  const fives = bits.padEnd(Math.ceil(bits.length / 5) * 5, '0').match(/.{5}/g)!;
  return fives.map((f) => B32[parseInt(f, 2)]).join('');
}

/** Syncthing's Luhn mod 32, written out from its description: factors 1,2,1,2... from the left. */
function luhnByHand(s: string): string {
  let sum = 0;
  [...s].forEach((c, i) => {
    const product = B32.indexOf(c) * (i % 2 === 0 ? 1 : 2);
    sum += Math.floor(product / 32) + (product % 32);
  });
  return B32[(32 - (sum % 32)) % 32]!;
}

// Syncthing's own documented example id (docs and lib/protocol tests); its check characters are Y, I, M, 2.
const SYNCTHING_ID = 'P56IOI7-MZJNU2Y-IQGDREY-DM2MGTI-MGL3BXN-PQ6W5BM-TBBZ4TJ-XZWICQ2';
const SHAPE = /^[A-Z2-7]{7}(-[A-Z2-7]{7}){7}$/;

function badId(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof OllanaError, String(err));
    assert.equal(err.code, 'OLN_BAD_DEVICE_ID');
    assert.equal(err.exitCode, 2);
    assert.match(err.message, pattern);
    return true;
  });
}

test('the id of a fixed DER, computed by hand: sha256 -> base32 -> 4 check characters -> groups of 7', () => {
  const der = new TextEncoder().encode('ollana test certificate');
  const raw = base32ByHand(createHash('sha256').update(der).digest());
  assert.equal(raw.length, 52);
  const quarters = raw.match(/.{13}/g)!;
  const checked = quarters.map((q) => q + luhnByHand(q)).join('');
  const expected = checked.match(/.{7}/g)!.join('-');
  assert.equal(deviceIdFromDer(der), expected);
  assert.equal(expected, 'X5YXA6S-2CPE3EE-IBOUC5U-76KIWRX-OGXC4J5-OQ7CKZG-CFWFAIP-64RZJAO');
  // The empty input's SHA-256 has a well-known base32 (e3b0c442... -> 4OYMIQUY7QOBJGX36TEJ...).
  assert.equal(deviceIdFromDer(new Uint8Array(0)), '4OYMIQU-Y7QOBJR-GX36TEJ-S35ZEQD-T24QPEM-SNZGTFB-ESWMRW6-CSXBKQD');
});

test("ids have Syncthing's shape, and Syncthing's documented id checks out", () => {
  for (let i = 0; i < 20; i++) {
    const id = deviceIdFromDer(Uint8Array.of(i, 42, 7));
    assert.match(id, SHAPE);
    assert.equal(id.length, 63);
  }
  assert.match(SYNCTHING_ID, SHAPE);
  assert.equal(parseDeviceId(SYNCTHING_ID), SYNCTHING_ID);
  const raw = SYNCTHING_ID.replace(/-/g, '');
  for (let q = 0; q < 4; q++) assert.equal(luhnByHand(raw.slice(q * 14, q * 14 + 13)), raw[q * 14 + 13]);
});

test('parse: any case, dashes and spaces optional; wrong length, alphabet or check character -> null', () => {
  const compact = SYNCTHING_ID.replace(/-/g, '');
  assert.equal(parseDeviceId(compact), SYNCTHING_ID);
  assert.equal(parseDeviceId(compact.toLowerCase()), SYNCTHING_ID);
  assert.equal(parseDeviceId(` ${SYNCTHING_ID.replace(/-/g, ' ').toLowerCase()}\n`), SYNCTHING_ID);
  assert.equal(parseDeviceId('P56IOI7-MZJNU2-YIQGDR-EYDM2MGT-IMGL3BXNPQ6W5BMTBBZ4TJXZWICQ2'), SYNCTHING_ID);
  assert.equal(parseDeviceId(compact.slice(0, 55)), null);
  assert.equal(parseDeviceId(`${compact}A`), null);
  assert.equal(parseDeviceId(compact.replace('P56', 'P50')), null, '0 is not base32');
  assert.equal(parseDeviceId(SYNCTHING_ID.replace('XZWICQ2', 'XZWICQ3')), null, 'last check character');
  // The 52-character form without check characters is not accepted: nothing would catch a typo.
  assert.equal(parseDeviceId('P56IOI7MZJNU2IQGDREYDM2MGTMGL3BXNPQ6W5BTBBZ4TJXZWICQ'), null);
});

test('every single-character typo is caught by the check characters', () => {
  const compact = SYNCTHING_ID.replace(/-/g, '');
  let tried = 0;
  for (let i = 0; i < compact.length; i++) {
    for (const c of 'AQZ7') {
      if (compact[i] === c) continue;
      const typo = compact.slice(0, i) + c + compact.slice(i + 1);
      assert.equal(parseDeviceId(typo), null, `typo at ${i}`);
      tried++;
    }
  }
  assert.ok(tried > 200);
  const swapped = compact.slice(0, 2) + compact[3] + compact[2] + compact.slice(4);
  badId(() => resolveDeviceId(swapped, []), /check characters do not match in characters 1-14 \(a typo\?\)/);
});

const A = deviceIdFromDer(Uint8Array.of(1));
const B = deviceIdFromDer(Uint8Array.of(2));

test('resolve: full ids known or not, unique prefixes of known ids in any spelling', () => {
  assert.equal(resolveDeviceId(SYNCTHING_ID.toLowerCase(), [A, B]), SYNCTHING_ID);
  assert.equal(resolveDeviceId(A, []), A);
  assert.equal(resolveDeviceId(A.slice(0, 4).toLowerCase(), [A, B, SYNCTHING_ID]), A);
  assert.equal(resolveDeviceId(` ${A.slice(0, 10)} `, [A, B]), A, 'dash inside the prefix');
  assert.equal(resolveDeviceId(A.slice(0, 10).replace('-', ''), [A, B]), A);
  assert.equal(shortId(A), A.slice(0, 7));
});

test('resolve: ambiguous prefixes list the matches; unknown ones say where ids come from', () => {
  const twin1 = `ABCDEFG-${A.slice(8)}`;
  const twin2 = `ABCDXYZ-${B.slice(8)}`;
  badId(
    () => resolveDeviceId('abcd', [twin1, twin2, A]),
    new RegExp(`"abcd" matches 2 devices: ${twin1}, ${twin2}; type more of the id`),
  );
  assert.equal(resolveDeviceId('abcde', [twin1, twin2]), twin1);
  badId(
    () => resolveDeviceId('ZZZZ', [A, B]),
    /no device in the allow list has an id starting with "ZZZZ".*`ollana device show` on that machine prints it/,
  );
  badId(() => resolveDeviceId(A.slice(0, 4), []), /no device in the allow list/);
  badId(
    () => resolveDeviceId('ab', [A]),
    /"ab" is too short: give the full id, or at least 4 first characters of a device already in `ollana device list`/,
  );
  badId(() => resolveDeviceId('', [A]), /no device id given/);
  badId(
    () => resolveDeviceId('P56I0I7', [A]),
    /contains "0": ids use only the letters A-Z and the digits 2-7 \(read 0 as O/,
  );
  badId(() => resolveDeviceId(`${A}A`, [A]), /has 57 characters, a device id has 56/);
  badId(
    () => resolveDeviceId('P56IOI7MZJNU2IQGDREYDM2MGTMGL3BXNPQ6W5BTBBZ4TJXZWICQ', []),
    /the 4 check characters are missing/,
  );
});

test('issue #22: a prefix never resolves to an id only met on the LAN (forgeable); the full id always does', () => {
  // Ids from discovery or refused handshakes (pending) can be ground to share any short prefix.
  const real = deviceIdFromDer(Uint8Array.of(3));
  const forged = real.slice(0, 5) + deviceIdFromDer(Uint8Array.of(4)).slice(5);
  badId(
    () => resolveDeviceId(real.slice(0, 5), [], [forged]),
    new RegExp(
      `"${real.slice(0, 5)}" matches only a device this machine met on the LAN, .*type the full id.*\`ollana device show\` on that machine prints it`,
    ),
  );
  badId(() => resolveDeviceId(real.slice(0, 20), [], [real]), /matches only a device this machine met on the LAN/);
  assert.doesNotThrow(() => resolveDeviceId(real, [], [forged]));
  assert.equal(
    resolveDeviceId(real.replace(/-/g, ' ').toLowerCase(), [], [forged]),
    real,
    'full id: dashes, spaces, case free',
  );
  // A device already in the allow list (typed in full once) is still found by a prefix, and wins over a met one.
  assert.equal(resolveDeviceId(real.slice(0, 5), [real], [forged]), real);
  assert.equal(resolveDeviceId(A.slice(0, 4), [A], [B]), A);
});
