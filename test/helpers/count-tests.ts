/**
 * Counts the tests `npm test` registers, without running one: each test file is loaded with node:test
 * replaced by a counter (describe bodies run, so the tests inside them count; test bodies and hooks do
 * not run). The number to keep in test/expected-count:
 *
 *   node test/helpers/count-tests.ts          (prints each file's count and the total)
 *
 * Subtests made inside a test's body (t.test) are not seen, so the runner's count can only be higher.
 */
import { execFileSync } from 'node:child_process';
import { globSync } from 'node:fs';

const COUNTER = `
let count = 0;
const reg = () => { count++; };
const suite = (...args) => { const fn = args.find((a) => typeof a === 'function'); if (fn) fn({}); };
const noop = () => {};
export const test = Object.assign(reg, { skip: reg, todo: reg, only: reg });
export const it = test;
export const describe = Object.assign(suite, { skip: suite, todo: suite, only: suite });
export { describe as suite };
export const before = noop, after = noop, beforeEach = noop, afterEach = noop;
export const mock = { fn: () => noop, method: noop, timers: { enable: noop } };
export default test;
process.on('exit', () => { process.stdout.write('\\ncount ' + count + '\\n'); });
`;
const dataUrl = (js: string): string => `data:text/javascript,${encodeURIComponent(js)}`;
const HOOKS = `export async function resolve(specifier, context, next) {
  if (specifier === 'node:test') return { url: ${JSON.stringify(dataUrl(COUNTER))}, shortCircuit: true };
  return next(specifier, context);
}`;
const REGISTER = `import { register } from 'node:module'; register(${JSON.stringify(dataUrl(HOOKS))});`;

let total = 0;
let failed = false;
for (const file of globSync('test/**/*.test.ts').sort()) {
  let out = '';
  try {
    out = execFileSync(process.execPath, ['--import', dataUrl(REGISTER), file], {
      encoding: 'utf8',
      timeout: 60_000,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (err) {
    out = String((err as { stdout?: string }).stdout ?? '');
  }
  const n = /\ncount (\d+)\n$/.exec(out)?.[1];
  if (n === undefined) {
    failed = true;
    process.stdout.write(`${file}: cannot be loaded to count its tests\n`);
    continue;
  }
  total += Number(n);
  process.stdout.write(`${file}: ${n}\n`);
}
process.stdout.write(`total: ${total}\n`);
process.exitCode = failed ? 1 : 0;
