/**
 * The dashboard's files: the page, its script and style from assets/dashboard/ (served as they are in
 * the repo, no build step) and uPlot from node_modules. Read once, on the first request, and kept. Every
 * answer carries a strict Content-Security-Policy: the node's own scripts, styles and event stream only.
 */
import { readFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
  "base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/** The dashboard's page is /ollana/; its files are under this path. */
export const ASSET_PREFIX = '/ollana/ui/';

interface Asset {
  readonly type: string;
  readonly path: () => string;
}

const own = (name: string) => (): string => fileURLToPath(new URL(`../../assets/dashboard/${name}`, import.meta.url));
const uplot = (name: string) => (): string => createRequire(import.meta.url).resolve(`uplot/dist/${name}`);

const ASSETS: Record<string, Asset> = {
  '/ollana/': { type: 'text/html; charset=utf-8', path: own('index.html') },
  '/ollana/ui/app.js': { type: 'text/javascript; charset=utf-8', path: own('app.js') },
  '/ollana/ui/style.css': { type: 'text/css; charset=utf-8', path: own('style.css') },
  '/ollana/ui/icon.svg': { type: 'image/svg+xml', path: own('icon.svg') },
  '/ollana/ui/uPlot.iife.min.js': { type: 'text/javascript; charset=utf-8', path: uplot('uPlot.iife.min.js') },
  '/ollana/ui/uPlot.min.css': { type: 'text/css; charset=utf-8', path: uplot('uPlot.min.css') },
};

const cache = new Map<string, Buffer>();

/** Whether `path` is one of the dashboard's files. */
export function isDashboardFile(path: string): boolean {
  return Object.hasOwn(ASSETS, path);
}

/** Sends the dashboard file at `path` (isDashboardFile); 500 when it is missing from the install. */
export function sendDashboardFile(res: ServerResponse, path: string, head: boolean): void {
  const asset = ASSETS[path]!;
  let body = cache.get(path);
  if (body === undefined) {
    try {
      body = readFileSync(asset.path());
    } catch (err) {
      const text = `ollana: the dashboard file for ${path} is missing from this install (${(err as Error).message}); reinstall ollana`;
      res.writeHead(500, ['content-type', 'text/plain; charset=utf-8']).end(text);
      return;
    }
    cache.set(path, body);
  }
  res.writeHead(200, [
    'content-type',
    asset.type,
    'content-length',
    String(body.length),
    'content-security-policy',
    CSP,
    'x-content-type-options',
    'nosniff',
    'referrer-policy',
    'no-referrer',
    'cache-control',
    'no-cache',
  ]);
  res.end(head ? undefined : body);
}
