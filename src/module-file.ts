/**
 * Paths of this program's own modules that are started by path (worker threads, the daemon's child),
 * in whichever tree is running: the TypeScript sources in src/ (run through Node's type stripping, as
 * in development) or their build in dist/ (what `npm ci` makes and bin/ollana.mjs runs). A path written
 * in src/ with `.ts` becomes `.js` when the calling module itself is a built `.js` file.
 */
import { fileURLToPath } from 'node:url';

export function ownModule(relativeTs: string, callerUrl: string): string {
  const rel = callerUrl.endsWith('.js') ? relativeTs.replace(/\.ts$/, '.js') : relativeTs;
  return fileURLToPath(new URL(rel, callerUrl));
}
