/**
 * Benchmark D: a sync cycle with nothing new upstream, over 7 releases x 6 arches of the release channel.
 *
 * The state is primed by one real cycle (42 small images into a directory target); then each no-op cycle
 * is timed three ways: the CLI run from source (`node --import tsx src/cli.ts`, the development set-up),
 * the CLI bundled into plain JavaScript (what an installed `cloudimg-sync` costs), and runSyncCycle()
 * inside this process (a daemon's cycle: no start-up, warm connections). A counting TCP relay in front
 * of the mirror gives the exact bytes on the wire.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { validateConfig } from '../src/config/load.js';
import { createHttpClient, httpClientOptionsFor } from '../src/fetch/http-client.js';
import { createLogger } from '../src/log.js';
import { ARCHES } from '../src/image.js';
import { StateStore } from '../src/state/store.js';
import { runSyncCycle } from '../src/sync/run.js';
import { createTargets } from '../src/targets/create.js';
import { startMirror, type Mirror } from '../test/fixtures/mirror/index.js';
import {
  formatSize, formatTable, median, mibOfKiB, ratio, runChecked, runMeasured, seconds, startWireCounter, verdict, type ProcessRun,
  type WireCounter,
} from './measure.js';

export const NOOP_RELEASES = ['focal', 'jammy', 'noble', 'oracular', 'plucky', 'questing', 'resolute'];
const NOOP_IMAGE_BYTES = 64 * 1024;

export interface NoopBenchOptions {
  runs: number;
  /** `node cli.mjs`, when the CLI could be bundled. */
  bundledCli?: string[];
  workDir: string;
  repoRoot: string;
  log: (line: string) => void;
}

export interface NoopGoals {
  wallMs: number;
  /** User + system CPU of the installed CLI's whole process (median), when GNU time could measure it. */
  cpuMs?: number;
  /** The same for `node -e ""`: the runtime's own start-up, the floor under any CLI. */
  startupCpuMs?: number;
  bytesDown: number;
  /** Bytes both ways on the wire (requests + responses) of one no-op cycle. */
  bytesOnWire: number;
  /** Requests of one no-op cycle. */
  requests: number;
}

interface Traffic {
  bytesDown: number;
  bytesUp: number;
  requests: number;
  bodyBytes: number;
  imageRequests: number;
  statuses: string;
}

interface CycleSample {
  wallMs: number;
  rssKiB: number;
  /** User + system CPU: of the whole process for a CLI (GNU time), of the cycle alone in process. */
  cpuMs?: number;
  traffic: Traffic;
}

type CycleRun = () => Promise<{ wallMs: number; rssKiB: number; cpuMs?: number }>;

function trafficSince(mirror: Mirror, counter: WireCounter, before: { down: number; up: number; requests: number }): Traffic {
  const requests = mirror.requests.slice(before.requests);
  const byStatus = new Map<number, number>();
  for (const r of requests) byStatus.set(r.status, (byStatus.get(r.status) ?? 0) + 1);
  return {
    bytesDown: counter.bytesDown - before.down,
    bytesUp: counter.bytesUp - before.up,
    requests: requests.length,
    bodyBytes: requests.reduce((sum, r) => sum + r.bytesSent, 0),
    imageRequests: requests.filter((r) => r.path.endsWith('.img')).length,
    statuses: [...byStatus].sort(([a], [b]) => a - b).map(([s, n]) => `${n}x${s}`).join(' '),
  };
}

async function measureCycle(mirror: Mirror, counter: WireCounter, cycle: CycleRun): Promise<CycleSample> {
  const before = { down: counter.bytesDown, up: counter.bytesUp, requests: mirror.requests.length };
  const { wallMs, rssKiB, cpuMs } = await cycle();
  return { wallMs, rssKiB, cpuMs, traffic: trafficSince(mirror, counter, before) };
}

function cliCycle(command: string[], configPath: string, repoRoot: string): CycleRun {
  const [file, ...args] = command as [string, ...string[]];
  return async () => {
    const run: ProcessRun = await runChecked(file, [...args, '-c', configPath, 'sync', '--once'], { cwd: repoRoot });
    return { wallMs: run.wallMs, rssKiB: run.maxRssKiB, cpuMs: run.cpuMs };
  };
}

const cpuSeconds = (ms: number | undefined): string => (ms === undefined ? '-' : seconds(ms));
const medianOf = (values: Array<number | undefined>): number | undefined =>
  (values.every((v) => v !== undefined) && values.length > 0 ? median(values as number[]) : undefined);

export async function benchNoopCycle(o: NoopBenchOptions): Promise<NoopGoals> {
  const startedMs = performance.now();
  const mirror = await startMirror({
    imageSizeBytes: NOOP_IMAGE_BYTES,
    releases: NOOP_RELEASES.map((codename) => ({
      codename, serials: ['20261101'], arches: [...ARCHES], channels: ['release' as const], variants: ['server' as const],
    })),
  });
  o.log(`  mirror with ${NOOP_RELEASES.length} releases x ${ARCHES.length} arches of ${formatSize(NOOP_IMAGE_BYTES)} images in ${seconds(performance.now() - startedMs)} s`);
  const counter = await startWireCounter(Number(new URL(mirror.url).port));
  const dir = await mkdtemp(path.join(o.workDir, 'noop-'));
  try {
    return await runNoopBench(o, mirror, counter, dir);
  } finally {
    await counter.close();
    await mirror.close();
    await rm(dir, { recursive: true, force: true });
  }
}

async function runNoopBench(o: NoopBenchOptions, mirror: Mirror, counter: WireCounter, dir: string): Promise<NoopGoals> {
  const raw = {
    source: { url: counter.url, keyring: mirror.keyringPath, channel: 'release', releases: NOOP_RELEASES, arches: [...ARCHES] },
    stateDir: path.join(dir, 'state'),
    cacheDir: path.join(dir, 'cache'),
    targets: [{ name: 'local', type: 'directory', path: path.join(dir, 'images') }],
  };
  const configPath = path.join(dir, 'config.yaml');
  await writeFile(configPath, JSON.stringify(raw, null, 2)); // JSON is YAML
  const config = validateConfig(raw, configPath);
  const tsxCli = [process.execPath, '--import', 'tsx', path.join(o.repoRoot, 'src/cli.ts')];
  const primingCli = o.bundledCli ?? tsxCli;

  o.log('  priming: first sync --once (downloads and publishes every image)');
  const first = await measureCycle(mirror, counter, cliCycle(primingCli, configPath, o.repoRoot));
  if (first.traffic.imageRequests !== NOOP_RELEASES.length * ARCHES.length) {
    throw new Error(`the priming cycle fetched ${first.traffic.imageRequests} images, expected ${NOOP_RELEASES.length * ARCHES.length}`);
  }

  const client = createHttpClient(httpClientOptionsFor(config));
  const log = createLogger({ level: config.log.level, destination: new Writable({ write: (_c, _e, cb) => cb() }) });
  const inProcess = async () => {
    const startedMs = performance.now();
    const cpuBefore = process.cpuUsage();
    const store = StateStore.open(config.stateDir);
    try {
      const summary = await runSyncCycle({ config, store, log, client, targets: createTargets(config) });
      if (summary.result !== 'ok' || summary.downloaded > 0) throw new Error(`no-op cycle: ${summary.result}, ${summary.downloaded} downloaded`);
    } finally {
      store.close();
    }
    const cpu = process.cpuUsage(cpuBefore);
    return { wallMs: performance.now() - startedMs, rssKiB: 0, cpuMs: (cpu.user + cpu.system) / 1000 };
  };

  const ways: { name: string; cycle: CycleRun }[] = [
    { name: 'CLI from source (node --import tsx src/cli.ts)', cycle: cliCycle(tsxCli, configPath, o.repoRoot) },
    ...(o.bundledCli ? [{ name: 'CLI bundled (plain node, as installed)', cycle: cliCycle(o.bundledCli, configPath, o.repoRoot) }] : []),
    { name: 'in-process runSyncCycle (daemon)', cycle: inProcess },
  ];
  const samples = new Map<string, CycleSample[]>(ways.map((w) => [w.name, []]));
  try {
    for (let rep = 0; rep < o.runs; rep++) {
      for (const way of ways) {
        o.log(`  no-op ${rep + 1}/${o.runs}: ${way.name}`);
        samples.get(way.name)?.push(await measureCycle(mirror, counter, way.cycle));
      }
    }
  } finally {
    await client.close();
  }

  // What start-up alone costs, for the split between start-up and cycle.
  const startup: { name: string; command: string[] }[] = [
    // With the CLI's node flags: the floor any CLI run pays before its first module.
    { name: 'node -e "" (runtime start-up)', command: [...(o.bundledCli?.slice(0, -1) ?? [process.execPath]), '-e', ''] },
    { name: 'tsx CLI --version (start-up + imports from source)', command: [...tsxCli, '--version'] },
    ...(o.bundledCli ? [{ name: 'bundled CLI --version (start-up + imports)', command: [...o.bundledCli, '--version'] }] : []),
  ];
  const startupRows: string[][] = [];
  let startupCpuMs: number | undefined;
  for (const s of startup) {
    const runs: ProcessRun[] = [];
    for (let i = 0; i < o.runs; i++) runs.push(await runMeasured(s.command[0] as string, s.command.slice(1), { cwd: o.repoRoot }));
    if (s === startup[0]) startupCpuMs = medianOf(runs.map((r) => r.cpuMs));
    startupRows.push([s.name, seconds(median(runs.map((r) => r.wallMs))), cpuSeconds(medianOf(runs.map((r) => r.cpuMs))), mibOfKiB(median(runs.map((r) => r.maxRssKiB)))]);
  }

  const rows: string[][] = [['no-op cycle (nothing new upstream)', 'wall s', 'CPU s', 'first s', 'peak RSS MiB', 'requests', 'statuses', 'wire down', 'bodies', 'wire up', 'goal <= 1 s']];
  for (const way of ways) {
    const list = samples.get(way.name) ?? [];
    const last = list.at(-1)?.traffic;
    const wallMs = median(list.map((s) => s.wallMs));
    rows.push([
      way.name, seconds(wallMs), cpuSeconds(medianOf(list.map((s) => s.cpuMs))), seconds(list[0]?.wallMs ?? 0),
      way.name.startsWith('in-process') ? '-' : mibOfKiB(median(list.map((s) => s.rssKiB))),
      String(last?.requests ?? 0), last?.statuses ?? '', formatSize(last?.bytesDown ?? 0), formatSize(last?.bodyBytes ?? 0),
      formatSize(last?.bytesUp ?? 0), verdict(wallMs, 1000),
    ]);
  }
  console.log(`\n== D. No-op cycle: ${NOOP_RELEASES.length} releases x ${ARCHES.length} arches (release channel, ${NOOP_RELEASES.length * ARCHES.length} images of ${formatSize(NOOP_IMAGE_BYTES)} already published; median of ${o.runs})\n`);
  console.log(formatTable(rows));
  console.log(`\n  priming cycle (everything new): ${seconds(first.wallMs)} s, ${first.traffic.requests} requests, ${formatSize(first.traffic.bytesDown)} down`);
  console.log('  wire down/up: exact bytes through a counting TCP relay (status lines + headers + bodies); bodies: body bytes the mirror sent.');
  console.log('  CPU s: user + system of the whole process (GNU time; start-up included) for a CLI; of the cycle alone in process.');
  const lastTraffic = samples.get(ways[0]?.name ?? '')?.at(-1)?.traffic;
  if (lastTraffic) {
    const perCycle = lastTraffic.bytesDown + lastTraffic.bytesUp;
    console.log(`  polling traffic of the default schedule (hourly): 24 x ${formatSize(perCycle)} = ${formatSize(24 * perCycle)} a day for ${NOOP_RELEASES.length} releases` +
      ` (${formatSize((24 * perCycle) / NOOP_RELEASES.length)} per release; ${lastTraffic.requests / NOOP_RELEASES.length} conditional GETs per release and cycle)`);
  }
  console.log('\n  Start-up cost alone (same process set-up, no cycle):');
  console.log(formatTable([['process', 'wall s', 'CPU s', 'peak RSS MiB'], ...startupRows]));

  const installed = samples.get(ways[o.bundledCli ? 1 : 0]?.name ?? '') ?? [];
  const inProc = samples.get('in-process runSyncCycle (daemon)') ?? [];
  const inProcMs = median(inProc.map((s) => s.wallMs));
  const installedMs = median(installed.map((s) => s.wallMs));
  console.log(`\n  ${o.bundledCli ? 'bundled' : 'tsx'} CLI no-op ${seconds(installedMs)} s = start-up and imports ~${seconds(installedMs - inProcMs)} s + the cycle itself ${seconds(inProcMs)} s (${ratio(inProcMs, installedMs)} of it)`);
  const lastInstalled = installed.at(-1)?.traffic;
  return {
    wallMs: installedMs, cpuMs: medianOf(installed.map((s) => s.cpuMs)), startupCpuMs, bytesDown: lastInstalled?.bytesDown ?? 0,
    bytesOnWire: (lastInstalled?.bytesDown ?? 0) + (lastInstalled?.bytesUp ?? 0), requests: lastInstalled?.requests ?? 0,
  };
}
