/**
 * `npm run bench`: the foundation's speed and memory goals, each against a baseline measured in the same
 * run on the same machine. It prints figures and ratios; it never fails on a figure (not a timed test).
 *
 *   npm run bench                              full run: 1 GiB (+ 256 MiB, 2 GiB for RSS), 3 repetitions
 *   npm run bench -- --quick                   small sizes, 1 repetition (also BENCH_QUICK=1)
 *   npm run bench -- --only cpu --cli /elsewhere/dist/cli.js   measure another build of the CLI (an A/B)
 *   npm run bench -- --only cpu --cpu-paths directory           section F's directory row alone (no OpenStack needed)
 *   npm run bench -- --runs 5 --size 512MiB --rss-sizes 128MiB,4GiB --only download,noop,glance,cpu,raw,parallel --parallel-size 64MiB
 *
 * Environment equivalents: BENCH_RUNS, BENCH_SIZE, BENCH_RSS_SIZES, BENCH_ONLY, BENCH_GLANCE_SIZE, BENCH_PARALLEL_SIZE, BENCH_CPU_PATHS.
 * Needs curl, sha256sum and (for exact peak RSS) GNU time: `apt-get install -y time curl`.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { CPU_PATHS, benchCpu, type CpuPath, type CpuPathFigure } from './cpu.js';
import { benchDownload, type DownloadGoals } from './download.js';
import { benchGlance } from './glance.js';
import { HAVE_GNU_TIME, bundle, formatSize, formatTable, parseSize, ratio, seconds, verdict } from './measure.js';
import { benchNoopCycle, type NoopGoals } from './noop-cycle.js';
import { benchParallel, type ParallelGoals } from './parallel.js';
import { benchRaw } from './raw.js';
import { buildDist, launcherNodeFlags } from '../scripts/build.js';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const SECTIONS = ['download', 'noop', 'glance', 'cpu', 'raw', 'parallel'] as const;
type Section = (typeof SECTIONS)[number];

interface Settings {
  runs: number;
  sizeBytes: number;
  rssSizesBytes: number[];
  glanceSizeBytes: number;
  /** Each of the eight images of section G. */
  parallelSizeBytes: number;
  /** A built CLI to measure instead of this tree's (an A/B against another commit's build). */
  cliPath?: string;
  only: Set<Section>;
  /** Section F's paths to measure. */
  cpuPaths: Set<CpuPath>;
  quick: boolean;
}

function readSettings(): Settings {
  const { values } = parseArgs({
    options: {
      quick: { type: 'boolean' },
      runs: { type: 'string' },
      size: { type: 'string' },
      'rss-sizes': { type: 'string' },
      'glance-size': { type: 'string' },
      'parallel-size': { type: 'string' },
      cli: { type: 'string' },
      only: { type: 'string' },
      'cpu-paths': { type: 'string' },
    },
  });
  const env = process.env;
  const quick = values.quick ?? (env.BENCH_QUICK === '1' || env.BENCH_QUICK === 'true');
  const runs = Number(values.runs ?? env.BENCH_RUNS ?? (quick ? 1 : 3));
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`--runs must be a whole number >= 1, got ${values.runs ?? env.BENCH_RUNS}`);
  const sizeBytes = parseSize(values.size ?? env.BENCH_SIZE ?? (quick ? '64MiB' : '1GiB'));
  const rssSizesBytes = (values['rss-sizes'] ?? env.BENCH_RSS_SIZES ?? (quick ? '16MiB,128MiB' : '256MiB,2GiB'))
    .split(',').map((s) => s.trim()).filter(Boolean).map(parseSize);
  const glanceSizeBytes = parseSize(values['glance-size'] ?? env.BENCH_GLANCE_SIZE ?? formatSize(sizeBytes).replace(' ', ''));
  const parallelSizeBytes = parseSize(values['parallel-size'] ?? env.BENCH_PARALLEL_SIZE ?? (quick ? '16MiB' : '128MiB'));
  const onlyText = values.only ?? env.BENCH_ONLY ?? SECTIONS.join(',');
  const only = new Set(onlyText.split(',').map((s) => s.trim()).filter(Boolean) as Section[]);
  for (const s of only) if (!SECTIONS.includes(s)) throw new Error(`--only takes ${SECTIONS.join(',')}; got ${s}`);
  const cpuPathsText = values['cpu-paths'] ?? env.BENCH_CPU_PATHS ?? CPU_PATHS.join(',');
  const cpuPaths = new Set(cpuPathsText.split(',').map((s) => s.trim()).filter(Boolean) as CpuPath[]);
  for (const p of cpuPaths) if (!CPU_PATHS.includes(p)) throw new Error(`--cpu-paths takes ${CPU_PATHS.join(',')}; got ${p}`);
  return { runs, sizeBytes, rssSizesBytes, glanceSizeBytes, parallelSizeBytes, only, cpuPaths, quick, cliPath: values.cli ?? env.BENCH_CLI };
}

async function builtCli(outDir: string): Promise<string> {
  await buildDist(outDir);
  return path.join(outDir, 'cli.js');
}

function checkTools(): void {
  const missing = ['curl', 'sha256sum', 'sync'].filter((tool) => spawnSync('sh', ['-c', `command -v ${tool}`]).status !== 0);
  if (missing.length > 0) throw new Error(`missing ${missing.join(', ')}: apt-get install -y curl coreutils`);
}

const progress = (line: string): void => {
  process.stderr.write(`${line}\n`);
};

function toolVersion(command: string): string {
  const out = spawnSync(command, ['--version'], { encoding: 'utf8' }).stdout ?? '';
  return out.split('\n')[0]?.trim() ?? '?';
}

async function main(): Promise<void> {
  const settings = readSettings();
  checkTools();
  const workDir = await mkdtemp(path.join(tmpdir(), 'cloudimg-bench-'));
  // Fixture mirrors and children make their temp dirs under TMPDIR: inside workDir, one rm cleans all.
  process.env.TMPDIR = workDir;
  // Inside the repository, like dist/ (the CLI finds package.json and keys/ above it); removed at the end.
  const buildDir = path.join(REPO_ROOT, 'bench', `.build-${process.pid}`);
  const cleanUp = async () => {
    await rm(workDir, { recursive: true, force: true });
    await rm(buildDir, { recursive: true, force: true });
  };
  const onSignal = (signal: NodeJS.Signals) => {
    progress(`bench: ${signal}, cleaning up`);
    void cleanUp().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);

  const startedMs = performance.now();
  const loadBefore = loadavg();
  console.log('cloudimg-sync benchmark');
  console.log(`  node ${process.version}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), load average ${loadBefore.map((l) => l.toFixed(2)).join(' ')}`);
  console.log(`  ${toolVersion('curl')}; ${toolVersion('sha256sum')}; peak RSS via ${HAVE_GNU_TIME ? '/usr/bin/time' : '/proc/PID/status VmHWM polling (apt-get install -y time for exact figures)'}`);
  console.log(`  runs ${settings.runs}, image ${formatSize(settings.sizeBytes)}, RSS sizes ${settings.rssSizesBytes.map(formatSize).join(', ')}${settings.quick ? ' (quick)' : ''}`);
  console.log('  Figures are wall times of whole processes unless said otherwise; ratios are against baselines from this run.');

  let download: DownloadGoals | undefined;
  let noop: NoopGoals | undefined;
  let cpu: CpuPathFigure[] = [];
  let parallel: ParallelGoals | undefined;
  try {
    progress('bench: building the CLI as `npm run build` does (scripts/build.ts) and bundling bench/download-child.ts');
    // Node flags as the installed CLI runs with them (its shebang), for our download child as well.
    const nodeFlags = launcherNodeFlags();
    const child = [process.execPath, ...nodeFlags, await bundle(path.join(REPO_ROOT, 'bench/download-child.ts'), buildDir, 'download-child')];
    let cli: string[] | undefined;
    try {
      // The shipped artifact itself (dist/ of `npm run build`: bundle + code cache), built into buildDir/dist.
      cli = [process.execPath, ...nodeFlags, settings.cliPath ? path.resolve(settings.cliPath) : await builtCli(path.join(buildDir, 'dist'))];
      console.log(`  CLI measured: ${cli.join(' ')}${settings.cliPath ? ' (--cli)' : ' (built by scripts/build.ts, as `npm run build`)'}`);
    } catch (err) {
      console.log(`  (the CLI could not be built, so only the tsx CLI is measured: ${err instanceof Error ? err.message.split('\n')[0] : String(err)})`);
    }

    if (settings.only.has('download')) {
      progress('bench: A-C download + verify');
      download = await benchDownload({
        runs: settings.runs, mainSizeBytes: settings.sizeBytes, rssSizesBytes: settings.rssSizesBytes, child, workDir, log: progress,
      });
    }
    if (settings.only.has('noop')) {
      progress('bench: D no-op cycle');
      noop = await benchNoopCycle({ runs: settings.runs, bundledCli: cli, workDir, repoRoot: REPO_ROOT, log: progress });
    }
    if (settings.only.has('glance')) {
      progress('bench: E Glance');
      // ---- Glance: runs only when src/targets/glance.ts exists (and the local OpenStack answers).
      await benchGlance({
        sizeBytes: settings.glanceSizeBytes, cli: cli ?? [process.execPath, '--import', 'tsx', path.join(REPO_ROOT, 'src/cli.ts')],
        workDir, repoRoot: REPO_ROOT, log: progress,
      });
    }
    if (settings.only.has('cpu')) {
      progress('bench: F client CPU per GiB');
      cpu = await benchCpu({
        runs: settings.runs, sizeBytes: settings.sizeBytes, workDir, repoRoot: REPO_ROOT, log: progress, paths: settings.cpuPaths, child,
        cli: cli ?? [process.execPath, '--import', 'tsx', path.join(REPO_ROOT, 'src/cli.ts')],
      });
    }
    if (settings.only.has('raw')) {
      progress('bench: G raw publication');
      await benchRaw({
        sizeBytes: settings.glanceSizeBytes, cli: cli ?? [process.execPath, '--import', 'tsx', path.join(REPO_ROOT, 'src/cli.ts')],
        workDir, repoRoot: REPO_ROOT, log: progress,
      });
    }
    if (settings.only.has('parallel')) {
      progress('bench: H images in parallel');
      parallel = await benchParallel({
        runs: settings.runs, imageSizeBytes: settings.parallelSizeBytes, workDir, repoRoot: REPO_ROOT, log: progress,
        cli: cli ?? [process.execPath, '--import', 'tsx', path.join(REPO_ROOT, 'src/cli.ts')],
      });
    }
  } finally {
    await cleanUp();
  }

  const goals: string[][] = [['goal', 'measured', 'verdict']];
  if (download) {
    goals.push([`download+verify ${formatSize(settings.sizeBytes)} <= 1.05x curl -o`, `${download.ratioVsCurl.toFixed(2)}x`, verdict(download.ratioVsCurl, 1.05)]);
    for (const [size, kib] of [...download.rssKiBBySize].sort(([a], [b]) => a - b)) {
      goals.push([`peak RSS downloading ${formatSize(size)} <= 120 MiB`, `${(kib / 1024).toFixed(1)} MiB`, verdict(kib, 120 * 1024)]);
    }
  }
  if (noop) {
    goals.push(['no-op cycle (7 releases x 6 arches) <= 1 s', `${seconds(noop.wallMs)} s`, verdict(noop.wallMs, 1000)]);
    goals.push(['no-op cycle bytes from the mirror <= 100 KiB', formatSize(noop.bytesDown), verdict(noop.bytesDown, 100 * 1024)]);
  }
  if (goals.length > 1) {
    console.log('\n== Goals (foundation, issue 2)\n');
    console.log(formatTable(goals));
  }
  const goals14: string[][] = [['goal', 'measured', 'reference', 'verdict']];
  if (noop) {
    goals14.push(['sync --once with nothing new: CPU of the whole process <= 0.3 s', noop.cpuMs === undefined ? '- (needs GNU time)' : `${seconds(noop.cpuMs)} s`,
      noop.startupCpuMs === undefined ? '-' : `node -e "" ${seconds(noop.startupCpuMs)} s`, noop.cpuMs === undefined ? '-' : verdict(noop.cpuMs, 300)]);
    goals14.push(['no-op cycle on the wire (both ways) < 10 KiB', formatSize(noop.bytesOnWire), `${noop.requests} requests`, noop.bytesOnWire < 10 * 1024 ? 'met' : 'MISSED']);
  }
  for (const f of cpu) {
    goals14.push([`${f.path.split(':')[0]}: client CPU <= 1.2x the C tools'`, `${ratio(f.oursCpuMs, f.refCpuMs)} (${seconds(f.oursCpuMs)} s)`,
      `${seconds(f.refCpuMs)} s`, verdict(f.oursCpuMs / f.refCpuMs, 1.2)]);
    if (f.floorCpuMs !== undefined) {
      goals14.push([`${f.path.split(':')[0]}: floor, node + undici receiving and hashing (nothing stored, no CLI)`, `${ratio(f.floorCpuMs, f.refCpuMs)} (${seconds(f.floorCpuMs)} s)`,
        `${seconds(f.refCpuMs)} s`, 'for reference']);
    }
    goals14.push([`${f.path.split(':')[0]}: peak RSS <= 120 MiB`, `${(f.oursRssKiB / 1024).toFixed(1)} MiB`, '', verdict(f.oursRssKiB, 120 * 1024)]);
  }
  if (parallel) {
    goals14.push(['8 images, 25 MiB/s per connection: cycle with concurrency 4 <= 0.3x with 1', ratio(parallel.fourMs, parallel.oneMs),
      `${seconds(parallel.fourMs)} s vs ${seconds(parallel.oneMs)} s`, verdict(parallel.fourMs / parallel.oneMs, 0.3)]);
    goals14.push(['peak RSS with 4 in flight <= 150 MiB (120 + 10 per extra image)', `${(parallel.fourRssKiB / 1024).toFixed(1)} MiB`, '', verdict(parallel.fourRssKiB, 150 * 1024)]);
  }
  if (goals14.length > 1) {
    console.log('\n== Goals (CPU and freshness, issue 14)\n');
    console.log(formatTable(goals14));
  }
  const loadAfter = loadavg();
  console.log(`\n  total ${seconds(performance.now() - startedMs)} s; load average now ${loadAfter.map((l) => l.toFixed(2)).join(' ')}` +
    (loadAfter[0] !== undefined && loadAfter[0] > cpus().length ? ' (the machine was busy: figures are noisy, ratios less so)' : ''));
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exitCode = 1;
});

