/**
 * The answer a server node gives a device it does not admit: written right after the TLS handshake,
 * before (and instead of) reading any request, then the connection closes. Ollama clients show the
 * `error` text; a client node recognises the `ollana-refused` header, tries another server, and logs
 * the command that pairs the two.
 */
import type { Admission } from './trust-gate.ts';

export const REFUSED_HEADER = 'ollana-refused';

function why(a: Admission, serverId: string): string {
  switch (a.verdict) {
    case 'no-certificate':
      return (
        "this port is ollana's node-to-node port and needs a device certificate; " +
        'run `ollana serve` on your machine and use it at http://127.0.0.1:11434'
      );
    case 'bad-handshake':
    case 'allowed':
      return 'refused';
    case 'disabled':
      return `device ${a.id} is disabled on this server node (${serverId}); on the server run: ollana device allow ${a.id}`;
    default:
      return `device ${a.id} is not allowed on this server node (${serverId}) yet; on the server run: ollana device allow ${a.id}`;
  }
}

export function refusalReply(a: Admission, serverId: string): string {
  const body = JSON.stringify({ error: `ollana: ${why(a, serverId)}` });
  return (
    `HTTP/1.1 403 Forbidden\r\ncontent-type: application/json; charset=utf-8\r\n${REFUSED_HEADER}: ${a.verdict}\r\n` +
    `connection: close\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
  );
}
