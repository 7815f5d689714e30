/** `ollana stop`'s side of the control endpoint (daemon/control.ts), for OSes without signals. */
import { readFileSync } from 'node:fs';
import { errorMessage, OllanaError, systemCode } from '../errors.ts';
import { http } from '../net/node-http.ts';
import { CONTROL_STOP_PATH, type ControlLine } from './control.ts';

/** A node that is still starting has not opened its endpoint yet: connecting is retried this long. */
const CONNECT_RETRY_MS = 5_000;
const RETRY_PAUSE_MS = 50;

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

function readToken(tokenFile: string): string {
  try {
    return readFileSync(tokenFile, 'utf8').trim();
  } catch (err) {
    throw new OllanaError(
      'OLN_CONTROL_REFUSED',
      `cannot read the control token ${tokenFile} (${systemCode(err) ?? errorMessage(err)}): ` +
        "pass the node's --data-dir, and run stop as the user that runs the node",
      { cause: err },
    );
  }
}

/**
 * Asks the node at `address` to stop and resolves once it says it has (with the requests its drain
 * cut), or with null when it went away without saying so (it exited: the caller checks its pid).
 */
export async function askToStop(
  address: string,
  tokenFile: string,
  timeoutMs: number,
): Promise<{ cut: number } | null> {
  const token = readToken(tokenFile);
  const connectBy = Date.now() + CONNECT_RETRY_MS;
  for (;;) {
    try {
      return await exchange(address, token, timeoutMs);
    } catch (err) {
      const code = systemCode(err);
      if ((code === 'ENOENT' || code === 'ECONNREFUSED') && Date.now() < connectBy) {
        await pause(RETRY_PAUSE_MS);
        continue;
      }
      if (err instanceof OllanaError) throw err;
      throw new OllanaError(
        'OLN_CONTROL_REFUSED',
        `cannot reach the node's control endpoint ${address} (${code ?? errorMessage(err)}); ` +
          'is it an ollana of an older version, or started with another --pid-file?',
        { cause: err },
      );
    }
  }
}

function exchange(address: string, token: string, timeoutMs: number): Promise<{ cut: number } | null> {
  return new Promise((resolve, reject) => {
    const req = http.request({
      socketPath: address,
      path: CONTROL_STOP_PATH,
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-length': 0 },
      timeout: timeoutMs,
    });
    req.once('timeout', () =>
      req.destroy(
        new OllanaError(
          'OLN_STOP_TIMEOUT',
          `the node has not stopped ${Math.round(timeoutMs / 1000)} s after the stop request; wait longer with --timeout`,
        ),
      ),
    );
    req.once('error', reject);
    req.once('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.once('error', () => resolve(null));
      res.once('close', () => resolve(null));
      res.once('end', () => {
        if (res.statusCode !== 202) {
          let why = text.slice(0, 200);
          try {
            why = (JSON.parse(text) as { error: string }).error;
          } catch {
            // not JSON: the text as it came
          }
          reject(
            new OllanaError(
              'OLN_CONTROL_REFUSED',
              `the node refused the stop request (HTTP ${res.statusCode}: ${why})`,
            ),
          );
          return;
        }
        const stopped = text
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map((l) => JSON.parse(l) as ControlLine)
          .find((l) => l.state === 'stopped');
        resolve(stopped === undefined ? null : { cut: stopped.cut ?? 0 });
      });
    });
    req.end();
  });
}
