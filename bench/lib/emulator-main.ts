/**
 * Child-process entry of the benchmark's Ollama emulator: the test fixture's CLI plus one thing a
 * long load run needs. The fixture keeps every request it saw (headers included) in
 * `emu.requests` for tests to inspect; under tens of thousands of requests a second that list
 * grows by gigabytes over a run, and the growing heap slows later rounds (and could end in an
 * out-of-memory crash). The fixture documents `emu.requests = []` as the way to reset it.
 *
 * Same flags as test/fixtures/ollama-emulator.ts; prints the same first stdout line.
 */
import { parseCliArgs, startEmulator } from '../../test/fixtures/ollama-emulator.ts';

const RESET_EVERY_MS = 1_000;

const opts = parseCliArgs(process.argv.slice(2));
const emu = await startEmulator(opts);
process.stdout.write(`${JSON.stringify({ url: emu.url, port: emu.port, pid: process.pid })}\n`);
setInterval(() => { emu.requests = []; }, RESET_EVERY_MS).unref();

const stop = (): void => {
  emu.close().then(() => process.exit(0), () => process.exit(1));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
// Do not outlive a bench that was killed before it could stop us (we get re-parented).
const parent = process.ppid;
setInterval(() => { if (process.ppid !== parent) stop(); }, 2_000).unref();
