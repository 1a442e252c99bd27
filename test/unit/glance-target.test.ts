import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtemp, open, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { validateConfig } from '../../src/config/load.js';
import type { GlanceTargetConfig } from '../../src/targets/glance/schema.js';
import { ConfigError } from '../../src/errors.js';
import { silentLogger } from '../../src/log.js';
import type { GlanceImage } from '../../src/openstack/glance.js';
import type { UpstreamImage } from '../../src/image.js';
import { createTargets } from '../../src/targets/create.js';
import { GlanceTarget, checkHeldBytes, downloadDigestsFor, glanceComparison } from '../../src/targets/glance/target.js';
import {
  PROP, createImageRequest, imageProperties, isVerifiedCopy, newestVerified, renderImageName, toPublishedImage,
} from '../../src/targets/glance/image-spec.js';
import { FileUploadReader, digestFile } from '../../src/targets/glance/image-digests.js';
import { minDiskGiB, readDiskImageInfo } from '../../src/targets/glance/qcow2-info.js';
import { writeQcow2Image } from '../fixtures/mirror/qcow2.js';
import { pageAlignedBuffer } from '../../src/direct-io.js';
import { PartWriter } from '../../src/fetch/part-writer.js';

/** Bytes of `file` in the page cache (util-linux fincore, mincore(2) underneath). */
function cachedBytes(file: string): number {
  return Number(execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', file], { encoding: 'utf8' }).trim());
}

function glanceConfig(target: Record<string, unknown> = {}): GlanceTargetConfig {
  const config = validateConfig({ source: { verifySignature: false }, targets: [{ name: 'cloud1', type: 'glance', ...target }] }, 'test');
  const t = config.targets[0]!;
  assert.equal(t.type, 'glance');
  return t as GlanceTargetConfig;
}

const noble: UpstreamImage = {
  channel: 'release', variant: 'server', release: 'noble', version: '24.04', arch: 'arm64', serial: '20261120',
  fileName: 'ubuntu-24.04-server-cloudimg-arm64.img',
  url: 'https://cloud-images.ubuntu.com/releases/noble/release-20261120/ubuntu-24.04-server-cloudimg-arm64.img',
  sha256: 'a'.repeat(64), signed: true,
};

function glanceImage(fields: Partial<GlanceImage> & Record<string, unknown>): GlanceImage {
  return {
    id: 'img-1', status: 'active', tags: [], os_hidden: false, created_at: '2026-11-20T10:00:00Z',
    ubuntu_codename: 'noble', ubuntu_serial: '20261120', architecture: 'aarch64',
    [PROP.channel]: 'release', [PROP.variant]: 'server', [PROP.verified]: 'true', ...fields,
  } as GlanceImage;
}

describe('glance image naming', () => {
  test('the default name shows version, codename, arch and serial', () => {
    assert.equal(renderImageName(glanceConfig().nameTemplate, noble), 'Ubuntu 24.04 (noble) arm64 20261120');
  });
  test('an unknown version leaves no double space, and {glanceArch} is Glance\'s architecture', () => {
    assert.equal(renderImageName('Ubuntu {version} {codename} {glanceArch}', { ...noble, version: '' }), 'Ubuntu noble aarch64');
  });
  test('a template with an unknown placeholder is a config error naming the key', () => {
    assert.throws(() => glanceConfig({ nameTemplate: 'Ubuntu {ver}' }), (err: unknown) =>
      err instanceof ConfigError && /targets\[0\]\.nameTemplate/.test(err.message));
  });
});

describe('glance image properties', () => {
  test('every image gets the identity properties, our bookkeeping and per-arch hw defaults', () => {
    const props = imageProperties(glanceConfig(), noble, noble.sha256);
    assert.deepEqual(
      { os_distro: props.os_distro, os_version: props.os_version, architecture: props.architecture, ubuntu_codename: props.ubuntu_codename, ubuntu_serial: props.ubuntu_serial },
      { os_distro: 'ubuntu', os_version: '24.04', architecture: 'aarch64', ubuntu_codename: 'noble', ubuntu_serial: '20261120' },
    );
    assert.equal(props[PROP.sha256], noble.sha256);
    assert.equal(props[PROP.source], noble.url);
    assert.equal(props[PROP.target], 'cloud1');
    assert.equal(props.hw_firmware_type, 'uefi', 'arm64 boots with UEFI');
    assert.equal(props.hw_machine_type, 'virt');
    assert.equal(imageProperties(glanceConfig(), { ...noble, arch: 'amd64' }, noble.sha256).hw_firmware_type, undefined, 'amd64 keeps the BIOS default');
  });
  test('configured properties override the hw defaults', () => {
    const props = imageProperties(glanceConfig({ properties: { hw_firmware_type: 'bios', site: 'lyon' } }), noble, noble.sha256);
    assert.equal(props.hw_firmware_type, 'bios');
    assert.equal(props.site, 'lyon');
  });
  for (const key of ['os_distro', 'architecture', 'cloudimg_sync_sha256', 'visibility', 'os_hidden', 'os_glance_import_task']) {
    test(`configured properties cannot set the reserved key ${key}`, () => {
      assert.throws(() => glanceConfig({ properties: { [key]: 'x' } }), /reserved key/);
    });
  }
  test('the create request is private, hidden, qcow2 with min_disk and the configured tags (once each)', () => {
    const req = createImageRequest(glanceConfig({ tags: ['ubuntu', 'ubuntu'], containerFormat: 'ovf', visibility: 'public' }), noble, noble, { format: 'qcow2', minDiskGiB: 4 });
    assert.equal(req.visibility, 'private', 'made public only once verified');
    assert.equal(req.os_hidden, true);
    assert.equal(req.disk_format, 'qcow2');
    assert.equal(req.container_format, 'ovf');
    assert.equal(req.min_disk, 4);
    assert.deepEqual(req.tags, ['ubuntu']);
    assert.equal(req.name, 'Ubuntu 24.04 (noble) arm64 20261120');
    assert.equal(req[PROP.templateName], req.name);
    assert.equal(req[PROP.verified], undefined);
  });
});

describe('metadata operators expect', () => {
  const amd64: UpstreamImage = { ...noble, arch: 'amd64', fileName: 'ubuntu-24.04-server-cloudimg-amd64.img' };
  test('os_admin_user is ubuntu; hypervisor_type stays unset unless asked for; min_ram goes on the image', () => {
    const plain = imageProperties(glanceConfig(), noble, noble.sha256);
    assert.equal(plain.os_admin_user, 'ubuntu');
    assert.equal('hypervisor_type' in plain, false);
    assert.equal(imageProperties(glanceConfig({ hypervisorType: 'kvm' }), noble, noble.sha256).hypervisor_type, 'kvm');
    assert.throws(() => glanceConfig({ hypervisorType: 'xen' }), /hypervisorType: "xen" is not allowed; allowed: qemu, kvm/);
    assert.equal(createImageRequest(glanceConfig(), noble, noble, { format: 'qcow2', minDiskGiB: 4 }).min_ram, undefined);
    assert.equal(createImageRequest(glanceConfig({ minRamMiB: 1024 }), noble, noble, { format: 'qcow2', minDiskGiB: 4 }).min_ram, 1024);
  });
  test('property rules apply where their match selects the image, in order, a later rule winning', () => {
    const cfg = glanceConfig({ properties: [
      { set: { hw_qemu_guest_agent: 'yes', site: 'lyon' } },
      { match: { arch: 'amd64' }, set: { hw_scsi_model: 'virtio-scsi', hw_disk_bus: 'scsi' } },
      { match: { release: ['24.04'], channel: 'release' }, set: { site: 'paris' } },
      { match: { variant: 'minimal' }, set: { site: 'nowhere' } },
    ] });
    const onAmd64 = imageProperties(cfg, amd64, noble.sha256);
    assert.deepEqual([onAmd64.hw_scsi_model, onAmd64.hw_disk_bus, onAmd64.hw_qemu_guest_agent, onAmd64.site], ['virtio-scsi', 'scsi', 'yes', 'paris']);
    const onArm64 = imageProperties(cfg, noble, noble.sha256);
    assert.deepEqual([onArm64.hw_scsi_model, onArm64.hw_disk_bus, onArm64.site], [undefined, 'virtio', 'paris'], 'virtio-scsi for amd64 only');
    assert.equal(imageProperties(cfg, { ...amd64, channel: 'daily' }, noble.sha256).site, 'lyon');
  });
  test('the reserved keys stay reserved in rules; a rule with an unknown match key is a config error', () => {
    assert.throws(() => glanceConfig({ properties: [{ match: { arch: 'amd64' }, set: { os_distro: 'debian' } }] }), /reserved key/);
    assert.throws(() => glanceConfig({ properties: [{ match: { flavor: 'x' }, set: { a: 'b' } }] }), /properties\[0\]\.match: unknown key\(s\) flavor/);
    assert.throws(() => glanceConfig({ properties: [{ match: { arch: 'sparc' }, set: { a: 'b' } }] }), /sparc/);
  });
  test('members need visibility shared; raw cannot go with web-download', () => {
    assert.throws(() => glanceConfig({ members: ['lab'] }), /targets\[0\]\.members: \["lab"\]: members need visibility: shared/);
    assert.deepEqual(glanceConfig({ visibility: 'shared', members: ['lab'] }).members, ['lab']);
    assert.throws(() => glanceConfig({ method: 'web-download', diskFormat: 'raw' }), /diskFormat: "raw": raw needs method put, stream or glance-direct/);
  });
  test('metadata: scs adds the SCS fields derived from the stream: EOL, serial date, keep; properties override them', () => {
    assert.equal(imageProperties(glanceConfig(), noble, noble.sha256).replace_frequency, undefined, 'opt-in');
    const scs = imageProperties(glanceConfig({ metadata: 'scs' }), noble, noble.sha256, { keep: 3 });
    assert.deepEqual(
      [scs.image_original_user, scs.image_build_date, scs.image_source, scs.replace_frequency, scs.provided_until, scs.uuid_validity, scs.hotfix_hours],
      ['ubuntu', '2026-11-20', noble.url, 'monthly', '2029-05-31', 'last-3', '0'],
    );
    assert.equal(scs.image_description, 'Ubuntu 24.04 LTS (Noble Numbat) server cloud image, release serial 20261120');
    const daily = imageProperties(glanceConfig({ metadata: 'scs' }), { ...noble, channel: 'daily', serial: '20261121.1' }, noble.sha256);
    assert.deepEqual([daily.replace_frequency, daily.image_build_date, daily.uuid_validity], ['daily', '2026-11-21', 'none']);
    const overridden = imageProperties(glanceConfig({ metadata: 'scs', properties: { replace_frequency: 'quarterly', hotfix_hours: '48' } }), noble, noble.sha256);
    assert.deepEqual([overridden.replace_frequency, overridden.hotfix_hours], ['quarterly', '48']);
  });
});

describe('glance images read back for retention', () => {
  test('a visible verified image is published and not hidden', () => {
    assert.deepEqual(toPublishedImage(glanceImage({}), ['keep']), {
      ref: 'img-1', release: 'noble', arch: 'arm64', variant: 'server', channel: 'release', serial: '20261120', pinned: false,
      hidden: false, complete: true,
    });
  });
  test('hidden by hand or a leftover of an interrupted upload: said so, for reconciling state with Glance', () => {
    assert.equal(toPublishedImage(glanceImage({ os_hidden: true }), [])?.hidden, true);
    assert.equal(toPublishedImage(glanceImage({ status: 'queued', [PROP.verified]: undefined }), [])?.complete, false);
    assert.equal(toPublishedImage(glanceImage({ [PROP.verified]: undefined }), [])?.complete, false, 'active but never verified by us');
  });
  test('the signed sha256 it holds is read back: a complete copy of the same sha256 is adopted before any download', () => {
    assert.equal(toPublishedImage(glanceImage({ [PROP.sha256]: noble.sha256 }), [])?.sha256, noble.sha256);
  });
  test('a verified copy before the download: flag and signed sha256, the signed size only where the source gives one', () => {
    const copy = glanceImage({ [PROP.sha256]: noble.sha256, size: 1000 });
    assert.equal(isVerifiedCopy(copy, { sha256: noble.sha256 }), true, 'size unknown (SHA256SUMS): the flag and the sha256 decide');
    assert.equal(isVerifiedCopy(copy, { sha256: noble.sha256, sizeBytes: 1000 }), true);
    assert.equal(isVerifiedCopy(copy, { sha256: noble.sha256, sizeBytes: 999 }), false, 'another size than simplestreams signed');
    assert.equal(isVerifiedCopy(copy, { sha256: 'b'.repeat(64) }), false, 'other bytes');
    assert.equal(isVerifiedCopy(glanceImage({ [PROP.sha256]: noble.sha256, [PROP.verified]: undefined }), { sha256: noble.sha256 }), false, 'never verified by us');
    assert.equal(isVerifiedCopy(glanceImage({ [PROP.sha256]: noble.sha256, status: 'saving' }), { sha256: noble.sha256 }), false);
    const raw = { [PROP.sha256]: noble.sha256, [PROP.convertedFrom]: 'qcow2', disk_format: 'raw', size: 5000, os_hash_algo: 'sha512' };
    assert.equal(isVerifiedCopy(glanceImage({ ...raw, os_hash_value: 'f'.repeat(128), [`${PROP.rawDigestPrefix}sha512`]: 'f'.repeat(128) }), { sha256: noble.sha256 }), true);
    assert.equal(isVerifiedCopy(glanceImage({ ...raw, os_hash_value: 'e'.repeat(128), [`${PROP.rawDigestPrefix}sha512`]: 'f'.repeat(128) }), { sha256: noble.sha256 }), false, 'Glance holds other raw bytes than we recorded');
  });
  test('protected or tagged-to-keep images are pinned', () => {
    assert.equal(toPublishedImage(glanceImage({ protected: true }), ['keep'])?.pinned, true);
    assert.equal(toPublishedImage(glanceImage({ tags: ['x', 'keep'] }), ['keep'])?.pinned, true);
    assert.equal(toPublishedImage(glanceImage({ tags: ['x'] }), ['keep'])?.pinned, false);
  });
  test('hidden by retention: hiddenAtMs is the mark; a never-verified leftover counts as hidden since creation', () => {
    assert.equal(toPublishedImage(glanceImage({ os_hidden: true, [PROP.hiddenAt]: '2026-11-21T00:00:00.000Z' }), [])?.hiddenAtMs, Date.parse('2026-11-21T00:00:00Z'));
    assert.equal(toPublishedImage(glanceImage({ os_hidden: true, status: 'queued', [PROP.verified]: undefined }), [])?.hiddenAtMs, Date.parse('2026-11-20T10:00:00Z'));
    assert.equal(toPublishedImage(glanceImage({ os_hidden: true }), [])?.hiddenAtMs, undefined, 'hidden by someone else: retention marks it first');
  });
  test('an image without our identity properties is not one we can retire', () => {
    assert.equal(toPublishedImage(glanceImage({ architecture: 'sparc' }), []), undefined);
    assert.equal(toPublishedImage(glanceImage({ [PROP.channel]: undefined }), []), undefined);
  });
  test('the latest pointer belongs on the newest verified serial not hidden by retention', () => {
    const images = [
      glanceImage({ id: 'old', ubuntu_serial: '20261101' }),
      glanceImage({ id: 'new', ubuntu_serial: '20261120.1' }),
      glanceImage({ id: 'newer-unverified', ubuntu_serial: '20261201', [PROP.verified]: undefined, status: 'queued' }),
      glanceImage({ id: 'retired', ubuntu_serial: '20261125', os_hidden: true, [PROP.hiddenAt]: '2026-11-26T00:00:00Z' }),
    ];
    assert.equal(newestVerified(images)?.id, 'new');
    assert.equal(newestVerified([]), undefined);
  });
});

describe('image files', () => {
  let dir = '';
  before(async () => { dir = await mkdtemp(path.join(tmpdir(), 'glance-target-unit-')); });
  after(async () => { await rm(dir, { recursive: true, force: true }); });

  test('min_disk comes from the qcow2 virtual size, rounded up to whole GiB', async () => {
    const file = path.join(dir, 'disk.img');
    await writeQcow2Image(file, { fileSizeBytes: 256 * 1024, virtualSizeBytes: 3584 * 1024 * 1024 });
    assert.deepEqual(await readDiskImageInfo(file), { format: 'qcow2', virtualSizeBytes: 3584 * 1024 * 1024, refersToOtherFiles: false });
    assert.equal(minDiskGiB(3584 * 1024 * 1024), 4);
    assert.equal(minDiskGiB(2 * 1024 ** 3), 2);
  });
  test('a file without the qcow2 magic is raw, sized by its length', async () => {
    const file = path.join(dir, 'disk.raw');
    await writeFile(file, Buffer.alloc(5000, 1));
    assert.deepEqual(await readDiskImageInfo(file), { format: 'raw', virtualSizeBytes: 5000, refersToOtherFiles: false });
  });
  test('a file is digested in sha256 and the digests asked for, with its size', async () => {
    const data = randomBytes(3 * 1024 * 1024 + 5);
    const file = path.join(dir, 'data.bin');
    await writeFile(file, data);
    const expected = (algo: string) => createHash(algo).update(data).digest('hex');
    assert.deepEqual(await digestFile(file, ['sha512']), { sizeBytes: data.length, sha256: expected('sha256'), digests: { sha256: expected('sha256'), sha512: expected('sha512') } });
    assert.deepEqual(await digestFile(file, []), { sizeBytes: data.length, sha256: expected('sha256'), digests: { sha256: expected('sha256') } });
  });
  test('the file reader yields the file in order, digested, through three reused buffers', async () => {
    const data = randomBytes(5 * 1024 * 1024 + 7);
    const file = path.join(dir, 'ring.bin');
    await writeFile(file, data);
    const reader = new FileUploadReader(file, { digest: ['md5', 'sha512'] });
    const progress: number[] = [];
    reader.onBytes = (bytes) => progress.push(bytes);
    const copies: Buffer[] = [];
    const backing: ArrayBuffer[] = [];
    for await (const chunk of reader) {
      copies.push(Buffer.from(chunk));
      backing.push(chunk.buffer as ArrayBuffer);
    }
    assert.ok(Buffer.concat(copies).equals(data));
    assert.equal(copies.length, 6);
    assert.equal(new Set(backing).size, 3, 'six chunks, three buffers');
    assert.equal(backing[3], backing[0]);
    assert.deepEqual(progress, [1, 2, 3, 4, 5].map((n) => n * 1024 * 1024).concat(data.length));
    const expected = (algo: string) => createHash(algo).update(data).digest('hex');
    assert.deepEqual(reader.digests(), {
      sizeBytes: data.length, sha256: expected('sha256'), digests: { sha256: expected('sha256'), md5: expected('md5'), sha512: expected('sha512') },
    });
  });
  test('the file reader reads afresh on each iteration (an upload sent again after a refused token)', async () => {
    const file = path.join(dir, 'again.bin');
    await writeFile(file, Buffer.from('first'));
    const reader = new FileUploadReader(file);
    for await (const _ of reader) break;
    assert.equal(reader.digests(), undefined, 'no digests for a read cut short');
    await writeFile(file, Buffer.from('second'));
    for await (const _ of reader) { /* whole file */ }
    assert.equal(reader.digests()?.sha256, createHash('sha256').update('second').digest('hex'));
  });
  test('told the file is digested already, the reader only counts what it read', async () => {
    const file = path.join(dir, 'plain.bin');
    await writeFile(file, Buffer.alloc(1024 * 1024 + 3, 9));
    const reader = new FileUploadReader(file, { digest: false });
    let chunks = 0;
    for await (const _ of reader) chunks++;
    assert.equal(chunks, 2);
    assert.equal(reader.bytesRead(), 1024 * 1024 + 3);
    assert.equal(reader.digests(), undefined);
  });
  test('the file reader reads around the page cache: a file written direct is not brought into it', async (t) => {
    const data = randomBytes(2 * 1024 * 1024 + 4096);
    const file = path.join(dir, 'direct.bin');
    const fh = await open(file, 'w', 0o600);
    const writer = new PartWriter(fh, true, data.length);
    const aligned = pageAlignedBuffer(data.length);
    data.copy(aligned);
    writer.write(aligned, data.length, 0);
    const direct = writer.direct;
    writer.close();
    await fh.close();
    if (!direct) return t.skip('no O_DIRECT on this filesystem: nothing to compare against');
    assert.equal(cachedBytes(file), 0);
    const copies: Buffer[] = [];
    const reader = new FileUploadReader(file, { digest: ['sha512'] });
    for await (const chunk of reader) copies.push(Buffer.from(chunk));
    assert.ok(Buffer.concat(copies).equals(data));
    assert.equal(reader.digests()?.digests.sha512, createHash('sha512').update(data).digest('hex'));
    assert.equal(cachedBytes(file), 0, 'the upload read left the file in the page cache');
  });
  test('the file reader stops when its signal aborts', async () => {
    const file = path.join(dir, 'abort.bin');
    await writeFile(file, Buffer.alloc(3 * 1024 * 1024));
    const controller = new AbortController();
    const reader = new FileUploadReader(file, { signal: controller.signal });
    await assert.rejects(async () => {
      for await (const _ of reader) controller.abort(new Error('stop'));
    }, /stop/);
    assert.equal(reader.digests(), undefined);
  });
});

describe('createTargets', () => {
  test('builds a GlanceTarget for type glance without touching the network, hiding for hideGraceHours', () => {
    const config = validateConfig({ source: { verifySignature: false }, targets: [{ name: 'c1', type: 'glance', hideGraceHours: 2 }, { name: 'd', type: 'directory', path: '/tmp/x' }] }, 'test');
    const [glance, dir] = createTargets(config, { env: {} });
    assert.ok(glance instanceof GlanceTarget);
    assert.equal(glance.type, 'glance');
    assert.equal(glance.hidesBeforeDelete, true);
    assert.equal(glance.hideGraceMs, 2 * 3_600_000);
    assert.equal(dir?.type, 'directory');
  });
  test('missing credentials surface as a one-line config error when the target is first used', async () => {
    const config = validateConfig({ source: { verifySignature: false }, targets: [{ name: 'c1', type: 'glance' }] }, 'test');
    const [glance] = createTargets(config, { env: {} });
    await assert.rejects(glance!.listPublished({ log: silentLogger() }), (err: unknown) =>
      err instanceof ConfigError && /OS_AUTH_URL/.test(err.oneLine()) && !err.oneLine().includes('\n'));
  });
});

describe('the one digest a Glance image is checked by', () => {
  const bytes = Buffer.from('the verified image bytes');
  const hex = (algo: string) => createHash(algo).update(bytes).digest('hex');
  const file = { path: '/cache/x.img', sizeBytes: bytes.length, sha256: hex('sha256') };
  const held = (fields: Partial<GlanceImage>) => ({ id: 'img-1', status: 'active', size: bytes.length, ...fields }) as GlanceImage;
  const local = (digests: Record<string, string>) => ({ sizeBytes: bytes.length, sha256: hex('sha256'), digests: { sha256: hex('sha256'), ...digests } });

  test('the download computes only what the Glance will be compared by: sha512 by default, nothing beyond sha256 for sha256', () => {
    assert.deepEqual(downloadDigestsFor('sha512'), ['sha512']);
    assert.deepEqual(downloadDigestsFor('sha256'), [], 'the signed sha256 is compared as it is');
    assert.deepEqual(downloadDigestsFor('md5'), ['md5'], 'a Glance without os_hash_value');
    assert.deepEqual(downloadDigestsFor('sha3-256'), [], 'read from the file after the upload instead');
    assert.deepEqual(new GlanceTarget(validateConfig({ targets: [{ name: 'g', type: 'glance' }] }, 'test').targets[0] as GlanceTargetConfig).digests, ['sha512']);
  });

  test('os_hash_value in os_hash_algo when Glance has it, else the md5 checksum, else nothing', () => {
    assert.deepEqual(glanceComparison({ os_hash_algo: 'sha512', os_hash_value: 'v', checksum: 'c' }), { algorithm: 'sha512', value: 'v', field: 'os_hash_value' });
    assert.deepEqual(glanceComparison({ os_hash_algo: 'sha3_256', os_hash_value: 'v' }), { algorithm: 'sha3-256', value: 'v', field: 'os_hash_value' });
    assert.deepEqual(glanceComparison({ checksum: 'c' }), { algorithm: 'md5', value: 'c', field: 'checksum' });
    assert.equal(glanceComparison({}), undefined);
  });

  test('a Glance hashing with sha256 is checked against the signed sha256; no md5 or sha512 is needed', () => {
    assert.deepEqual(checkHeldBytes(held({ os_hash_algo: 'sha256', os_hash_value: hex('sha256'), checksum: hex('md5') }), local({}), file), ['size', 'sha256']);
    assert.throws(() => checkHeldBytes(held({ os_hash_algo: 'sha256', os_hash_value: 'f'.repeat(64) }), local({}), file),
      (err: Error & { code?: string }) => err.code === 'GLANCE_HASH_MISMATCH' && /os_hash_value \(sha256\)/.test(err.message));
  });

  test('the default sha512 Glance is checked by sha512 alone; md5 only where no os_hash_value exists', () => {
    assert.deepEqual(checkHeldBytes(held({ os_hash_algo: 'sha512', os_hash_value: hex('sha512'), checksum: 'not compared' }), local({ sha512: hex('sha512') }), file), ['size', 'sha512']);
    assert.deepEqual(checkHeldBytes(held({ checksum: hex('md5') }), local({ md5: hex('md5') }), file), ['size', 'md5']);
    assert.throws(() => checkHeldBytes(held({ checksum: 'bad' }), local({ md5: hex('md5') }), file), /checksum \(md5\) bad != /);
    assert.throws(() => checkHeldBytes(held({ os_hash_algo: 'sha512', os_hash_value: hex('sha512'), size: 1 }), local({ sha512: hex('sha512') }), file), /size 1 != /);
  });

  test('an active image with neither os_hash_value nor checksum is refused: nothing ties its bytes to ours', () => {
    assert.throws(() => checkHeldBytes(held({}), local({}), file), (err: Error & { code?: string }) => err.code === 'GLANCE_NO_DIGEST');
  });
});
