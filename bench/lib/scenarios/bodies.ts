/**
 * Large bodies: one blob upload and one large response per measurement. A proxy that streams
 * with backpressure keeps its memory flat whatever the size; one that buffers grows by the body.
 */
import { BlobBodies, download, upload, type BulkResult } from '../load/bulk.ts';
import type { MetricSpec, ScenarioResult } from '../results.ts';
import type { SystemUnderTest } from '../systems.ts';
import { MB, alternate, measure, settle, type Scenario } from './context.ts';

export const BODY_METRICS: readonly MetricSpec[] = [
  { key: 'mibPerSec', label: 'throughput', unit: 'MiB/s', digits: 0, better: 'higher', compare: 'ratio' },
  { key: 'cpuMsPerGiB', label: 'CPU/GiB', unit: 'ms', digits: 0, better: 'lower', compare: 'ratio' },
  { key: 'rssGrowthMB', label: 'RSS growth', unit: 'MB', digits: 1, better: 'lower', compare: 'none', agg: 'max' },
  { key: 'peakRssMB', label: 'peak RSS', unit: 'MB', digits: 1, better: 'lower', compare: 'none', agg: 'max' },
];

const WARMUP_BYTES = 64 * MB;

type Direction = 'upload' | 'download';

export const bodiesScenario: Scenario = {
  id: 'bodies',
  title: 'Large bodies: blob upload and large response',
  async run(ctx): Promise<ScenarioResult> {
    const { options } = ctx;
    const gib = options.bodyBytes / (1024 * MB);
    const timeoutMs = Math.max(120_000, (options.bodyBytes / MB) * 200); // >= 5 MiB/s or it is a failure
    ctx.log(`bodies: hashing the ${options.bodyBytes / MB} MiB upload body once`);
    const bodies = new BlobBodies(options.bodyBytes);
    const warm = new BlobBodies(WARMUP_BYTES);
    const result: ScenarioResult = {
      id: 'bodies',
      title: this.title,
      method:
        `One ${options.bodyBytes / MB} MiB transfer per measurement, streamed 1 MiB at a time with backpressure on ` +
        'both ends: upload = POST /api/blobs/sha256:<digest> (the emulator hashes it as it arrives, 201 on match), ' +
        'download = GET /emulator/bytes. RSS growth = peak RSS during the transfer (VmHWM, reset before it) − RSS before. ' +
        `A ${WARMUP_BYTES / MB} MiB warm-up per system; ${options.rounds} rounds. ${ctx.placement}.`,
      cases: [],
      notes: [],
      skipped: null,
    };
    // The raw reference relay holds a request body whole before forwarding: not a streaming proxy.
    const systems = ctx.systems.filter((s) => s.id !== 'raw');
    if (systems.length < ctx.systems.length)
      result.notes.push('raw (reference relay) is left out: it buffers request bodies.');
    for (const dir of ['upload', 'download'] as const satisfies readonly Direction[]) {
      ctx.log(`bodies: ${dir}`);
      const transfer = (sys: SystemUnderTest, big: boolean): Promise<BulkResult> => {
        if (dir === 'upload') return upload(sys.url, (big ? bodies : warm).next(), timeoutMs);
        return download(sys.url, big ? options.bodyBytes : WARMUP_BYTES, timeoutMs);
      };
      const samples = await alternate(
        ctx,
        systems,
        options.rounds,
        dir,
        async (sys) => {
          const m = await measure(sys, ctx.emulator, () => transfer(sys, true));
          await settle();
          const r = m.result;
          const values: Record<string, number> = {
            mibPerSec: r.mibPerSec,
            seconds: r.seconds,
            foreignPct: m.foreignPct,
          };
          if (m.sut !== null) {
            values.cpuMsPerGiB = m.sut.cpuMs / gib;
            values.rssGrowthMB = (m.sut.peakRssBytes - m.sut.startRssBytes) / MB;
            values.peakRssMB = m.sut.peakRssBytes / MB;
          }
          return { ok: r.ok, values, note: r.error };
        },
        async (sys) => {
          await transfer(sys, false);
          await settle();
        },
      );
      result.cases.push({
        id: `bodies-${dir}`,
        title: `${dir} ${gib >= 1 ? `${gib} GiB` : `${options.bodyBytes / MB} MiB`}`,
        workers: options.workers,
        metrics: BODY_METRICS,
        samples,
        labels: Object.fromEntries(systems.map((x) => [x.id, x.label])),
      });
    }
    return result;
  },
};
