/**
 * Child-process entry of the benchmark's Ollama emulator: the test fixture's CLI, plus an exit when
 * the bench that started it is gone. (The fixture's request log is bounded by itself, so a long
 * load run no longer needs to empty it.)
 *
 * Same flags as testkit/ollama-emulator.ts; prints the same first stdout line.
 */
import { parseCliArgs, startEmulator } from '../../testkit/ollama-emulator.ts';

const opts = parseCliArgs(process.argv.slice(2));
const emu = await startEmulator(opts);
process.stdout.write(`${JSON.stringify({ url: emu.url, port: emu.port, pid: process.pid })}\n`);

const stop = (): void => {
  emu.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
// Do not outlive a bench that was killed before it could stop us (we get re-parented).
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) stop();
}, 2_000).unref();
