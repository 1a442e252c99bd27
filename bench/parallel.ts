/**
 * Benchmark H: images in parallel. Eight images from a fixture mirror that sends each connection at most
 * 25 MiB/s (as far-away mirrors do), one `sync --once` into a directory target with `concurrency: 1` and
 * with `concurrency: 4`, alternating, each from fresh state; medians. Goals: the cycle with 4 takes at most
 * 0.3x the cycle with 1, and peak RSS stays within 120 MiB + 10 MiB per extra image in flight.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { startMirror } from '../test/fixtures/mirror/index.js';
import { MiB, flushDisks, formatSize, formatTable, median, mibOfKiB, ratio, runChecked, seconds, verdict } from './measure.js';

export interface ParallelBenchOptions {
  runs: number;
  /** Size of each of the eight images. */
  imageSizeBytes: number;
  /** `node cli.mjs` as installed. */
  cli: string[];
  workDir: string;
  repoRoot: string;
  log: (line: string) => void;
}

export interface ParallelGoals {
  oneMs: number;
  fourMs: number;
  fourRssKiB: number;
}

const RELEASES = ['focal', 'jammy', 'noble', 'oracular', 'plucky', 'questing', 'resolute', 'bionic'];
const PER_CONNECTION_BYTES_PER_SECOND = 25 * MiB;
const CONCURRENCIES = [1, 4] as const;

export async function benchParallel(o: ParallelBenchOptions): Promise<ParallelGoals> {
  const startedMs = performance.now();
  const mirror = await startMirror({
    imageSizeBytes: o.imageSizeBytes,
    releases: RELEASES.map((codename) => ({ codename, serials: ['20261101'], arches: ['amd64' as const], channels: ['release' as const], variants: ['server' as const] })),
  });
  o.log(`  parallel: ${RELEASES.length} images of ${formatSize(o.imageSizeBytes)} in ${seconds(performance.now() - startedMs)} s`);
  const throttle = mirror.inject({ path: /\.img$/, fault: 'slow', bytesPerSecond: PER_CONNECTION_BYTES_PER_SECOND });
  const dir = await mkdtemp(path.join(o.workDir, 'parallel-'));
  const samples = new Map<number, { wallMs: number; cpuMs?: number; rssKiB: number }[]>(CONCURRENCIES.map((n) => [n, []]));
  try {
    for (let run = 0; run < o.runs; run++) {
      const order = run % 2 === 0 ? CONCURRENCIES : [...CONCURRENCIES].reverse();
      for (const concurrency of order) {
        const runDir = path.join(dir, `n${concurrency}`);
        await rm(runDir, { recursive: true, force: true });
        await mkdir(runDir, { recursive: true });
        const configPath = path.join(runDir, 'config.yaml');
        await writeFile(configPath, JSON.stringify({
          source: { url: mirror.url, keyring: mirror.keyringPath, channel: 'release', releases: RELEASES, arches: ['amd64'] },
          stateDir: path.join(runDir, 'state'), cacheDir: path.join(runDir, 'cache'), concurrency,
          targets: [{ name: 'local', type: 'directory', path: path.join(runDir, 'images') }],
        }));
        flushDisks();
        o.log(`  parallel ${run + 1}/${o.runs}: concurrency ${concurrency}`);
        const [file, ...args] = o.cli as [string, ...string[]];
        const result = await runChecked(file, [...args, '-c', configPath, 'sync', '--once'], { cwd: o.repoRoot });
        const published = /"event":"sync\.run\.finished".*?"published":(\d+)/.exec(result.stdout)?.[1];
        if (published !== String(RELEASES.length)) throw new Error(`concurrency ${concurrency}: ${published ?? 'no'} images published, expected ${RELEASES.length}`);
        samples.get(concurrency)!.push({ wallMs: result.wallMs, cpuMs: result.cpuMs, rssKiB: result.maxRssKiB });
        await rm(runDir, { recursive: true, force: true });
      }
    }
  } finally {
    throttle.remove();
    await mirror.close();
    await rm(dir, { recursive: true, force: true });
  }
  const med = (n: number, pick: (s: { wallMs: number; cpuMs?: number; rssKiB: number }) => number | undefined) => {
    const values = samples.get(n)!.map(pick).filter((v): v is number => v !== undefined);
    return values.length ? median(values) : undefined;
  };
  const oneMs = med(1, (s) => s.wallMs)!;
  const fourMs = med(4, (s) => s.wallMs)!;
  const fourRssKiB = med(4, (s) => s.rssKiB)!;
  const rows: string[][] = [['sync --once, 8 images', 'wall s', 'vs concurrency 1', 'CPU s', 'peak RSS MiB', 'goal']];
  for (const n of CONCURRENCIES) {
    const wall = med(n, (s) => s.wallMs)!;
    const rss = med(n, (s) => s.rssKiB)!;
    const cpu = med(n, (s) => s.cpuMs);
    const rssLimitKiB = (120 + 10 * (n - 1)) * 1024;
    rows.push([`concurrency ${n}`, seconds(wall), ratio(wall, oneMs), cpu === undefined ? '-' : seconds(cpu), mibOfKiB(rss),
      n === 1 ? `RSS <= 120 MiB: ${verdict(rss, rssLimitKiB)}` : `<= 0.3x: ${verdict(wall / oneMs, 0.3)}; RSS <= ${rssLimitKiB / 1024} MiB: ${verdict(rss, rssLimitKiB)}`]);
  }
  console.log(`\n== H. Images in parallel: ${RELEASES.length} images of ${formatSize(o.imageSizeBytes)}, the mirror capped at ${formatSize(PER_CONNECTION_BYTES_PER_SECOND)}/s per connection (median of ${o.runs}, alternating)\n`);
  console.log(formatTable(rows));
  console.log(`  the floor with 1: ${RELEASES.length} x ${formatSize(o.imageSizeBytes)} at ${formatSize(PER_CONNECTION_BYTES_PER_SECOND)}/s = ${seconds((RELEASES.length * o.imageSizeBytes / PER_CONNECTION_BYTES_PER_SECOND) * 1000)} s of transfer; with 4, a quarter of it`);
  return { oneMs, fourMs, fourRssKiB };
}
