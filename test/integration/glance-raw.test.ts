/**
 * Raw images for Ceph-backed Glance, against the REAL Keystone + Glance of test/openstack/up.sh and the real
 * qemu-img: `diskFormat: raw` (put and stream) on the shared instance, and Glance's own image_conversion
 * import plugin on a second instance of its own. Images are small qcow2 (512 KiB) with an 8 MiB guest disk.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { resolveAuthSettings } from '../../src/openstack/auth-config.js';
import { GlanceClient, type GlanceImage } from '../../src/openstack/glance.js';
import { KeystoneSession } from '../../src/openstack/keystone.js';
import { PROP } from '../../src/targets/glance/image-spec.js';
import { createSyncWorld, type SyncWorld } from '../support/sync-world.js';
import { ensureQemuImg } from '../support/qemu-img.js';
import { describeWithOpenStack, loadOpenStackEnv, startExtraOpenStack, type ExtraOpenStack, type OpenStackAvailability } from './openstack-env.js';

const GUEST_DISK_BYTES = 8 * 1024 * 1024;
const run = randomUUID().slice(0, 8);
const qemuImgMissing = ensureQemuImg();
const openstack: OpenStackAvailability = qemuImgMissing === undefined ? await loadOpenStackEnv() : { available: false, reason: `qemu-img: ${qemuImgMissing}` };

function sessionFor(env: Readonly<Record<string, string>>): KeystoneSession {
  return new KeystoneSession(resolveAuthSettings({ env, files: new Map(), cwd: '/', homeDir: '/nonexistent' }));
}

const MIRROR = { releases: [{ codename: 'noble', serials: ['20261120'], channels: ['release' as const], virtualSizeBytes: GUEST_DISK_BYTES }] };

/** What `qemu-img convert -O raw` makes of the mirror's qcow2: the bytes Glance must hold. */
async function referenceRaw(w: SyncWorld): Promise<{ size: number; sha256: string; sha512: string; qcow2Sha256: string }> {
  const p = w.mirror.published()[0]!;
  const out = path.join(w.dir, 'reference.raw');
  execFileSync('qemu-img', ['convert', '-f', 'qcow2', '-O', 'raw', path.join(w.mirror.root, p.urlPath), out]);
  const bytes = await readFile(out);
  await rm(out);
  const hex = (algo: string) => createHash(algo).update(bytes).digest('hex');
  return { size: bytes.length, sha256: hex('sha256'), sha512: hex('sha512'), qcow2Sha256: p.sha256 };
}

async function deleteImagesOf(glance: GlanceClient, targetName: string): Promise<void> {
  for (const image of await glance.findImages({ [PROP.target]: targetName }, { includeHidden: true })) await glance.deleteImage(image.id);
}

/** Everything left in the cache dir (the .raw conversion must not be). */
async function cacheFiles(w: SyncWorld): Promise<string[]> {
  return (await readdir(w.config.cacheDir, { recursive: true, withFileTypes: true })).filter((e) => e.isFile()).map((e) => e.name);
}

function assertHoldsRaw(image: GlanceImage | undefined, ref: Awaited<ReturnType<typeof referenceRaw>>): void {
  assert.ok(image);
  assert.equal(image.status, 'active');
  assert.equal(image.os_hidden, false);
  assert.equal(image.disk_format, 'raw');
  assert.equal(image.size, GUEST_DISK_BYTES);
  assert.equal(image.os_hash_value, ref.sha512, 'Glance holds what qemu-img convert -O raw makes of the signed qcow2');
  const props = image as Record<string, unknown>;
  assert.equal(props[PROP.sha256], ref.qcow2Sha256, 'the signed qcow2 stays the identity');
  assert.equal(props[PROP.convertedFrom], 'qcow2');
  assert.deepEqual([props.cloudimg_sync_raw_sha256, props.cloudimg_sync_raw_sha512], [ref.sha256, ref.sha512]);
  assert.equal(props[PROP.verified], 'true');
}

describeWithOpenStack('diskFormat raw against the real Keystone+Glance and qemu-img', openstack, (os) => {
  let glance: GlanceClient;
  let session: KeystoneSession;
  let world: SyncWorld | undefined;
  let names: string[] = [];
  before(() => {
    session = sessionFor(os.env);
    glance = new GlanceClient(session);
  });
  after(async () => { await session.close(); });
  afterEach(async () => {
    for (const name of names) await deleteImagesOf(glance, name);
    names = [];
    await world?.close();
    world = undefined;
  });

  for (const method of ['put', 'stream'] as const) {
    test(`method ${method}: Glance holds the raw guest disk, verified by its sha512 before it is revealed; a rerun adopts it`, async () => {
      const name = `raw-${method}-${run}`;
      names.push(name);
      const w = world = await createSyncWorld({ mirror: MIRROR, config: { targets: [{ name, type: 'glance', method, diskFormat: 'raw' }] }, targetEnv: os.env });
      const summary = await w.sync();
      assert.equal(summary.result, 'ok', summary.errors.join('\n'));
      const ref = await referenceRaw(w);
      const images = await glance.findImages({ [PROP.target]: name }, { includeHidden: true });
      assert.equal(images.length, 1);
      assertHoldsRaw(images[0], ref);
      assert.equal(images[0]!.min_disk, 1);
      assert.equal(w.events('glance.raw.converted').length, 1);
      assert.equal(w.events('glance.image.verified')[0]?.bytes, GUEST_DISK_BYTES);
      assert.equal(w.events('image.publish.fallback').length, 0, 'no failed attempt before');
      assert.deepEqual((await cacheFiles(w)).filter((f) => f.endsWith('.raw')), [], 'the raw conversion is removed');

      // State lost: the raw output of one qcow2 is always the same, so the image in Glance is adopted.
      await rm(w.config.stateDir, { recursive: true, force: true });
      const again = await w.sync();
      assert.equal(again.result, 'ok', again.errors.join('\n'));
      assert.equal(w.events('image.publish.done').at(-1)?.adopted, true);
      assert.equal(w.events('glance.image.created').length, 1);
      assert.deepEqual((await glance.findImages({ [PROP.target]: name }, { includeHidden: true })).map((i) => i.id), [images[0]!.id]);
    });
  }
});

describeWithOpenStack('Glance image_conversion import plugin (second Keystone+Glance, OPENSTACK_GLANCE_CONVERSION=raw)', openstack, () => {
  let extra: ExtraOpenStack | undefined;
  let world: SyncWorld | undefined;
  before(async () => {
    extra = await startExtraOpenStack(await mkdtemp(path.join(tmpdir(), 'cloudimg-sync-openstack-conversion-')), {
      OPENSTACK_GLANCE_CONVERSION: 'raw',
      OPENSTACK_GLANCE_IMPORT_METHODS: 'glance-direct',
      OPENSTACK_KEYSTONE_WORKERS: '1',
    });
  });
  after(async () => {
    await world?.close();
    await extra?.stop();
  });

  test('glance-direct of the qcow2 that Glance converts to raw: verified against a local conversion, revealed, adopted by a rerun', async () => {
    const name = `conv-${run}`;
    const w = world = await createSyncWorld({ mirror: MIRROR, config: { targets: [{ name, type: 'glance', method: 'glance-direct' }] }, targetEnv: extra!.env });
    const summary = await w.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    const session = sessionFor(extra!.env);
    try {
      const glance = new GlanceClient(session);
      const images = await glance.findImages({ [PROP.target]: name }, { includeHidden: true });
      assert.equal(images.length, 1);
      assertHoldsRaw(images[0], await referenceRaw(w));
      assert.equal(w.events('glance.image.converted_by_glance')[0]?.imageId, images[0]!.id);
      assert.equal(w.events('glance.image.discarded').length, 0);

      await rm(w.config.stateDir, { recursive: true, force: true });
      const again = await w.sync();
      assert.equal(again.result, 'ok', again.errors.join('\n'));
      assert.equal(w.events('image.publish.done').at(-1)?.adopted, true, 'the converted image is a verified copy, not a leftover');
      assert.equal(w.events('glance.image.created').length, 1);
      assert.equal(w.events('glance.image.leftover_deleted').length, 0);
      await deleteImagesOf(glance, name);
    } finally {
      await session.close();
    }
  });
});
