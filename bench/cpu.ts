/**
 * Benchmark F: the client's CPU per GiB (user + system of the whole process, start-up included) on each
 * path an image takes, next to a reference made of C tools that moves the same bytes and computes the same
 * digests, measured in the same run, alternating with ours:
 *
 *   directory  sync --once into a directory target      curl -o F && openssl dgst -sha256 F && sync F
 *   put        sync --once into Glance, method put        curl -o F && openssl dgst (each digest) F && curl -T F
 *   stream     sync --once into Glance, method stream     curl | tee to openssl dgst (each digest) | curl -T -
 *
 * The directory row also measures a floor, with the bench's download child (bench/download-child.ts `hash`):
 * a node process with our undici client that receives the image and hashes it, storing nothing and running
 * none of the CLI (no config, state, signature check or disk): what node, undici and the digest cost for the
 * image before anything of ours runs. What `sync --once` spends above it is the CLI's own. (undici's raw
 * handler API instead of the response stream was tried for it and cost more: 2.89 CPU-s/GiB, against
 * 2.17 and 2.21 in two bench runs minutes before, not alternated with it.)
 *
 * "The same digests" are the ones our run computed, read from its `image.download.done` event, so the
 * reference follows whatever a target asks for. The reference's Keystone and Glance calls (token, create)
 * are made by this process and not counted; ours are. Glance paths run only when the local OpenStack is
 * installed, against a Keystone + Glance of their own with Glance's production token cache (as in E).
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadAuthSettings } from '../src/openstack/auth-config.js';
import { GlanceClient } from '../src/openstack/glance.js';
import { KeystoneSession } from '../src/openstack/keystone.js';
import { startMirror, type Mirror, type PublishedImage } from '../test/fixtures/mirror/index.js';
import { loadOpenStackEnv, startExtraOpenStack } from '../test/integration/openstack-env.js';
import { GiB, HAVE_GNU_TIME, flushDisks, formatSize, formatTable, median, mibOfKiB, ratio, runChecked, seconds, verdict, type ProcessRun } from './measure.js';

/** The paths section F can measure (`--cpu-paths`); put and stream need the local OpenStack. */
export const CPU_PATHS = ['directory', 'put', 'stream'] as const;
export type CpuPath = (typeof CPU_PATHS)[number];

export interface CpuBenchOptions {
  runs: number;
  /** Default: all of CPU_PATHS. */
  paths?: ReadonlySet<CpuPath>;
  sizeBytes: number;
  /** `node cli.mjs` as installed. */
  cli: string[];
  /** `node download-child.mjs` (bench/download-child.ts), for the directory row's floor. */
  child?: string[];
  workDir: string;
  repoRoot: string;
  log: (line: string) => void;
}

export interface CpuPathFigure {
  path: string;
  oursCpuMs: number;
  refCpuMs: number;
  oursUserMs: number;
  refUserMs: number;
  oursWallMs: number;
  refWallMs: number;
  oursRssKiB: number;
  /** The floor (directory row): node + undici receiving and hashing the image, nothing stored, no CLI. */
  floorCpuMs?: number;
  floorUserMs?: number;
  /** CPU ms of each run, in the order they ran: how far the machine moved them. */
  runsCpuMs: { ours: number[]; ref: number[]; floor: number[] };
  /** Digests our run computed (and the reference computed too). */
  digests: string[];
}

interface Sample {
  cpuMs: number;
  userMs: number;
  wallMs: number;
  rssKiB: number;
}

const TARGET_PREFIX = `bench-cpu-${process.pid}`;

/** CPU per GiB in seconds, from ms spent on `sizeBytes`. */
const perGiB = (ms: number, sizeBytes: number): string => ((ms / 1000) * (GiB / sizeBytes)).toFixed(2);

export async function benchCpu(o: CpuBenchOptions): Promise<CpuPathFigure[]> {
  console.log(`\n== F. Client CPU per GiB against C tools doing the same work (${formatSize(o.sizeBytes)} image; median of ${o.runs}, alternating)\n`);
  if (!HAVE_GNU_TIME) {
    console.log('  skipped: needs GNU time for the CPU of whole processes (apt-get install -y time)');
    return [];
  }
  const mirror = await startMirror({
    releases: [{ codename: 'noble', serials: ['20261101'], arches: ['amd64'], channels: ['release'], variants: ['server'] }],
    imageSizeBytes: o.sizeBytes,
  });
  const dir = await mkdtemp(path.join(o.workDir, 'cpu-'));
  const figures: CpuPathFigure[] = [];
  try {
    const [image] = mirror.published();
    if (!image) throw new Error('the fixture mirror published no image');
    const paths = o.paths ?? new Set(CPU_PATHS);
    if (paths.has('directory')) figures.push(await directoryPath(o, mirror, image, dir));
    const methods = (['put', 'stream'] as const).filter((m) => paths.has(m));
    if (methods.length > 0) figures.push(...await glancePaths(o, mirror, image, dir, methods));
  } finally {
    await mirror.close();
    await rm(dir, { recursive: true, force: true });
  }
  const rows: string[][] = [['path', 'ours CPU s/GiB (user)', 'reference CPU s/GiB (user)', 'CPU vs ref', 'floor CPU s/GiB (user), vs ref', 'ours wall s', 'ref wall s', 'ours peak RSS MiB', 'digests', 'goal CPU <= 1.2x, RSS <= 120 MiB']];
  for (const f of figures) {
    const floor = f.floorCpuMs === undefined ? '-' : `${perGiB(f.floorCpuMs, o.sizeBytes)} (${perGiB(f.floorUserMs ?? 0, o.sizeBytes)}), ${ratio(f.floorCpuMs, f.refCpuMs)}`;
    rows.push([
      f.path, `${perGiB(f.oursCpuMs, o.sizeBytes)} (${perGiB(f.oursUserMs, o.sizeBytes)})`, `${perGiB(f.refCpuMs, o.sizeBytes)} (${perGiB(f.refUserMs, o.sizeBytes)})`, ratio(f.oursCpuMs, f.refCpuMs), floor,
      seconds(f.oursWallMs), seconds(f.refWallMs), mibOfKiB(f.oursRssKiB), f.digests.join('+'), `${verdict(f.oursCpuMs / f.refCpuMs, 1.2)}, ${verdict(f.oursRssKiB, 120 * 1024)}`,
    ]);
  }
  console.log(formatTable(rows));
  for (const f of figures) {
    const runs = (['ours', 'ref', 'floor'] as const).filter((side) => f.runsCpuMs[side].length > 0)
      .map((side) => `${side === 'ref' ? 'reference' : side} ${f.runsCpuMs[side].map((ms) => perGiB(ms, o.sizeBytes)).join(' ')}`);
    console.log(`  ${f.path.split(':')[0]}, CPU s/GiB of each run: ${runs.join('; ')}`);
  }
  console.log('  CPU: user + system of the whole process tree (GNU time), start-up included; per GiB of image. Reference: curl, openssl dgst, sync/curl -T;');
  console.log('  its Keystone token and image create are made by the bench and not counted, ours are. Every path\'s figures are medians of alternating runs.');
  console.log('  Floor: node with our undici client receiving the image and computing its digests, storing nothing, running no CLI');
  console.log('  (bench/download-child.ts hash): what node, undici and the digests cost before anything of ours runs.');
  return figures;
}

const median0 = (samples: Sample[], pick: (s: Sample) => number): number => median(samples.map(pick));

function sampleOf(run: ProcessRun): Sample {
  if (run.cpuMs === undefined) throw new Error('GNU time gave no CPU figure');
  return { cpuMs: run.cpuMs, userMs: run.userMs ?? 0, wallMs: run.wallMs, rssKiB: run.maxRssKiB };
}

/** The digests our run computed, from its log. */
function digestsOf(stdout: string): string[] {
  for (const line of stdout.split('\n')) {
    if (!line.includes('"image.download.done"')) continue;
    const record = JSON.parse(line) as { digests?: unknown };
    if (Array.isArray(record.digests)) return record.digests.map(String);
  }
  return ['sha256'];
}

type Measured = { ours: Sample[]; ref: Sample[]; floor: Sample[]; digests: string[] };

async function alternate(o: CpuBenchOptions, label: string, ours: (run: number) => Promise<ProcessRun>, ref: (run: number, digests: string[]) => Promise<ProcessRun>,
  after?: () => Promise<void>, floor?: (digests: string[]) => Promise<ProcessRun>): Promise<Measured> {
  const oursSamples: Sample[] = [];
  const refSamples: Sample[] = [];
  const floorSamples: Sample[] = [];
  let digests = ['sha256'];
  for (let run = 0; run < o.runs; run++) {
    // Ours first in one run, the reference first in the next: neither always meets the warmer machine.
    const order = run % 2 === 0 ? ['ours', 'ref'] : ['ref', 'ours'];
    if (floor) order.splice(run % 2 === 0 ? 2 : 0, 0, 'floor');
    for (const which of order) {
      flushDisks();
      o.log(`  cpu ${label} ${run + 1}/${o.runs}: ${which}`);
      if (which === 'ours') {
        const result = await ours(run);
        digests = digestsOf(result.stdout);
        oursSamples.push(sampleOf(result));
      } else if (which === 'floor' && floor) {
        floorSamples.push(sampleOf(await floor(digests)));
      } else {
        refSamples.push(sampleOf(await ref(run, digests)));
      }
      await after?.();
    }
  }
  return { ours: oursSamples, ref: refSamples, floor: floorSamples, digests };
}

function figure(pathName: string, r: Measured): CpuPathFigure {
  return {
    runsCpuMs: { ours: r.ours.map((x) => x.cpuMs), ref: r.ref.map((x) => x.cpuMs), floor: r.floor.map((x) => x.cpuMs) },
    ...(r.floor.length > 0 ? { floorCpuMs: median0(r.floor, (s) => s.cpuMs), floorUserMs: median0(r.floor, (s) => s.userMs) } : {}),
    path: pathName, digests: r.digests,
    oursCpuMs: median0(r.ours, (s) => s.cpuMs), refCpuMs: median0(r.ref, (s) => s.cpuMs),
    oursUserMs: median0(r.ours, (s) => s.userMs), refUserMs: median0(r.ref, (s) => s.userMs),
    oursWallMs: median0(r.ours, (s) => s.wallMs), refWallMs: median0(r.ref, (s) => s.wallMs), oursRssKiB: median0(r.ours, (s) => s.rssKiB),
  };
}

function sourceConfig(mirror: Mirror) {
  return { url: mirror.url, keyring: mirror.keyringPath, channel: 'release', releases: ['noble'], arches: ['amd64'] };
}

async function syncOnce(o: CpuBenchOptions, mirror: Mirror, runDir: string, target: Record<string, unknown>, env?: NodeJS.ProcessEnv): Promise<ProcessRun> {
  await rm(runDir, { recursive: true, force: true });
  await mkdir(runDir, { recursive: true });
  const configPath = path.join(runDir, 'config.yaml');
  await writeFile(configPath, JSON.stringify({ source: sourceConfig(mirror), stateDir: path.join(runDir, 'state'), cacheDir: path.join(runDir, 'cache'), targets: [target] }));
  const [file, ...args] = o.cli as [string, ...string[]];
  const run = await runChecked(file, [...args, '-c', configPath, 'sync', '--once'], { env, cwd: o.repoRoot });
  if (!run.stdout.includes('"result":"ok"')) throw new Error(`sync --once did not succeed: ${run.stdout.trim().split('\n').at(-1)?.slice(0, 300)}`);
  return run;
}

async function directoryPath(o: CpuBenchOptions, mirror: Mirror, image: PublishedImage, dir: string): Promise<CpuPathFigure> {
  const runDir = path.join(dir, 'directory');
  const refFile = path.join(dir, 'ref.img');
  const r = await alternate(o, 'directory',
    () => syncOnce(o, mirror, runDir, { name: 'local', type: 'directory', path: path.join(runDir, 'images') }),
    () => runChecked('sh', ['-c', 'curl -s -f -o "$1" "$2" && openssl dgst -sha256 "$1" >/dev/null && sync "$1"', 'sh', refFile, image.url]),
    async () => {
      await rm(refFile, { force: true });
      await rm(runDir, { recursive: true, force: true });
    },
    o.child && (async (digests) => {
      const [file, ...args] = o.child as [string, ...string[]];
      const run = await runChecked(file, [...args, 'hash', image.url, digests.join(',')]);
      const result = JSON.parse(run.stdout.trim().split('\n').at(-1) ?? '{}') as { bytes?: number; digests?: string[] };
      if (result.bytes !== image.sizeBytes || result.digests?.[digests.indexOf('sha256')] !== image.sha256) throw new Error(`the floor's download is not the image: ${run.stdout.trim().slice(0, 300)}`);
      return run;
    }));
  return figure('directory: sync --once vs curl -o && openssl dgst && sync', r);
}

async function glancePaths(o: CpuBenchOptions, mirror: Mirror, image: PublishedImage, dir: string, methods: readonly ('put' | 'stream')[]): Promise<CpuPathFigure[]> {
  const openstack = await loadOpenStackEnv();
  if (!openstack.available) {
    console.log(`  Glance paths skipped: ${openstack.reason}`);
    return [];
  }
  o.log('  cpu: starting a Keystone + Glance of its own (production token cache)');
  const cloud = await startExtraOpenStack(path.join(dir, 'openstack'), { OPENSTACK_GLANCE_TOKEN_CACHE_TIME: '300' });
  const env = { ...process.env, ...cloud.env };
  const session = new KeystoneSession(await loadAuthSettings({}, { env }));
  const glance = new GlanceClient(session);
  const created: string[] = [];
  const cleanUp = async () => {
    for (const id of created.splice(0)) await glance.deleteImage(id).catch(() => undefined);
  };
  try {
    const figures: CpuPathFigure[] = [];
    for (const method of methods) {
      const runDir = path.join(dir, method);
      const ours = async (run: number) => {
        const target = { name: `${TARGET_PREFIX}-${method}-${run}`, type: 'glance', method, nameTemplate: `cloudimg-sync-bench-cpu ${method} ${run} {serial}` };
        const result = await syncOnce(o, mirror, runDir, target, env);
        for (const m of result.stdout.matchAll(/"event":"image\.publish\.done"[^\n]*?"imageId":"([^"]+)"/g)) created.push(m[1] as string);
        return result;
      };
      const ref = (_run: number, digests: string[]) => (method === 'put' ? refPut : refStream)(session, glance, image, dir, digests, created);
      figures.push(figure(`${method}: sync --once into Glance vs ${method === 'put' ? 'curl -o && openssl dgst && curl -T' : 'curl | tee openssl dgst | curl -T -'}`,
        await alternate(o, method, ours, ref, cleanUp)));
    }
    return figures;
  } finally {
    await cleanUp();
    await session.close();
    await cloud.stop().catch(() => undefined);
  }
}

/** A hidden image to upload into, and a header file with the token (not on a command line others can read). */
async function uploadTarget(session: KeystoneSession, glance: GlanceClient, dir: string, created: string[], sizeBytes?: number): Promise<{ url: string; headers: string }> {
  const token = await session.getToken();
  const image = await glance.createImage({ name: 'cloudimg-sync-bench-cpu-ref', disk_format: 'qcow2', container_format: 'bare' });
  created.push(image.id);
  const headers = path.join(dir, 'ref-headers');
  await writeFile(headers, `X-Auth-Token: ${token}\nContent-Type: application/octet-stream\n${sizeBytes ? `Content-Length: ${sizeBytes}\n` : ''}`, { mode: 0o600 });
  return { url: `${await session.imageEndpoint()}/v2/images/${image.id}/file`, headers };
}

async function refPut(session: KeystoneSession, glance: GlanceClient, image: PublishedImage, dir: string, digests: string[], created: string[]): Promise<ProcessRun> {
  const file = path.join(dir, 'ref-put.img');
  const target = await uploadTarget(session, glance, dir, created);
  const dgst = digests.map((d) => `openssl dgst -${d} "$1" >/dev/null`).join(' && ');
  try {
    return await runChecked('sh', ['-c', `curl -s -f -o "$1" "$2" && ${dgst} && curl -s -f -H "@$3" -T "$1" "$4"`, 'sh', file, image.url, target.headers, target.url]);
  } finally {
    await rm(file, { force: true });
  }
}

async function refStream(session: KeystoneSession, glance: GlanceClient, image: PublishedImage, dir: string, digests: string[], created: string[]): Promise<ProcessRun> {
  const target = await uploadTarget(session, glance, dir, created, image.sizeBytes);
  const out = path.join(dir, 'ref-stream');
  await rm(out, { recursive: true, force: true });
  await mkdir(out);
  // Named pipes and background jobs rather than >(...): the shell waits for every digest, so time counts their CPU.
  const script = [
    `set -e -o pipefail; cd "$1"; mkfifo ${digests.map((d) => `p-${d}`).join(' ')}`,
    digests.map((d) => `openssl dgst -${d} -r < p-${d} > ${d} &`).join(' '),
    `curl -s -f "$2" | tee ${digests.map((d) => `p-${d}`).join(' ')} | curl -s -f -H "@$3" -T - "$4"`,
    'wait',
  ].join('\n');
  const run = await runChecked('bash', ['-c', script, 'ref', out, image.url, target.headers, target.url]);
  const sha256 = (await readFile(path.join(out, 'sha256'), 'utf8').catch(() => '')).split(' ')[0];
  if (sha256 !== image.sha256) throw new Error(`the reference stream's sha256 ${sha256} is not the signed ${image.sha256}`);
  return run;
}
