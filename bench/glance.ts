/**
 * Benchmark E (runs only when the Glance target exists, src/targets/glance.ts): one image end to end into
 * a real Keystone + Glance started for it by test/openstack/up.sh (with Glance's production token cache;
 * needs the test instance installed), per upload method, against the manual pipeline in the same run:
 * `curl -o`, `sha256sum -c`, `curl -T` PUT to Glance, and beside it the same bytes streamed by C tools alone
 * (a measured reference for what a stream-through costs here). Every image it creates is deleted afterwards.
 * E2 repeats the round with the mirror capped at link speed.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { availableParallelism } from 'node:os';
import path from 'node:path';
import { validateConfig } from '../src/config/load.js';
import { loadAuthSettings } from '../src/openstack/auth-config.js';
import { GlanceClient } from '../src/openstack/glance.js';
import { KeystoneSession } from '../src/openstack/keystone.js';
import { FileUploadReader, digestFile } from '../src/targets/glance/image-digests.js';
import { startMirror, type Mirror, type PublishedImage } from '../test/fixtures/mirror/index.js';
import { loadOpenStackEnv, startExtraOpenStack, type ExtraOpenStack } from '../test/integration/openstack-env.js';
import { flushDisks, formatSize, formatTable, median, mibOfKiB, processCpuMs, ratio, runChecked, seconds, throughput, verdict } from './measure.js';

export interface GlanceBenchOptions {
  sizeBytes: number;
  /** `node cli.mjs` */
  cli: string[];
  workDir: string;
  repoRoot: string;
  log: (line: string) => void;
}

export const GLANCE_METHODS = ['put', 'stream'] as const;

/** The Glance target's name in every config of this run (our images are found by it). */
const BENCH_TARGET = `bench-${process.pid}-${Date.now().toString(36)}`;

export function glanceTargetAvailable(repoRoot: string): boolean {
  return existsSync(path.join(repoRoot, 'src/targets/glance.ts'));
}

interface Phases {
  downloadMs?: number;
  publishMs?: number;
  /** Upload + Glance's answer, from glance.image.verified. */
  transferMs?: number;
  bytes?: number;
  /** The method the target actually used (it may fall back). */
  method?: string;
  /** The target adopted a verified copy already in Glance: nothing was uploaded. */
  adopted?: boolean;
}

/** Phase durations from the CLI's own JSON log (image.download.done, glance.image.verified, image.publish.done). */
function phasesFromLog(stdout: string): Phases {
  const phases: Phases = {};
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line) as Record<string, unknown>;
    } catch {
      continue;
    }
    const ms = typeof r.durationMs === 'number' ? r.durationMs : undefined;
    if (r.event === 'image.download.done') phases.downloadMs = ms;
    if (r.event === 'image.publish.done') {
      phases.publishMs = ms;
      phases.adopted = r.adopted === true;
    }
    if (r.event === 'glance.image.verified') {
      phases.transferMs = ms;
      phases.bytes = typeof r.bytes === 'number' ? r.bytes : undefined;
    }
    if (r.event === 'glance.image.created' && typeof r.method === 'string') phases.method = r.method;
  }
  return phases;
}

/** keystonemiddleware's default `token_cache_time`. */
const PRODUCTION_TOKEN_CACHE_S = 300;

/** The mirror's image bytes at most this fast in round E2: 1 Gbit/s, a good uplink to cloud-images.ubuntu.com (as in A2). */
const LINK_BYTES_PER_SECOND = 125_000_000;

export async function benchGlance(o: GlanceBenchOptions): Promise<void> {
  const title = `\n== E. End to end into the real Glance (${formatSize(o.sizeBytes)} image, 1 run each)\n`;
  if (!glanceTargetAvailable(o.repoRoot)) {
    console.log(`${title}\n  skipped: src/targets/glance.ts does not exist yet (the Glance target is not in this build)`);
    return;
  }
  const openstack = await loadOpenStackEnv();
  if (!openstack.available) {
    console.log(`${title}\n  skipped: ${openstack.reason}`);
    return;
  }
  // The test instance has Glance's token cache off, so that a revoked token is refused at once; that costs
  // every Glance call a Keystone round trip. Benchmarks run against a Glance with the production default.
  const dir = await mkdtemp(path.join(o.workDir, 'glance-'));
  o.log(`  glance: starting a Keystone + Glance with Glance's default token cache (${PRODUCTION_TOKEN_CACHE_S} s), as in production`);
  let cloud: ExtraOpenStack;
  try {
    cloud = await startExtraOpenStack(path.join(dir, 'openstack'), { OPENSTACK_GLANCE_TOKEN_CACHE_TIME: String(PRODUCTION_TOKEN_CACHE_S) });
  } catch (err) {
    console.log(`${title}\n  failed: ${err instanceof Error ? err.message : String(err)}`);
    await rm(dir, { recursive: true, force: true });
    return;
  }
  const env = { ...process.env, ...cloud.env };
  const session = new KeystoneSession(await loadAuthSettings({}, { env }));
  const glance = new GlanceClient(session);
  const mirror = await startMirror({
    releases: [{ codename: 'noble', serials: ['20261101'], arches: ['amd64'], channels: ['release'], variants: ['server'] }],
    imageSizeBytes: o.sizeBytes,
  });
  const created: string[] = [];
  try {
    const [image] = mirror.published();
    if (!image) throw new Error('the fixture mirror published no image');
    const glancePid = Number(await readFile(path.join(cloud.dir, 'run', 'glance-api.pid'), 'utf8').catch(() => '')) || undefined;
    const round = { o, mirror, image, glance, session, env, dir, created, glancePid };
    const loopback = await glanceRound(round, 'loopback');
    console.log(title);
    console.log(`  Glance: an instance of its own from test/openstack/up.sh with keystonemiddleware's default token cache (${PRODUCTION_TOKEN_CACHE_S} s), as in production\n`);
    printRound(loopback, image.sizeBytes);

    // On loopback the download is nearly free and Glance's own intake is most of the manual pipeline;
    // at a real link speed the download costs what it does in production, which is what stream overlaps.
    const throttle = mirror.inject({ path: /\.img$/, fault: 'slow', bytesPerSecond: LINK_BYTES_PER_SECOND });
    let link: Round;
    try {
      link = await glanceRound(round, 'link');
    } finally {
      throttle.remove();
    }
    console.log(`\n== E2. The same with the mirror capped at 1 Gbit/s (${formatSize(LINK_BYTES_PER_SECOND)}/s, as in A2; 1 run each)\n`);
    printRound(link, image.sizeBytes);
    await benchPutUpload(round);
  } catch (err) {
    console.log(`${title}\n  failed: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    for (const id of created) await glance.deleteImage(id).catch(() => undefined);
    await session.close();
    await mirror.close();
    await cloud.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  }
}

interface RoundContext {
  o: GlanceBenchOptions;
  mirror: Mirror;
  image: PublishedImage;
  glance: GlanceClient;
  session: KeystoneSession;
  env: NodeJS.ProcessEnv;
  dir: string;
  created: string[];
  /** glance-api's process, for the CPU it spends (undefined: not counted). */
  glancePid?: number;
}

interface Round {
  manual: Manual;
  /** The same bytes streamed by C tools alone (undefined: it failed; the reason is in its row). */
  native?: NativeStream;
  /** The least time any stream-through could take in this round (undefined: CPU not measured). */
  bound?: StreamBound;
  rows: string[][];
  phaseNotes: string[];
}

/** CPU spent by Glance and by this process (the fixture mirror) between `start` and `stop`, ms. */
interface CpuMeter {
  stop(): Promise<{ glanceMs?: number; mirrorMs: number }>;
}

async function startCpuMeter(glancePid: number | undefined): Promise<CpuMeter> {
  const glanceStart = glancePid ? await processCpuMs(glancePid) : undefined;
  const mirrorStart = process.cpuUsage();
  return {
    async stop() {
      const mirror = process.cpuUsage(mirrorStart);
      const glanceEnd = glancePid ? await processCpuMs(glancePid) : undefined;
      return { glanceMs: glanceStart !== undefined && glanceEnd !== undefined ? glanceEnd - glanceStart : undefined, mirrorMs: (mirror.user + mirror.system) / 1000 };
    },
  };
}

/**
 * CPU seconds of every party (the client side, Glance, the mirror) and the wall time they need at least on
 * this machine's cores, as a ratio of the manual pipeline: no method can beat that floor here.
 */
function cpuColumns(clientMs: number | undefined, cpu: { glanceMs?: number; mirrorMs: number }, manualMs: number): [string, string] {
  if (clientMs === undefined || cpu.glanceMs === undefined) return ['-', '-'];
  const totalMs = clientMs + cpu.glanceMs + cpu.mirrorMs;
  return [`${seconds(clientMs)}+${seconds(cpu.glanceMs)}+${seconds(cpu.mirrorMs)}=${seconds(totalMs)}`, ratio(totalMs / availableParallelism(), manualMs)];
}

/** The manual pipeline, then `sync --once` with each upload method, every image deleted before the next. */
async function glanceRound(r: RoundContext, label: string): Promise<Round> {
  const phaseNotes: string[] = [];
  const rows: string[][] = [['pipeline', 'wall s', 'vs manual', 'upload MiB/s', 'peak RSS MiB', 'CPU s: client+Glance+mirror', 'CPU floor', 'goal']];
  const meter = await startCpuMeter(r.glancePid);
  const manual = await manualPipeline(r.o, r.image, r.glance, r.session, r.dir, r.created, label);
  const spent = await meter.stop();
  // After the meter: this process is also the mirror, whose CPU the meter counts.
  const cpuBefore = process.cpuUsage();
  await digestFile(manual.file, ['md5', 'sha512']);
  const digestCpu = process.cpuUsage(cpuBefore);
  await rm(manual.file, { force: true });
  const bound = streamBound(manual, spent, (digestCpu.user + digestCpu.system) / 1000);
  const manualCpu = cpuColumns(manual.cpuMs, spent, manual.totalMs);
  rows.push(['manual: curl -o; sha256sum -c; curl -T PUT', seconds(manual.totalMs), '1.00x', throughput(r.image.sizeBytes, manual.putMs), mibOfKiB(manual.rssKiB), ...manualCpu, '']);
  const nativeName = 'native stream: curl | tee 3x openssl dgst | curl -T';
  let native: NativeStream | undefined;
  try {
    flushDisks();
    r.o.log(`  glance (${label}): native stream-through`);
    const nativeMeter = await startCpuMeter(r.glancePid);
    native = await nativeStreamThrough(r);
    const cpu = cpuColumns(native.cpuMs, await nativeMeter.stop(), manual.totalMs);
    rows.push([nativeName, seconds(native.wallMs), ratio(native.wallMs, manual.totalMs), throughput(r.image.sizeBytes, native.wallMs), mibOfKiB(native.rssKiB), ...cpu,
      'reference: stream-through by C tools, nothing on disk, no state']);
  } catch (err) {
    rows.push([nativeName, '-', '-', '-', '-', '-', '-', `failed: ${(err instanceof Error ? err.message : String(err)).split('\n').slice(-1)[0]?.slice(0, 160)}`]);
  }
  for (const id of r.created.splice(0)) await r.glance.deleteImage(id).catch(() => undefined);
  for (const method of GLANCE_METHODS) {
    rows.push(await ourPipeline(r.o, r.mirror, r.image, method, r.env, r.dir, r.created, manual, phaseNotes, label, r.glancePid));
    // Gone before the next method runs, or it would adopt this verified copy instead of uploading.
    for (const id of r.created.splice(0)) await r.glance.deleteImage(id).catch(() => undefined);
  }
  return { manual, native, rows, phaseNotes, bound };
}

function printRound({ manual, native, rows, phaseNotes, bound }: Round, sizeBytes: number): void {
  console.log(formatTable(rows));
  for (const note of phaseNotes) console.log(`  ${note}`);
  console.log(`\n  manual steps: curl -o ${seconds(manual.getMs)} s, sha256sum -c ${seconds(manual.checkMs)} s, curl -T PUT ${seconds(manual.putMs)} s`);
  console.log(`  floors: Glance takes in ${formatSize(sizeBytes)} from curl -T, doing nothing else, in ${seconds(manual.putMs)} s = ${ratio(manual.putMs, manual.totalMs)} of the manual pipeline;` +
    ' no upload method can end before Glance has taken the bytes in.');
  console.log(`  CPU floor: the CPU seconds every party spent (the client, Glance, the fixture mirror), spread over ${availableParallelism()} cores, as a ratio of the manual` +
    ' pipeline\'s wall time: no run of that method can be faster than that here, however well it overlaps its steps.');
  if (bound) {
    const r = bound.ms / manual.totalMs;
    console.log(`  stream bound: ${bound.parts} = ${seconds(bound.ms)} s = ${ratio(bound.ms, manual.totalMs)} of the manual pipeline:` +
      ` the fastest any stream-through could be here, with perfect overlap; the 0.5x goal is ${r <= 0.5 ? 'reachable' : 'out of reach'} on this machine in this round.`);
  }
  if (native) {
    console.log(`  native stream: the image streamed by C tools alone, ${seconds(native.wallMs)} s = ${ratio(native.wallMs, manual.totalMs)} of the manual pipeline (the bytes only, like the` +
      ` manual row; the API calls, ${seconds(manual.apiMs)} s, come on top): curl from the mirror, tee to three \`openssl dgst\` (sha256, md5, sha512) and to curl -T into Glance,` +
      ' nothing written to disk, no state, no checks; its digests were checked afterwards against SHA256SUMS and Glance\'s. A measured reference, not a bound:' +
      ` what cloudimg-sync's stream does on top (process start, discovery, the verified cache file, the state) costs more.`);
  }
}

/** Five, not three: on a loaded 2-core machine a median of three swung by 0.1x between sessions. */
const UPLOAD_RUNS = 5;

/**
 * E3: the put upload step alone, the code the target runs (GlanceClient.uploadImageData reading the verified
 * file through FileUploadReader), alternating with `curl -T` so both meet the same machine state; medians.
 * Single whole-pipeline runs (E, E2) swing by a second or more with Glance's own speed.
 */
async function benchPutUpload(r: RoundContext): Promise<void> {
  const file = path.join(r.dir, 'upload.img');
  await runChecked('curl', ['-s', '-f', '-o', file, r.image.url]);
  const headers = path.join(r.dir, 'upload-headers');
  const times = new Map<string, number[]>();
  /** name, upload, and whether the >= 0.95x goal applies (the path sync --once takes after a download). */
  const variants: [string, (id: string) => Promise<void>, boolean?][] = [
    ['curl -T PUT (baseline)', async (id) => {
      await writeFile(headers, `X-Auth-Token: ${await r.session.getToken()}\nContent-Type: application/octet-stream\n`, { mode: 0o600 });
      await runChecked('curl', ['-s', '-f', '-H', `@${headers}`, '-T', file, `${await r.session.imageEndpoint()}/v2/images/${id}/file`]);
    }],
    ['cloudimg-sync put (digests known from the download)', async (id) => {
      const reader = new FileUploadReader(file, { digest: false });
      await r.glance.uploadImageData(id, () => reader, r.image.sizeBytes);
    }, true],
    ['cloudimg-sync put (file digested while read)', async (id) => {
      const reader = new FileUploadReader(file);
      await r.glance.uploadImageData(id, () => reader, r.image.sizeBytes);
    }],
  ];
  try {
    for (let run = 0; run < UPLOAD_RUNS; run++) {
      for (const [name, upload] of variants) {
        const created = await r.glance.createImage({ name: 'cloudimg-sync-bench-upload', disk_format: 'qcow2', container_format: 'bare' });
        r.created.push(created.id);
        flushDisks();
        r.o.log(`  glance upload ${run + 1}/${UPLOAD_RUNS}: ${name}`);
        const started = performance.now();
        await upload(created.id);
        times.set(name, [...(times.get(name) ?? []), performance.now() - started]);
        await r.glance.deleteImage(created.id).catch(() => undefined);
        r.created.splice(r.created.indexOf(created.id), 1);
      }
    }
  } finally {
    await rm(file, { force: true });
  }
  const curlMs = median(times.get(variants[0]![0])!);
  const rows: string[][] = [['upload (alternating)', 'median s', 'MiB/s', 'speed vs curl', 'goal']];
  for (const [name, , hasGoal] of variants) {
    const ms = median(times.get(name)!);
    const speed = curlMs / ms;
    const goal = hasGoal ? `>= 0.95x curl PUT speed: ${speed >= 0.95 ? 'met' : 'MISSED'}` : '';
    rows.push([name, seconds(ms), throughput(r.image.sizeBytes, ms), `${speed.toFixed(2)}x`, goal]);
  }
  console.log(`\n== E3. The put upload step alone into the real Glance (${formatSize(r.image.sizeBytes)}, median of ${UPLOAD_RUNS}, alternating)\n`);
  console.log(formatTable(rows));
  console.log('  sync --once uploads a freshly downloaded file with its digests known (the first row of ours); the second is a file cached before a Glance target asked for them');
}

interface Manual {
  totalMs: number;
  /** CPU of the three commands (curl, sha256sum, curl), when measured. */
  cpuMs?: number;
  getMs: number;
  checkMs: number;
  putMs: number;
  rssKiB: number;
  /** CPU of the two curls alone: the least any client spends moving the bytes in and out. */
  curlCpuMs?: number;
  /** The downloaded image, left for the round to digest and remove. */
  file: string;
  /** The Keystone and Glance calls every upload needs besides the bytes: token, create, get, patch. */
  apiMs: number;
}

async function manualPipeline(o: GlanceBenchOptions, image: PublishedImage, glance: GlanceClient, session: KeystoneSession,
  dir: string, created: string[], label: string): Promise<Manual> {
  const file = path.join(dir, 'manual.img');
  const headers = path.join(dir, 'headers');
  flushDisks();
  o.log(`  glance (${label}): manual pipeline`);
  const get = await runChecked('curl', ['-s', '-f', '-o', file, image.url]);
  const check = await runChecked('sh', ['-c', 'echo "$1  $2" | sha256sum -c --quiet -', 'sh', image.sha256, file]);
  let apiMs = 0;
  const timed = async <T>(call: () => Promise<T>): Promise<T> => {
    const started = performance.now();
    try {
      return await call();
    } finally {
      apiMs += performance.now() - started;
    }
  };
  session.invalidate(); // a fresh token: a sync authenticates once per run
  const token = await timed(() => session.getToken());
  const glanceImage = await timed(() => glance.createImage({ name: 'cloudimg-sync-bench-manual', disk_format: 'qcow2', container_format: 'bare' }));
  created.push(glanceImage.id);
  // The token goes in a file, not on a command line other users can read.
  await writeFile(headers, `X-Auth-Token: ${token}\nContent-Type: application/octet-stream\n`, { mode: 0o600 });
  const put = await runChecked('curl', ['-s', '-f', '-H', `@${headers}`, '-T', file, `${await session.imageEndpoint()}/v2/images/${glanceImage.id}/file`]);
  // What every method does after the bytes: read Glance's digests back, then reveal the image.
  await timed(() => glance.getImage(glanceImage.id));
  await timed(() => glance.patchImage(glanceImage.id, [{ op: 'add', path: '/cloudimg_sync_bench', value: 'revealed' }]));
  return {
    file,
    totalMs: get.wallMs + check.wallMs + put.wallMs, getMs: get.wallMs, checkMs: check.wallMs, putMs: put.wallMs,
    cpuMs: get.cpuMs !== undefined && check.cpuMs !== undefined && put.cpuMs !== undefined ? get.cpuMs + check.cpuMs + put.cpuMs : undefined,
    curlCpuMs: get.cpuMs !== undefined && put.cpuMs !== undefined ? get.cpuMs + put.cpuMs : undefined,
    apiMs,
    rssKiB: Math.max(get.maxRssKiB, check.maxRssKiB, put.maxRssKiB),
  };
}

interface NativeStream {
  wallMs: number;
  cpuMs?: number;
  rssKiB: number;
}

/**
 * What a stream-through of this image by C tools costs on this machine, as a reference beside ours: one
 * shell pipeline (curl | tee to three `openssl dgst` | curl -T - with the length given, so that Glance reads a
 * plain body as ours does), nothing on disk. Its digests are checked against SHA256SUMS and Glance's before
 * the figure counts.
 */
async function nativeStreamThrough(r: RoundContext): Promise<NativeStream> {
  const { session, glance, image, dir } = r;
  session.invalidate();
  const token = await session.getToken();
  const glanceImage = await glance.createImage({ name: 'cloudimg-sync-bench-native', disk_format: 'qcow2', container_format: 'bare' });
  r.created.push(glanceImage.id);
  const headers = path.join(dir, 'native-headers');
  await writeFile(headers, `X-Auth-Token: ${token}\nContent-Type: application/octet-stream\nContent-Length: ${image.sizeBytes}\n`, { mode: 0o600 });
  const out = path.join(dir, 'native');
  await rm(out, { recursive: true, force: true });
  await mkdir(out);
  // Named pipes and background jobs rather than >(...): the shell waits for every digest, so time counts their CPU.
  const script = [
    'set -e -o pipefail; cd "$1"; mkfifo p256 pmd5 p512',
    'openssl dgst -sha256 -r < p256 > sha256 & openssl dgst -md5 -r < pmd5 > md5 & openssl dgst -sha512 -r < p512 > sha512 &',
    'curl -s -f "$2" | tee p256 pmd5 p512 | curl -s -f -H "@$3" -T - "$4"',
    'wait',
  ].join('\n');
  const url = `${await session.imageEndpoint()}/v2/images/${glanceImage.id}/file`;
  const run = await runChecked('bash', ['-c', script, 'native', out, image.url, headers, url]);
  const digest = async (name: string) => (await readFile(path.join(out, name), 'utf8')).split(' ')[0];
  const held = await glance.getImage(glanceImage.id);
  const [sha256, md5, sha512] = [await digest('sha256'), await digest('md5'), await digest('sha512')];
  if (sha256 !== image.sha256 || held.size !== image.sizeBytes || held.checksum !== md5 || (held.os_hash_value && held.os_hash_value !== sha512)) {
    throw new Error(`the native stream's bytes do not check out: sha256 ${sha256}, md5 ${md5} vs Glance ${held.checksum}, size ${held.size}`);
  }
  return { wallMs: run.wallMs, cpuMs: run.cpuMs, rssKiB: run.maxRssKiB };
}

interface StreamBound {
  ms: number;
  /** How it was made up, for the report. */
  parts: string;
}

/**
 * The least wall time any stream-through upload could take on this machine, from parts measured in the
 * same round: it cannot download faster than `curl -o` alone, Glance cannot take the bytes in faster than
 * from `curl -T` alone, the CPU all parties need at least (Glance's and the mirror's as in the manual
 * pipeline, the curls' socket work, the three digests) cannot run faster than spread over every core, and
 * the API calls come on top. Perfect overlap and no process start-up are assumed: a lower bound.
 */
function streamBound(m: Manual, spent: { glanceMs?: number; mirrorMs: number }, digestCpuMs: number): StreamBound | undefined {
  if (m.curlCpuMs === undefined || spent.glanceMs === undefined) return undefined;
  const cpuMs = spent.glanceMs + spent.mirrorMs + m.curlCpuMs + digestCpuMs;
  const cores = availableParallelism();
  const ms = Math.max(m.getMs, m.putMs, cpuMs / cores) + m.apiMs;
  return {
    ms,
    parts: `max(download ${seconds(m.getMs)} s, Glance intake ${seconds(m.putMs)} s, CPU ${seconds(spent.glanceMs)} Glance + ${seconds(spent.mirrorMs)} mirror + ` +
      `${seconds(m.curlCpuMs)} sockets + ${seconds(digestCpuMs)} digests = ${seconds(cpuMs)} s over ${cores} cores) + API calls ${seconds(m.apiMs)} s`,
  };
}

async function ourPipeline(o: GlanceBenchOptions, mirror: Mirror, image: PublishedImage, method: string, env: NodeJS.ProcessEnv,
  dir: string, created: string[], manual: Manual, phaseNotes: string[], label: string, glancePid?: number): Promise<string[]> {
  const name = `cloudimg-sync sync --once, method ${method}`;
  const raw = {
    source: { url: mirror.url, keyring: mirror.keyringPath, channel: 'release', releases: ['noble'], arches: ['amd64'] },
    stateDir: path.join(dir, label, method, 'state'),
    cacheDir: path.join(dir, label, method, 'cache'),
    // A name of this run's own: a verified copy some earlier run left under another name is never adopted.
    targets: [{ name: BENCH_TARGET, type: 'glance', method, nameTemplate: `cloudimg-sync-bench ${method} {serial}` }],
  };
  try {
    validateConfig(raw, 'bench');
  } catch (err) {
    return [name, '-', '-', '-', '-', '-', '-', `skipped: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`];
  }
  const configPath = path.join(dir, `${label}-${method}.yaml`);
  await writeFile(configPath, JSON.stringify(raw));
  flushDisks();
  o.log(`  glance (${label}): sync --once, method ${method}`);
  const [file, ...args] = o.cli as [string, ...string[]];
  try {
    const meter = await startCpuMeter(glancePid);
    const run = await runChecked(file, [...args, '-c', configPath, 'sync', '--once'], { env, cwd: o.repoRoot });
    const cpu = cpuColumns(run.cpuMs, await meter.stop(), manual.totalMs);
    const status = await runChecked(file, [...args, '-c', configPath, 'status', '--json'], { env, cwd: o.repoRoot });
    const images = (JSON.parse(status.stdout) as { images: { targets: Record<string, { imageId?: string }> }[] }).images;
    for (const i of images) {
      const id = i.targets[BENCH_TARGET]?.imageId;
      if (id) created.push(id);
    }
    const p = phasesFromLog(run.stdout);
    if (p.adopted) return [name, '-', '-', '-', '-', '-', '-', 'not measured: the target adopted a verified copy already in Glance instead of uploading'];
    const uploadMiBs = p.transferMs && p.bytes ? throughput(p.bytes, p.transferMs) : '-';
    const putGoal = method === 'put' && p.transferMs
      ? `upload ${ratio(manual.putMs, p.transferMs)} of curl PUT speed (1 run each; E3 has medians), goal >= 0.95x: ${manual.putMs / p.transferMs >= 0.95 ? 'met' : 'MISSED'}`
      : method === 'stream' ? `<= 0.5x manual: ${verdict(run.wallMs / manual.totalMs, 0.5)}` : '';
    const opt = (ms?: number) => (ms === undefined ? '-' : seconds(ms));
    o.log(`  glance (${label}) ${method}: used ${p.method ?? '?'}; download ${opt(p.downloadMs)} s, publish ${opt(p.publishMs)} s, upload+check ${opt(p.transferMs)} s`);
    phaseNotes.push(`${method}: target used method ${p.method ?? '?'}; download ${opt(p.downloadMs)} s, publish ${opt(p.publishMs)} s (of which upload + Glance's answer ${opt(p.transferMs)} s)`);
    return [name, seconds(run.wallMs), ratio(run.wallMs, manual.totalMs), uploadMiBs, mibOfKiB(run.maxRssKiB), ...cpu,
      `${putGoal}${putGoal ? '; ' : ''}RSS <= 120 MiB: ${verdict(run.maxRssKiB, 120 * 1024)}`];
  } catch (err) {
    return [name, '-', '-', '-', '-', '-', '-', `failed: ${(err instanceof Error ? err.message : String(err)).split('\n').slice(-1)[0]?.slice(0, 160)}`];
  }
}
