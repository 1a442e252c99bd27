/**
 * Benchmark G: a raw publication (`diskFormat: raw`) of a qcow2 into a real Keystone + Glance of its own
 * (test/openstack/up.sh, Glance's production token cache), against what an operator would type, in the same
 * run: `qemu-img convert -O raw && curl -T` (and, for the whole sync, `curl -o; sha256sum -c` before it).
 * Wall time, CPU seconds and peak RSS of whole process trees (qemu-img included), as ratios.
 */
import { spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { loadAuthSettings } from '../src/openstack/auth-config.js';
import { GlanceClient } from '../src/openstack/glance.js';
import { KeystoneSession } from '../src/openstack/keystone.js';
import { startMirror } from '../test/fixtures/mirror/index.js';
import { loadOpenStackEnv, startExtraOpenStack, type ExtraOpenStack } from '../test/integration/openstack-env.js';
import { flushDisks, formatSize, formatTable, mibOfKiB, ratio, runChecked, seconds, type ProcessRun } from './measure.js';

export interface RawBenchOptions {
  /** Size of the qcow2 file (its guest disk is 3.5 GiB, like a real noble image, or the file size if larger). */
  sizeBytes: number;
  cli: string[];
  workDir: string;
  repoRoot: string;
  log: (line: string) => void;
}

const PRODUCTION_TOKEN_CACHE_S = 300;
const TARGET = `bench-raw-${process.pid}-${Date.now().toString(36)}`;

/** Durations the CLI logs: the whole publication and the conversion in it. */
function publishPhases(stdout: string): { publishMs?: number; convertMs?: number; rawBytes?: number; adopted?: boolean } {
  const out: ReturnType<typeof publishPhases> = {};
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    const r = JSON.parse(line) as Record<string, unknown>;
    if (r.event === 'image.publish.done') { out.publishMs = Number(r.durationMs); out.adopted = r.adopted === true; }
    if (r.event === 'glance.raw.converted') { out.convertMs = Number(r.durationMs); out.rawBytes = Number(r.bytes); }
  }
  return out;
}

const cpu = (run: ProcessRun): string => (run.cpuMs === undefined ? '-' : seconds(run.cpuMs));

export async function benchRaw(o: RawBenchOptions): Promise<void> {
  const title = `\n== G. Raw publication (diskFormat: raw) of a ${formatSize(o.sizeBytes)} qcow2 into the real Glance (1 run each)\n`;
  if (spawnSync('qemu-img', ['--version']).status !== 0) {
    console.log(`${title}\n  skipped: qemu-img is not installed (apt-get install -y qemu-utils)`);
    return;
  }
  const openstack = await loadOpenStackEnv();
  if (!openstack.available) {
    console.log(`${title}\n  skipped: ${openstack.reason}`);
    return;
  }
  const dir = await mkdtemp(path.join(o.workDir, 'raw-'));
  o.log('  raw: starting a Keystone + Glance of its own (production token cache)');
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
    const endpoint = await session.imageEndpoint();
    const headers = path.join(dir, 'headers');
    const qcow2 = path.join(dir, 'manual.img');
    const rawFile = path.join(dir, 'manual.raw');
    const newImage = async (name: string) => {
      const made = await glance.createImage({ name, disk_format: 'raw', container_format: 'bare' });
      created.push(made.id);
      session.invalidate();
      await writeFile(headers, `X-Auth-Token: ${await session.getToken()}\nContent-Type: application/octet-stream\n`, { mode: 0o600 });
      return `${endpoint}/v2/images/${made.id}/file`;
    };
    const convertAndPut = 'qemu-img convert -f qcow2 -O raw "$1" "$2" && curl -s -f -H "@$3" -T "$2" "$4"';

    // 1. The publication alone, from a verified qcow2 on disk.
    o.log('  raw: manual qemu-img convert && curl -T');
    await runChecked('curl', ['-s', '-f', '-o', qcow2, image.url]);
    flushDisks();
    const manualPublish = await runChecked('sh', ['-c', `${convertAndPut}; rc=$?; rm -f "$2"; exit $rc`, 'sh', qcow2, rawFile, headers, await newImage('bench-raw-manual')]);
    await rm(qcow2, { force: true });

    // 2. The whole way: download, check, convert, upload.
    o.log('  raw: manual curl -o; sha256sum -c; qemu-img convert && curl -T');
    flushDisks();
    const manualWhole = await runChecked('sh', ['-c',
      `curl -s -f -o "$1" "$5" && echo "$6  $1" | sha256sum -c --quiet - && ${convertAndPut}; rc=$?; rm -f "$1" "$2"; exit $rc`,
      'sh', qcow2, rawFile, headers, await newImage('bench-raw-manual-whole'), image.url, image.sha256]);
    for (const id of created.splice(0)) await glance.deleteImage(id).catch(() => undefined);

    // 3. Ours.
    o.log('  raw: cloudimg-sync sync --once, diskFormat raw');
    const config = path.join(dir, 'config.json');
    await writeFile(config, JSON.stringify({
      source: { url: mirror.url, keyring: mirror.keyringPath, channel: 'release', releases: ['noble'], arches: ['amd64'] },
      stateDir: path.join(dir, 'state'), cacheDir: path.join(dir, 'cache'),
      targets: [{ name: TARGET, type: 'glance', method: 'put', diskFormat: 'raw' }],
    }));
    flushDisks();
    const [file, ...args] = o.cli as [string, ...string[]];
    const ours = await runChecked(file, [...args, '-c', config, 'sync', '--once'], { env, cwd: o.repoRoot });
    for (const i of await glance.findImages({ cloudimg_sync_target: TARGET }, { includeHidden: true })) created.push(i.id);
    const p = publishPhases(ours.stdout);
    if (p.adopted || p.publishMs === undefined) throw new Error('the sync did not upload (adopted an earlier copy, or no publication logged)');

    const rows: string[][] = [['pipeline', 'wall s', 'vs manual', 'CPU s', 'CPU vs manual', 'peak RSS MiB', 'RSS vs manual']];
    rows.push(['manual: curl -o; sha256sum -c; qemu-img convert && curl -T', seconds(manualWhole.wallMs), '1.00x', cpu(manualWhole), '1.00x', mibOfKiB(manualWhole.maxRssKiB), '1.00x']);
    rows.push(['cloudimg-sync sync --once (download, verify, convert, upload, check)', seconds(ours.wallMs), ratio(ours.wallMs, manualWhole.wallMs), cpu(ours),
      ours.cpuMs !== undefined && manualWhole.cpuMs !== undefined ? ratio(ours.cpuMs, manualWhole.cpuMs) : '-', mibOfKiB(ours.maxRssKiB), ratio(ours.maxRssKiB, manualWhole.maxRssKiB)]);
    rows.push(['manual: qemu-img convert && curl -T (publication alone)', seconds(manualPublish.wallMs), '1.00x', cpu(manualPublish), '', mibOfKiB(manualPublish.maxRssKiB), '']);
    rows.push(['cloudimg-sync publication alone (image.publish.done)', seconds(p.publishMs), ratio(p.publishMs, manualPublish.wallMs), '', '', '', '']);
    console.log(title);
    console.log(formatTable(rows));
    console.log(`\n  raw guest disk ${formatSize(p.rawBytes ?? 0)}; of our publication, qemu-img convert (with the qcow2 re-hashed beside it) took ${seconds(p.convertMs ?? 0)} s;` +
      ' the rest is the upload with sha256 and sha512 of the raw bytes in the same pass, and the API calls.');
    console.log('  Peak RSS is of the whole process tree (GNU time: the largest of the process and the children it waited for, qemu-img included).');
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
