import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { OPTION_SPECS } from '../../src/config/defaults.ts';
import { renderSettingsDoc, SETTINGS_DOC } from '../../scripts/settings-doc.ts';

test('docs/settings.md is what `npm run docs` writes from src/config/defaults.ts (run it when this fails)', () => {
  assert.equal(
    readFileSync(SETTINGS_DOC, 'utf8'),
    renderSettingsDoc(),
    'docs/settings.md is stale: run `npm run docs` and commit the file',
  );
});

test('docs/settings.md has one row per setting, naming its flag and every environment variable', () => {
  const rows = renderSettingsDoc()
    .split('\n')
    .filter((line) => line.startsWith('| ') && !line.startsWith('| config key'));
  assert.equal(rows.length, OPTION_SPECS.length);
  for (const [i, spec] of OPTION_SPECS.entries()) {
    const row = rows[i]!;
    assert.ok(row.includes(`\`${spec.flag}\``), `${spec.key}: ${row}`);
    for (const name of spec.env) assert.ok(row.includes(`\`${name}\``), `${spec.key} lacks ${name}: ${row}`);
  }
});

test('the settings table does not depend on the machine that writes it (no core count in it)', () => {
  const workers = renderSettingsDoc()
    .split('\n')
    .find((line) => line.includes('`--workers`'));
  assert.match(workers ?? '', /\| cores, at most 8 \|/);
});
