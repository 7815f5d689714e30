/** The one report writer of the bench runners: report.md, report.json and any further files (charts). */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ReportFiles {
  /** The whole run as one JSON document; everything else is a view of it. */
  readonly json: unknown;
  readonly markdown: string;
  readonly files?: readonly { readonly file: string; readonly content: string }[];
}

/** Writes the report into `dir` (made if missing); returns the paths written, report.md first. */
export function writeReport(dir: string, r: ReportFiles): string[] {
  mkdirSync(dir, { recursive: true });
  const written = [join(dir, 'report.md'), join(dir, 'report.json')];
  writeFileSync(written[0]!, r.markdown);
  writeFileSync(written[1]!, `${JSON.stringify(r.json, null, 2)}\n`);
  for (const f of r.files ?? []) {
    writeFileSync(join(dir, f.file), f.content);
    written.push(join(dir, f.file));
  }
  return written;
}
