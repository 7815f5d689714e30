/** The real DoctorProbes: this machine, its files, its LAN. */
import { allowedIds, readDevices, readPendingChecked } from '../identity/devices.ts';
import { loadIdentity } from '../identity/identity.ts';
import { errorMessage } from '../errors.ts';
import { parseOllamaHost } from '../config/ollama-host.ts';
import { probeOllama } from '../net/probe.ts';
import { askServersTime, listenForNodes } from './net-probes.ts';
import type { DoctorProbes } from './run.ts';
import {
  fdLimit,
  firewallListings,
  identityFacts,
  interfaceFacts,
  multicastRoute,
  portHolders,
} from './system-probes.ts';

export function systemProbes(ollamaUrl: string): DoctorProbes {
  return {
    ollama: () => probeOllama(parseOllamaHost(ollamaUrl, '--ollama-url'), 3_000),
    portHolders,
    firewall: firewallListings,
    interfaces: interfaceFacts,
    multicastRoute,
    fdLimit,
    identity: identityFacts,
    loadIdentity: (dataDir) => {
      try {
        return loadIdentity(dataDir);
      } catch {
        return null;
      }
    },
    allowedIds: (dataDir) => {
      try {
        return { ids: allowedIds(readDevices(dataDir)), problem: null };
      } catch (err) {
        return { ids: [], problem: errorMessage(err) };
      }
    },
    pending: readPendingChecked,
    listen: listenForNodes,
    askTime: askServersTime,
  };
}
