/**
 * Benchmarks A (download + verify against curl), B (peak RSS by image size) and C (what the difference
 * is made of).
 *
 * One fixture mirror serves a real-sized qcow2 image from a temp dir. Each repetition runs every method
 * once, in a rotating order, each as its own process, with `sync` between runs so that one run's
 * writeback is not paid by the next. Figures are medians over the repetitions.
 */
import { createHash } from 'node:crypto';
import { createReadStream, existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import path from 'node:path';
import { startMirror, type Mirror, type PublishedImage } from '../test/fixtures/mirror/index.js';
import {
  HAVE_GNU_TIME, MiB, flushDisks, formatSize, formatTable, median, mibOfKiB, ratio, runChecked, seconds, throughput, verdict,
  type ProcessRun,
} from './measure.js';

export interface DownloadBenchOptions {
  runs: number;
  mainSizeBytes: number;
  rssSizesBytes: number[];
  /** Command line that runs bench/download-child (e.g. `node child.mjs`). */
  child: string[];
  workDir: string;
  log: (line: string) => void;
}

export interface DownloadGoals {
  ratioVsCurl: number;
  rssKiBBySize: Map<number, number>;
}

interface Method {
  name: string;
  run(image: PublishedImage, dest: string): Promise<ProcessRun>;
}

interface Sample {
  wallMs: number;
  rssKiB: number;
  /** Time inside our process (without node start-up), when it reports it. */
  innerMs?: number;
}

const shell = (script: string, ...args: string[]) => runChecked('sh', ['-c', script, 'sh', ...args]);

function childMs(run: ProcessRun): number | undefined {
  const line = run.stdout.trim().split('\n').at(-1);
  try {
    return (JSON.parse(line ?? '') as { ms?: number }).ms;
  } catch {
    return undefined;
  }
}

export async function benchDownload(o: DownloadBenchOptions): Promise<DownloadGoals> {
  const mirror = await startMirror({
    releases: [{ codename: 'noble', serials: [], arches: ['amd64'], channels: ['release'], variants: ['server'] }],
  });
  const destDir = await mkdtemp(path.join(o.workDir, 'downloads-'));
  try {
    return await runDownloadBench(o, mirror, destDir);
  } finally {
    await mirror.close();
    await rm(destDir, { recursive: true, force: true });
  }
}

async function addImage(mirror: Mirror, serial: string, sizeBytes: number, log: (l: string) => void): Promise<PublishedImage> {
  const startedMs = performance.now();
  const [image] = await mirror.addSerial({ codename: 'noble', serial, imageSizeBytes: sizeBytes });
  if (!image) throw new Error('the fixture mirror published no image');
  log(`  generated a ${formatSize(sizeBytes)} qcow2 image in ${seconds(performance.now() - startedMs)} s`);
  return image;
}

async function runDownloadBench(o: DownloadBenchOptions, mirror: Mirror, destDir: string): Promise<DownloadGoals> {
  const [node, ...childArgs] = o.child as [string, ...string[]];
  const ours = (image: PublishedImage, dest: string) => runChecked(node, [...childArgs, 'download', image.url, dest, image.sha256]);
  const methods: Method[] = [
    { name: 'curl -o FILE (baseline)', run: (i, d) => runChecked('curl', ['-s', '-f', '-o', d, i.url]) },
    { name: 'curl -o && sha256sum -c', run: (i, d) => shell('curl -s -f -o "$1" "$2" && echo "$3  $1" | sha256sum -c --quiet -', d, i.url, i.sha256) },
    { name: 'curl -o && sync FILE (durable)', run: (i, d) => shell('curl -s -f -o "$1" "$2" && sync "$1"', d, i.url) },
    { name: 'cloudimg-sync downloadFile', run: ours },
    { name: 'curl -o /dev/null (HTTP only)', run: (i) => runChecked('curl', ['-s', '-f', '-o', '/dev/null', i.url]) },
    { name: 'undici, body discarded (HTTP only)', run: (i) => runChecked(node, [...childArgs, 'discard', i.url]) },
  ];

  const main = await addImage(mirror, '20261101', o.mainSizeBytes, o.log);
  const samples = new Map<string, Sample[]>(methods.map((m) => [m.name, []]));
  for (let rep = 0; rep < o.runs; rep++) {
    for (let k = 0; k < methods.length; k++) {
      const method = methods[(k + rep) % methods.length] as Method;
      const dest = path.join(destDir, `run-${rep}-${k}.img`);
      flushDisks();
      o.log(`  run ${rep + 1}/${o.runs}: ${method.name}`);
      const run = await method.run(main, dest);
      samples.get(method.name)?.push({ wallMs: run.wallMs, rssKiB: run.maxRssKiB, innerMs: childMs(run) });
      await rm(dest, { force: true });
    }
  }
  flushDisks();

  const med = (name: string, pick: (s: Sample) => number | undefined = (s) => s.wallMs): number =>
    median((samples.get(name) ?? []).map(pick).filter((v): v is number => v !== undefined));
  const curlMs = med('curl -o FILE (baseline)');
  const oursMs = med('cloudimg-sync downloadFile');
  const rows: string[][] = [['method', 'wall s', 'MiB/s', 'vs curl -o', 'inside process s', 'peak RSS MiB', 'goal']];
  for (const m of methods) {
    const wallMs = med(m.name);
    const isOurs = m.name === 'cloudimg-sync downloadFile';
    const rssKiB = med(m.name, (s) => s.rssKiB);
    const goal = isOurs ? `<= 1.05x: ${verdict(wallMs / curlMs, 1.05)}; RSS <= 120 MiB: ${verdict(rssKiB, 120 * 1024)}` : '';
    const inner = med(m.name, (s) => s.innerMs);
    rows.push([m.name, seconds(wallMs), throughput(o.mainSizeBytes, wallMs), ratio(wallMs, curlMs), Number.isNaN(inner) ? '-' : seconds(inner), mibOfKiB(rssKiB), goal]);
  }
  const innerMs = med('cloudimg-sync downloadFile', (s) => s.innerMs);
  console.log(`\n== A. Download + verify a ${formatSize(o.mainSizeBytes)} image from the fixture mirror (median of ${o.runs}; each a separate process${HAVE_GNU_TIME ? ', RSS by /usr/bin/time' : ', RSS by VmHWM polling'})\n`);
  console.log(formatTable(rows));
  console.log(`\n  cloudimg-sync: ${seconds(innerMs)} s inside downloadFile, ${seconds(oursMs - innerMs)} s node start-up + imports; ` +
    `ratio of the download alone vs curl -o: ${ratio(innerMs, curlMs)}`);

  // At link speed: the mirror sends at most 1 Gbit/s, as a good uplink to cloud-images.ubuntu.com would.
  // On loopback the client's CPU is the bottleneck; on a real link the network is, and this shows our cost there.
  const linkBytesPerSecond = 125_000_000;
  const throttle = mirror.inject({ path: /\.img$/, fault: 'slow', bytesPerSecond: linkBytesPerSecond });
  const linkRows: string[][] = [['method (mirror capped at 1 Gbit/s)', 'wall s', 'MiB/s', 'vs curl -o']];
  const linkMs = new Map<string, number>();
  for (const m of methods.slice(0, 4)) {
    const dest = path.join(destDir, 'link.img');
    flushDisks();
    o.log(`  run at 1 Gbit/s: ${m.name}`);
    linkMs.set(m.name, (await m.run(main, dest)).wallMs);
    await rm(dest, { force: true });
  }
  throttle.remove();
  const linkCurlMs = linkMs.get('curl -o FILE (baseline)')!;
  for (const [name, ms] of linkMs) linkRows.push([name, seconds(ms), throughput(o.mainSizeBytes, ms), ratio(ms, linkCurlMs)]);
  console.log(`\n== A2. The same at link speed (1 run each; the mirror throttled to ${formatSize(linkBytesPerSecond)}/s)\n`);
  console.log(formatTable(linkRows));

  // Flat memory: the same download at other sizes.
  const rssKiBBySize = new Map<number, number>([[o.mainSizeBytes, med('cloudimg-sync downloadFile', (s) => s.rssKiB)]]);
  const rssRows: string[][] = [['image size', 'wall s', 'MiB/s', 'peak RSS MiB', 'goal <= 120 MiB']];
  const idle = await runChecked(node, [...childArgs, 'idle']);
  rssRows.push(['(imports only, no download)', seconds(idle.wallMs), '-', mibOfKiB(idle.maxRssKiB), '']);
  const sizes = [...new Set([...o.rssSizesBytes, o.mainSizeBytes])].sort((a, b) => a - b);
  let serial = 20261102;
  for (const size of sizes) {
    let wallMs = oursMs;
    let rssKiB = rssKiBBySize.get(size) ?? 0;
    let note = `median of ${o.runs} (table A)`;
    if (size !== o.mainSizeBytes) {
      const image = await addImage(mirror, String(serial++), size, o.log);
      const dest = path.join(destDir, `rss-${size}.img`);
      flushDisks();
      o.log(`  run: cloudimg-sync downloadFile, ${formatSize(size)}`);
      const run = await ours(image, dest);
      await rm(dest, { force: true });
      await mirror.removeSerial({ codename: 'noble', serial: image.serial });
      flushDisks();
      wallMs = run.wallMs;
      rssKiB = run.maxRssKiB;
      note = '1 run';
      rssKiBBySize.set(size, rssKiB);
    }
    rssRows.push([formatSize(size), seconds(wallMs), throughput(size, wallMs), mibOfKiB(rssKiB), `${verdict(rssKiB, 120 * 1024)} (${note})`]);
  }
  console.log('\n== B. Peak RSS of the cloudimg-sync download process by image size (flat memory)\n');
  console.log(formatTable(rssRows));
  // 3. Where the difference comes from.
  const hashRows = await benchHashing(mirror, main, o);
  const durableMs = med('curl -o && sync FILE (durable)');
  const curlNullMs = med('curl -o /dev/null (HTTP only)');
  const undiciMs = med('undici, body discarded (HTTP only)', (s) => s.innerMs);
  console.log(`\n== C. Bottlenecks: the parts of "download + verify" measured alone (${formatSize(o.mainSizeBytes)})\n`);
  console.log(formatTable(hashRows.rows));
  console.log('\n  Extra time of cloudimg-sync over curl -o, and its candidate causes:');
  console.log(formatTable([
    ['part', 's', 'how measured'],
    ['total extra (ours - curl -o)', seconds(oursMs - curlMs), 'table A'],
    ['fsync for durability', seconds(durableMs - curlMs), '(curl -o && sync FILE) - curl -o'],
    ['sha256 on one core', seconds(hashRows.nodeHashMs), 'Node crypto over the file, page cache'],
    ['HTTP client (undici vs curl)', seconds(undiciMs - curlNullMs), 'undici (time inside its process) - curl -o /dev/null'],
    ['node start-up + imports', seconds(oursMs - innerMs), 'process wall - time inside downloadFile'],
  ]));
  console.log('  The parts overlap (hashing runs while the socket fills, writeback while hashing), so they need not add up.');

  return { ratioVsCurl: oursMs / curlMs, rssKiBBySize };
}

async function hashInNode(file: string): Promise<number> {
  const startedMs = performance.now();
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(file, { highWaterMark: MiB })) hash.update(chunk as Buffer);
  hash.digest();
  return performance.now() - startedMs;
}

async function benchHashing(mirror: Mirror, image: PublishedImage, o: DownloadBenchOptions): Promise<{ rows: string[][]; nodeHashMs: number }> {
  const file = path.join(mirror.root, image.urlPath);
  await hashInNode(file); // warm the page cache and the code path
  o.log('  hashing: Node crypto, sha256sum, openssl');
  const nodeRuns: number[] = [];
  for (let i = 0; i < o.runs; i++) nodeRuns.push(await hashInNode(file));
  const nodeHashMs = median(nodeRuns);
  const sha256sum = await runChecked('sha256sum', [file]);
  const rows: string[][] = [['sha256 of the file (in page cache)', 'wall s', 'MiB/s', 'vs Node', 'runs']];
  rows.push(['Node crypto.createHash, 1 MiB reads', seconds(nodeHashMs), throughput(image.sizeBytes, nodeHashMs), '1.00x', String(o.runs)]);
  rows.push(['sha256sum (coreutils)', seconds(sha256sum.wallMs), throughput(image.sizeBytes, sha256sum.wallMs), ratio(sha256sum.wallMs, nodeHashMs), '1']);
  if (existsSync('/usr/bin/openssl')) {
    const openssl = await runChecked('openssl', ['dgst', '-sha256', file]);
    rows.push(['openssl dgst -sha256', seconds(openssl.wallMs), throughput(image.sizeBytes, openssl.wallMs), ratio(openssl.wallMs, nodeHashMs), '1']);
  }
  return { rows, nodeHashMs };
}
