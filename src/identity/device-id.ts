/**
 * Device ids, as Syncthing makes them: the SHA-256 of a node's certificate (DER), in RFC 4648 base32
 * without padding (52 characters), each 13-character quarter followed by a Luhn mod 32 check
 * character (56), shown in eight groups of seven joined by dashes (63). People read these ids aloud
 * and type them on another machine, so the check characters catch typos. A unique prefix is accepted
 * only for devices already in this machine's allow list (see resolveDeviceId).
 */
import { createHash } from 'node:crypto';
import { OllanaError } from '../errors.ts';

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
const RAW_LENGTH = 52;
const CHECKED_LENGTH = 56;
const MIN_PREFIX = 4;

/** RFC 4648 base32, no padding. */
function base32(bytes: Uint8Array): string {
  let out = '';
  let bits = 0;
  let value = 0;
  for (const byte of bytes) {
    value = (value << 8) | byte;
    bits += 8;
    while (bits >= 5) {
      out += ALPHABET[(value >>> (bits - 5)) & 31];
      bits -= 5;
    }
  }
  if (bits > 0) out += ALPHABET[(value << (5 - bits)) & 31];
  return out;
}

/**
 * Luhn mod 32 check character, exactly as Syncthing computes it: the factor starts at 1 on the first
 * character (the textbook algorithm starts from the right), so ids match Syncthing's for one cert.
 */
function luhn32(chars: string): string {
  let factor = 1;
  let sum = 0;
  for (const c of chars) {
    const addend = factor * ALPHABET.indexOf(c);
    factor = factor === 2 ? 1 : 2;
    sum += Math.floor(addend / 32) + (addend % 32);
  }
  return ALPHABET[(32 - (sum % 32)) % 32]!;
}

function group(checked: string): string {
  return checked.match(/.{7}/g)!.join('-');
}

/** Upper case, no dashes or white space: the form ids are compared in. */
function normalize(text: string): string {
  return text.toUpperCase().replace(/[\s-]/g, '');
}

/** Indexes (0-3) of the 14-character quarters whose check character is wrong. */
function badQuarters(checked: string): number[] {
  const bad: number[] = [];
  for (let q = 0; q < 4; q++) {
    const part = checked.slice(q * 14, q * 14 + 14);
    if (luhn32(part.slice(0, 13)) !== part[13]) bad.push(q);
  }
  return bad;
}

/** The device id of the certificate whose DER encoding is `der`. */
export function deviceIdFromDer(der: Uint8Array): string {
  const raw = base32(createHash('sha256').update(der).digest());
  let checked = '';
  for (let q = 0; q < 4; q++) {
    const part = raw.slice(q * 13, q * 13 + 13);
    checked += part + luhn32(part);
  }
  return group(checked);
}

/** The canonical form of a full id typed in any case, with or without dashes and spaces; else null. */
export function parseDeviceId(text: string): string | null {
  const s = normalize(text);
  if (s.length !== CHECKED_LENGTH || !/^[A-Z2-7]+$/.test(s)) return null;
  return badQuarters(s).length === 0 ? group(s) : null;
}

/** First group of an id, enough to tell devices apart in log lines. */
export function shortId(id: string): string {
  return id.slice(0, 7);
}

function bad(message: string): OllanaError {
  return new OllanaError('OLN_BAD_DEVICE_ID', message);
}

const WHERE = '`ollana device show` on that machine prints its id';

/**
 * What the user typed -> a canonical id: a full valid id (known or not), else a unique prefix (at
 * least 4 characters, any case, dashes and spaces ignored) of one of `decided`: the devices already
 * in the allow list (allowed or disabled), each typed in full once, plus this machine's own id.
 *
 * A prefix never resolves to an id in `metOnly` (devices only met on the LAN: pending.json), since
 * those ids come from unauthenticated announcements and refused handshakes: anyone can make
 * certificates until one's id starts with the characters a person would type (4 characters took
 * 584,000 certificates, 8.5 min on one core; every further character is 32 times more), and that
 * device would then be allowed in place of the real one. The full id is 256 bits: no grinding
 * reaches it. Throws OLN_BAD_DEVICE_ID saying what is wrong and what to do.
 */
export function resolveDeviceId(input: string, decided: readonly string[], metOnly: readonly string[] = []): string {
  const s = normalize(input);
  const shown = JSON.stringify(input.trim());
  if (s === '') throw bad(`no device id given; ${WHERE}`);
  const strange = [...new Set(s.replace(/[A-Z2-7]/g, ''))];
  if (strange.length > 0) {
    throw bad(
      `device id ${shown} contains ${strange.map((c) => JSON.stringify(c)).join(', ')}: ids use only the ` +
        'letters A-Z and the digits 2-7 (read 0 as O, 1 as I, 8 as B); check it against ' +
        WHERE,
    );
  }
  if (s.length === CHECKED_LENGTH) {
    const wrong = badQuarters(s);
    if (wrong.length === 0) return group(s);
    const groups = wrong.map((q) => `characters ${q * 14 + 1}-${q * 14 + 14}`).join(' and ');
    throw bad(
      `device id ${shown} is not valid: its check characters do not match in ${groups} (a typo?); ` +
        `copy it again from ${WHERE}`,
    );
  }
  if (s.length > CHECKED_LENGTH) {
    throw bad(
      `device id ${shown} has ${s.length} characters, a device id has ${CHECKED_LENGTH} (63 with dashes); ${WHERE}`,
    );
  }
  if (s.length < MIN_PREFIX) {
    throw bad(
      `device id ${shown} is too short: give the full id, or at least ${MIN_PREFIX} first characters of a device already in \`ollana device list\``,
    );
  }
  const matching = (ids: readonly string[]): string[] =>
    [...new Set(ids.map(normalize))].filter((k) => k.startsWith(s)).map(group);
  const matches = matching(decided);
  if (matches.length === 1) return matches[0]!;
  if (matches.length > 1) {
    throw bad(
      `device id prefix ${shown} matches ${matches.length} devices: ${matches.join(', ')}; type more of the id`,
    );
  }
  const full = `type the full id (56 characters, or 63 with dashes) as ${WHERE.replace('its id', 'it')}`;
  if (matching(metOnly).length > 0) {
    throw bad(
      `device id prefix ${shown} matches only a device this machine met on the LAN, and an id met on the LAN ` +
        `is not proof of anything: anyone can make one that starts with the same few characters; ${full}`,
    );
  }
  const hint = s.length === RAW_LENGTH ? ` (it has ${RAW_LENGTH} characters: the 4 check characters are missing)` : '';
  throw bad(`no device in the allow list has an id starting with ${shown}${hint}; ${full}`);
}
