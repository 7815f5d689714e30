/**
 * ollama.com account state and cloud models, as a server answers them (ollama: server/routes.go
 * WhoamiHandler, SignoutHandler; server/cloud_proxy.go; internal/modelref). Sign-in belongs to one
 * server: the emulator is signed in only when started with `account`.
 *   POST /api/me           200 the user, or 401 {"error":"unauthorized","signin_url":...}
 *   POST /api/signout      200 `null` (signed out from then on), or 401 "you are not currently signed in"
 *   DELETE /api/user/keys/:encodedKey   the same as signout
 * A cloud model (`name:cloud`, `name:tag-cloud`) is run by ollama.com for a signed-in server: 403
 * when cloud is disabled (OLLAMA_NO_CLOUD), 401 with a sign-in URL when not signed in.
 */
import { hostname } from 'node:os';
import { sendJson, type Call } from './http.ts';
import { describeModel, type ModelEntry } from './models.ts';

/** The public key a server's sign-in URL carries (a fixed fake one). */
const KEY = Buffer.from('ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEmulatorEmulatorEmulatorEmulatorKey').toString(
  'base64url',
);

function signinUrl(): string {
  return `https://ollama.com/connect?name=${encodeURIComponent(hostname())}&key=${KEY}`;
}

function unauthorized(call: Call): void {
  sendJson(call.res, 401, { error: 'unauthorized', signin_url: signinUrl() });
}

export function me(call: Call): void {
  const user = call.state.settings.account;
  if (user === null) {
    unauthorized(call);
    return;
  }
  sendJson(call.res, 200, {
    id: '0b0e5a5e-1c2d-4e5f-8a9b-0c1d2e3f4a5b',
    email: `${user}@example.com`,
    name: user,
    plan: 'free',
  });
}

export function signout(call: Call): void {
  if (call.state.settings.account === null) {
    sendJson(call.res, 401, { error: 'you are not currently signed in' });
    return;
  }
  call.state.settings.account = null;
  sendJson(call.res, 200, null);
}

/** The base name of a cloud model reference, or null for a local one (modelref.ParseRef). */
export function cloudBase(raw: string): string | null {
  const s = raw.trim();
  const i = s.lastIndexOf(':');
  if (i < 0) return null;
  const suffix = s
    .slice(i + 1)
    .trim()
    .toLowerCase();
  if (suffix === 'cloud') return s.slice(0, i);
  if (!suffix.includes('/') && suffix.endsWith('-cloud')) return s.slice(0, s.length - '-cloud'.length);
  return null;
}

/**
 * For a cloud model: answers 403 or 401 itself and returns null when this server cannot run it, else
 * an entry for it (installed or not). `error` writes the family's error shape. For a local model:
 * undefined, and the caller looks the model up as usual.
 */
export function cloudModel(
  call: Call,
  model: string,
  error: (status: number, message: string) => void,
): ModelEntry | null | undefined {
  const base = cloudBase(model);
  if (base === null) return undefined;
  if (call.state.settings.cloudDisabled) {
    error(403, 'ollama cloud is disabled: remote model is unavailable');
    return null;
  }
  if (call.state.settings.account === null) {
    // The cloud proxy's answer, in every family: {"error":"unauthorized","signin_url":...}.
    unauthorized(call);
    return null;
  }
  return call.state.models.get(model) ?? describeModel(base, new Date());
}
