/**
 * kill -9 torture (not in CI): `npm run torture -- [--targets directory,put,stream,web-download,glance-direct]
 *   [--random N] [--events K] [--image-size 4MiB]`
 *
 * For each target kind, against the fixture mirror: a `sync --once` child is SIGKILLed at random moments
 * (`--random` rounds) and right after each k-th log event of a cycle (`--events`: every event index up to K),
 * then a clean cycle runs and an invariant checker looks at the target, the cache and `status`:
 *   - the cycle after the kill succeeds (exit 0);
 *   - each wanted image exactly once on the target: complete, visible, the signed bytes (directory: sha256;
 *     Glance: active, not hidden, verified flag, size + os_hash_value/checksum against the file);
 *   - no leftovers of ours (Glance images not verified or hidden beyond retention; `.tmp-*` files);
 *   - no stray files in the cache (keepCache is false);
 *   - `status --json` names exactly what the target holds for each published image.
 * A new serial is added upstream after every few rounds, so downloads, publications and retention keep happening.
 * Glance kinds need the test OpenStack (`npm run openstack:ensure`); run under the shared flock. Prints counts.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { resolveAuthSettings } from '../src/openstack/auth-config.js';
import { GlanceClient, type GlanceImage } from '../src/openstack/glance.js';
import { KeystoneSession } from '../src/openstack/keystone.js';
import { PROP } from '../src/targets/glance/image-spec.js';
import { loadOpenStackEnv } from '../test/integration/openstack-env.js';
import { startMirror, type Mirror, type PublishedImage } from '../test/fixtures/mirror/index.js';

const CLI = fileURLToPath(new URL('../src/cli.ts', import.meta.url));
const KINDS = ['directory', 'put', 'stream', 'web-download', 'glance-direct'] as const;
type Kind = (typeof KINDS)[number];

const { values } = parseArgs({
  options: {
    targets: { type: 'string', default: KINDS.join(',') },
    random: { type: 'string', default: '6' },
    events: { type: 'string', default: '12' },
    'image-size': { type: 'string', default: '4' },
  },
});
const kinds = values.targets.split(',').map((k) => k.trim()) as Kind[];
for (const k of kinds) if (!KINDS.includes(k)) throw new Error(`unknown target kind ${k}; one of ${KINDS.join(', ')}`);
const randomRounds = Number(values.random);
const eventRounds = Number(values.events);
const imageSizeBytes = Number(values['image-size']) * 1024 * 1024;

interface Counts { kills: number; randomKills: number; eventKills: number; exitedBeforeKill: number; cleanRuns: number; violations: string[] }

interface World {
  kind: Kind;
  dir: string;
  configPath: string;
  mirror: Mirror;
  targetName: string;
  env: NodeJS.ProcessEnv;
  glance?: GlanceClient;
  serial: number;
}

function cli(world: World, args: string[]): ReturnType<typeof spawn> {
  return spawn(process.execPath, ['--import', 'tsx', CLI, ...args, '--config', world.configPath], {
    env: world.env, stdio: ['ignore', 'pipe', 'pipe'],
  });
}

/** Run `sync --once`; kill it after `afterEvents` event lines or `afterMs`. Resolves with whether it was killed. */
function syncOnce(world: World, kill: { afterEvents?: number; afterMs?: number } = {}): Promise<{ killed: boolean; code: number | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = cli(world, ['sync', '--once', '--no-pretty']);
    let events = 0;
    let killed = false;
    let stderr = '';
    const doKill = () => { if (!killed && child.exitCode === null) { killed = true; child.kill('SIGKILL'); } };
    const timer = kill.afterMs !== undefined ? setTimeout(doKill, kill.afterMs) : undefined;
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (kill.afterEvents === undefined || killed) return;
      if (line.includes('"event":') && ++events >= kill.afterEvents) doKill();
    });
    child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('exit', (code) => { if (timer) clearTimeout(timer); resolve({ killed, code, stderr }); });
  });
}

function sha256Of(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.join(d.parentPath, d.name));
}

/** The newest serial of each release/arch upstream: what must be published. */
function wanted(world: World): PublishedImage[] {
  const all = world.mirror.published({ channel: 'release', variant: 'server' });
  const newest = new Map<string, PublishedImage>();
  for (const image of all) {
    const key = `${image.release}/${image.arch}`;
    if (!newest.has(key) || newest.get(key)!.serial < image.serial) newest.set(key, image);
  }
  return [...newest.values()];
}

async function checkInvariants(world: World): Promise<string[]> {
  const problems: string[] = [];
  const status = await new Promise<string>((resolve) => {
    const child = cli(world, ['status', '--json']);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    child.on('exit', () => resolve(out));
  });
  const images = (JSON.parse(status) as { images: Array<{ release: string; arch: string; serial: string; targets: Record<string, { state: string; imageId: string | null }> }> }).images;
  const cacheFiles = filesUnder(path.join(world.dir, 'cache'));
  if (cacheFiles.length > 0) problems.push(`stray cache files: ${cacheFiles.join(', ')}`);
  for (const image of wanted(world)) {
    const recorded = images.find((i) => i.release === image.release && i.arch === image.arch && i.serial === image.serial)?.targets[world.targetName];
    if (recorded?.state !== 'published') problems.push(`${image.release}/${image.arch}/${image.serial}: status says ${recorded?.state ?? 'nothing'}`);
    if (world.kind === 'directory') {
      const file = path.join(world.dir, 'images', image.release, image.serial, image.fileName);
      if (!existsSync(file) || sha256Of(file) !== image.sha256) problems.push(`${file}: missing or not the signed bytes`);
      else if (recorded?.imageId !== file) problems.push(`${file}: status names ${recorded?.imageId}`);
    } else {
      const ours = (await world.glance!.findImages({ [PROP.target]: world.targetName, ubuntu_serial: image.serial }, { includeHidden: true }))
        .filter((g) => (g as Record<string, unknown>).ubuntu_codename === image.release && String((g as Record<string, unknown>).architecture) === (image.arch === 'amd64' ? 'x86_64' : 'aarch64'));
      if (ours.length !== 1) { problems.push(`${image.release}/${image.arch}/${image.serial}: ${ours.length} Glance images`); continue; }
      const g = ours[0]! as GlanceImage & Record<string, unknown>;
      const bytes = readFileSync(path.join(world.mirror.root, image.urlPath));
      const sha512 = createHash('sha512').update(bytes).digest('hex');
      if (g.status !== 'active' || g.os_hidden !== false || g[PROP.verified] !== 'true') problems.push(`${g.id}: ${g.status}, hidden ${g.os_hidden}, verified ${String(g[PROP.verified])}`);
      if (g.size !== bytes.length || (g.os_hash_value !== undefined && g.os_hash_value !== null && g.os_hash_value !== sha512)) problems.push(`${g.id}: not the signed bytes`);
      if (recorded?.imageId !== g.id) problems.push(`${g.id}: status names ${recorded?.imageId}`);
    }
  }
  if (world.kind === 'directory') {
    const tmp = filesUnder(path.join(world.dir, 'images')).filter((f) => /\.tmp(-\d+)?$/.test(f));
    if (tmp.length > 0) problems.push(`temporary files left: ${tmp.join(', ')}`);
  } else {
    const leftovers = (await world.glance!.findImages({ [PROP.target]: world.targetName }, { includeHidden: true }))
      .filter((g) => g.status !== 'active' || (g as Record<string, unknown>)[PROP.verified] !== 'true');
    if (leftovers.length > 0) problems.push(`Glance leftovers of ours after a clean cycle: ${leftovers.map((g) => `${g.id}(${g.status})`).join(', ')}`);
  }
  return problems;
}

async function makeWorld(kind: Kind, glanceEnv: Record<string, string> | undefined): Promise<World> {
  const dir = mkdtempSync(path.join(tmpdir(), `torture-${kind}-`));
  const mirror = await startMirror({ releases: [{ codename: 'noble', serials: ['20261101'], arches: ['amd64', 'arm64'], channels: ['release'] }], imageSizeBytes });
  const targetName = `torture-${kind}-${process.pid}`;
  const target = kind === 'directory'
    ? { name: targetName, type: 'directory', path: path.join(dir, 'images') }
    : { name: targetName, type: 'glance', method: kind, visibility: 'public', hideGraceHours: 0 };
  const config = {
    source: { url: mirror.url, keyring: mirror.keyringPath, releases: ['noble'], arches: ['amd64', 'arm64'] },
    stateDir: path.join(dir, 'state'), cacheDir: path.join(dir, 'cache'), keep: 2,
    http: { retries: 2, retryBaseDelayMs: 50, retryMaxDelayMs: 200 }, targets: [target],
  };
  const configPath = path.join(dir, 'config.json');
  writeFileSync(configPath, JSON.stringify(config));
  const env = { ...process.env, ...(glanceEnv ?? {}) };
  let glance: GlanceClient | undefined;
  if (glanceEnv) glance = new GlanceClient(new KeystoneSession(resolveAuthSettings({ env: glanceEnv, files: new Map(), cwd: '/', homeDir: '/nonexistent' })));
  return { kind, dir, configPath, mirror, targetName, env, glance, serial: 20261101 };
}

async function cleanup(world: World): Promise<void> {
  if (world.glance) {
    for (const image of await world.glance.findImages({ [PROP.target]: world.targetName }, { includeHidden: true })) await world.glance.deleteImage(image.id);
  }
  await world.mirror.close();
  rmSync(world.dir, { recursive: true, force: true });
}

async function round(world: World, counts: Counts, kill: { afterEvents?: number; afterMs?: number }, label: string): Promise<void> {
  const first = await syncOnce(world, kill);
  if (first.killed) counts.kills++;
  else counts.exitedBeforeKill++;
  const clean = await syncOnce(world);
  counts.cleanRuns++;
  if (clean.code !== 0) counts.violations.push(`${world.kind} ${label}: the cycle after the kill exited ${clean.code}: ${clean.stderr.trim().split('\n').at(-1)}`);
  for (const p of await checkInvariants(world)) counts.violations.push(`${world.kind} ${label}: ${p}`);
}

async function main(): Promise<void> {
  const openstack = await loadOpenStackEnv();
  const results = new Map<Kind, Counts>();
  for (const kind of kinds) {
    const glanceEnv = kind === 'directory' ? undefined : 'env' in openstack ? openstack.env : undefined;
    if (kind !== 'directory' && !glanceEnv) {
      console.log(`${kind}: skipped, no test OpenStack (${'reason' in openstack ? openstack.reason : ''})`);
      continue;
    }
    const counts: Counts = { kills: 0, randomKills: 0, eventKills: 0, exitedBeforeKill: 0, cleanRuns: 0, violations: [] };
    results.set(kind, counts);
    const world = await makeWorld(kind, glanceEnv);
    try {
      const plan: Array<{ kill: { afterEvents?: number; afterMs?: number }; label: string }> = [];
      for (let k = 1; k <= eventRounds; k++) plan.push({ kill: { afterEvents: k }, label: `kill after event ${k}` });
      for (let i = 0; i < randomRounds; i++) {
        const ms = Math.round(Math.random() * 4_000);
        plan.push({ kill: { afterMs: ms }, label: `kill after ${ms} ms` });
      }
      for (const [i, step] of plan.entries()) {
        // New work every other round: a new serial upstream (download, publish, retire the oldest beyond keep).
        if (i % 2 === 0) {
          world.serial++;
          await world.mirror.addSerial({ codename: 'noble', serial: String(world.serial), channels: ['release'], arches: ['amd64', 'arm64'] });
        }
        const before = counts.kills;
        await round(world, counts, step.kill, step.label);
        if (counts.kills > before) {
          if (step.kill.afterEvents !== undefined) counts.eventKills++;
          else counts.randomKills++;
        }
        process.stdout.write(`${kind}: ${step.label}: ${counts.violations.length} violation(s) so far\n`);
      }
    } finally {
      await cleanup(world);
    }
  }
  console.log('\nkind           kills  (event, random)  exited-before-kill  clean-runs  violations');
  for (const [kind, c] of results) {
    console.log(`${kind.padEnd(14)} ${String(c.kills).padStart(5)}  (${c.eventKills}, ${c.randomKills})${' '.repeat(10)}${String(c.exitedBeforeKill).padStart(5)}${' '.repeat(14)}${String(c.cleanRuns).padStart(5)}  ${c.violations.length}`);
  }
  const all = [...results.values()].flatMap((c) => c.violations);
  for (const v of all) console.log(`VIOLATION ${v}`);
  process.exitCode = all.length > 0 ? 1 : 0;
}

await main();
