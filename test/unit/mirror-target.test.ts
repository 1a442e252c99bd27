import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { silentLogger } from '../../src/log.js';
import type { Arch, UpstreamImage } from '../../src/image.js';
import { MirrorTarget, mirrorPlacement } from '../../src/targets/mirror/mirror.js';
import type { PublishContext, VerifiedFile } from '../../src/targets/target.js';

const sha256 = (data: Uint8Array | string) => createHash('sha256').update(data).digest('hex');
const log = silentLogger();

let dir: string;
let root: string;
beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'cloudimg-mirror-target-'));
  root = path.join(dir, 'www');
});
afterEach(async () => { await rm(dir, { recursive: true, force: true }); });

/** An upstream serial: image bytes per arch, a SHA256SUMS naming them (and files the mirror does not carry), a signature. */
function upstreamSerial(serial: string, arches: Arch[], folder = `releases/noble/release-${serial}`) {
  const base = `https://cloud-images.example/${folder}/`;
  const images = new Map(arches.map((arch) => {
    const fileName = `ubuntu-24.04-server-cloudimg-${arch}.img`;
    return [arch, { fileName, bytes: Buffer.from(`qcow2 ${serial} ${arch} `.repeat(500)) }] as const;
  }));
  const lines = [...images.values()].map((i) => `${sha256(i.bytes)} *${i.fileName}\n`);
  lines.push(`${'e'.repeat(64)} *ubuntu-24.04-server-cloudimg-amd64.manifest\n`);
  const sums = Buffer.from(lines.sort().join(''));
  const gpg = Buffer.from(`-----BEGIN PGP SIGNATURE-----\n\n${sha256(sums)}\n-----END PGP SIGNATURE-----\n`);
  const documents = new Map([[`${base}SHA256SUMS`, sums], [`${base}SHA256SUMS.gpg`, gpg]]);
  const imageOf = (arch: Arch): UpstreamImage => {
    const { fileName, bytes } = images.get(arch)!;
    return {
      channel: 'release', variant: 'server', release: 'noble', version: '24.04', arch, serial, fileName,
      url: `${base}${fileName}`, sha256: sha256(bytes), signed: true, upstreamPath: `${folder}/${fileName}`,
      signedBy: [{ url: `${base}SHA256SUMS`, path: `${folder}/SHA256SUMS` }, { url: `${base}SHA256SUMS.gpg`, path: `${folder}/SHA256SUMS.gpg` }],
    };
  };
  return { folder, sums, gpg, documents, images, imageOf };
}

type Serial = ReturnType<typeof upstreamSerial>;

/** The verified file the download left in the cache. */
async function cached(serial: Serial, arch: Arch): Promise<VerifiedFile> {
  const { fileName, bytes } = serial.images.get(arch)!;
  const file = path.join(dir, 'cache', serial.folder, fileName);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, bytes, { mode: 0o600 });
  return { path: file, sizeBytes: bytes.length, sha256: sha256(bytes) };
}

function context(...serials: Serial[]): PublishContext {
  return {
    log,
    signedDocument: (url) => {
      const body = serials.map((s) => s.documents.get(url)).find(Boolean);
      return body && { body, lastModified: 'Fri, 20 Nov 2026 06:23:00 GMT' };
    },
  };
}

/** What a static web server's autoindex would list under `rel`, recursively (hidden names left out, as nginx and Apache do). */
function visibleTree(rel = ''): string[] {
  const at = path.join(root, rel);
  if (!existsSync(at)) return [];
  return readdirSync(at, { withFileTypes: true }).filter((d) => !d.name.startsWith('.')).flatMap((d) => {
    const child = rel ? `${rel}/${d.name}` : d.name;
    return d.isDirectory() ? [`${child}/`, ...visibleTree(child)] : [child];
  }).sort();
}

const hiddenEntries = (rel: string) => readdirSync(path.join(root, rel)).filter((n) => n.startsWith('.'));

describe('mirror target', () => {
  test('writes the image at its upstream path beside SHA256SUMS and SHA256SUMS.gpg copied byte for byte, readable by a web server', async () => {
    const serial = upstreamSerial('20261120', ['amd64']);
    const target = new MirrorTarget('internal', root);
    const file = await cached(serial, 'amd64');
    const result = await target.publish(serial.imageOf('amd64'), file, context(serial));
    assert.equal(result.adopted, false);
    assert.equal(result.ref, path.join(root, 'releases/noble/release-20261120/ubuntu-24.04-server-cloudimg-amd64.img'));
    assert.deepEqual(visibleTree(), [
      'releases/', 'releases/noble/', 'releases/noble/release-20261120/',
      'releases/noble/release-20261120/SHA256SUMS', 'releases/noble/release-20261120/SHA256SUMS.gpg',
      'releases/noble/release-20261120/ubuntu-24.04-server-cloudimg-amd64.img',
    ]);
    const folder = path.join(root, serial.folder);
    assert.deepEqual(readFileSync(path.join(folder, 'SHA256SUMS')), serial.sums);
    assert.deepEqual(readFileSync(path.join(folder, 'SHA256SUMS.gpg')), serial.gpg);
    assert.equal(sha256(readFileSync(result.ref)), file.sha256);
    assert.equal(statSync(path.join(folder, 'SHA256SUMS')).mtime.toISOString(), '2026-11-20T06:23:00.000Z', 'dated as upstream served it');
    assert.equal(statSync(result.ref).mode & 0o777, 0o644, 'the image is world-readable though the cached copy was 0600');
    for (const d of ['releases', 'releases/noble', serial.folder]) assert.equal(statSync(path.join(root, d)).mode & 0o777, 0o755, d);
    assert.deepEqual(hiddenEntries(serial.folder), ['.ubuntu-24.04-server-cloudimg-amd64.img.cloudimg-sync.json'], 'only the bookkeeping, hidden');
  });

  test('puts daily and minimal images at their upstream paths', async () => {
    const target = new MirrorTarget('internal', root);
    for (const folder of ['noble/20261121', 'minimal/releases/noble/release-20261120', 'minimal/daily/noble/20261121']) {
      const serial = upstreamSerial(folder.split('/').pop()!.replace('release-', ''), ['amd64'], folder);
      await target.publish(serial.imageOf('amd64'), await cached(serial, 'amd64'), context(serial));
      assert.ok(existsSync(path.join(root, folder, 'SHA256SUMS')), folder);
      assert.ok(existsSync(path.join(root, folder, 'ubuntu-24.04-server-cloudimg-amd64.img')), folder);
    }
  });

  test('adds a second arch to an existing serial folder and adopts an image it already holds', async () => {
    const serial = upstreamSerial('20261120', ['amd64', 'arm64']);
    const target = new MirrorTarget('internal', root);
    await target.publish(serial.imageOf('amd64'), await cached(serial, 'amd64'), context(serial));
    const second = await target.publish(serial.imageOf('arm64'), await cached(serial, 'arm64'), context(serial));
    assert.equal(second.adopted, false);
    const again = await target.publish(serial.imageOf('amd64'), await cached(serial, 'amd64'), context(serial));
    assert.equal(again.adopted, true);
    assert.deepEqual(visibleTree(serial.folder), ['SHA256SUMS', 'SHA256SUMS.gpg', 'ubuntu-24.04-server-cloudimg-amd64.img', 'ubuntu-24.04-server-cloudimg-arm64.img']
      .map((name) => `${serial.folder}/${name}`));
    const published = await target.listPublished({ log });
    assert.deepEqual(published.map((p) => [p.release, p.arch, p.serial, p.channel, p.variant]).sort(),
      [['noble', 'amd64', '20261120', 'release', 'server'], ['noble', 'arm64', '20261120', 'release', 'server']]);
  });

  test('a failed publish leaves no serial folder and no work files behind', async () => {
    const serial = upstreamSerial('20261120', ['amd64']);
    const target = new MirrorTarget('internal', root);
    const file = await cached(serial, 'amd64');
    await assert.rejects(target.publish(serial.imageOf('amd64'), { ...file, path: path.join(dir, 'gone.img') }, context(serial)));
    assert.deepEqual(visibleTree('releases/noble'), []);
    assert.deepEqual(hiddenEntries('releases/noble'), []);
  });

  test('refuses an image its SHA256SUMS does not list with the verified checksum, writing nothing', async () => {
    const serial = upstreamSerial('20261120', ['amd64']);
    const target = new MirrorTarget('internal', root);
    const file = await cached(serial, 'amd64');
    await assert.rejects(target.publish(serial.imageOf('amd64'), { ...file, sha256: 'f'.repeat(64) }, context(serial)), { code: 'MIRROR_SUMS_MISMATCH' });
    await assert.rejects(target.publish(serial.imageOf('amd64'), file, { log }), { code: 'MIRROR_DOCUMENT_MISSING' });
    assert.deepEqual(visibleTree(), []);
  });

  test('retention removes one arch\'s image from a shared serial folder, and the last one takes the whole folder with its SHA256SUMS', async () => {
    const older = upstreamSerial('20261101', ['amd64', 'arm64']);
    const newer = upstreamSerial('20261120', ['amd64']);
    const target = new MirrorTarget('internal', root);
    for (const arch of ['amd64', 'arm64'] as const) await target.publish(older.imageOf(arch), await cached(older, arch), context(older));
    await target.publish(newer.imageOf('amd64'), await cached(newer, 'amd64'), context(newer));
    const published = await target.listPublished({ log });
    const olderAmd64 = published.find((p) => p.serial === '20261101' && p.arch === 'amd64')!;
    await target.remove(olderAmd64, { log });
    assert.deepEqual(visibleTree(older.folder), [`${older.folder}/SHA256SUMS`, `${older.folder}/SHA256SUMS.gpg`, `${older.folder}/ubuntu-24.04-server-cloudimg-arm64.img`],
      'the folder stays for arm64, with upstream\'s SHA256SUMS (naming amd64, as upstream\'s bytes do)');
    await target.remove(published.find((p) => p.serial === '20261101' && p.arch === 'arm64')!, { log });
    assert.deepEqual(visibleTree('releases/noble'), [`${newer.folder}/`, `${newer.folder}/SHA256SUMS`, `${newer.folder}/SHA256SUMS.gpg`, `${newer.folder}/ubuntu-24.04-server-cloudimg-amd64.img`]);
    assert.deepEqual(hiddenEntries('releases/noble'), [], 'no half-removed folder left');
    assert.deepEqual((await target.listPublished({ log })).map((p) => p.serial), ['20261120']);
    await target.remove(olderAmd64, { log }); // already gone: nothing to do
  });

  test('listing for retention clears work folders a crash left behind', async () => {
    const serial = upstreamSerial('20261120', ['amd64']);
    const target = new MirrorTarget('internal', root);
    await target.publish(serial.imageOf('amd64'), await cached(serial, 'amd64'), context(serial));
    const leftover = path.join(root, 'releases/noble/.release-20261121.partial-123-0badcafe');
    await mkdir(leftover);
    await writeFile(path.join(leftover, 'SHA256SUMS'), 'x');
    const notOurs = path.join(root, 'releases/noble/.well-kept');
    await writeFile(notOurs, 'an operator\'s file');
    assert.equal((await target.listPublished({ log })).length, 1);
    assert.equal(existsSync(leftover), false);
    assert.equal(existsSync(notOurs), true, 'hidden files not named like our work files are left alone');
  });

  test('never writes through a symlink nor removes outside its path', async () => {
    const outside = path.join(dir, 'outside');
    await mkdir(path.join(outside, 'noble', 'release-20261120'), { recursive: true });
    await writeFile(path.join(outside, 'noble', 'release-20261120', 'keep.txt'), 'precious');
    await mkdir(root);
    await symlink(outside, path.join(root, 'releases'));
    const serial = upstreamSerial('20261120', ['amd64']);
    const target = new MirrorTarget('internal', root);
    await assert.rejects(target.publish(serial.imageOf('amd64'), await cached(serial, 'amd64'), context(serial)), { code: 'UNSAFE_PATH' });
    const victim = { ref: path.join(outside, 'noble', 'release-20261120', 'keep.txt'), release: 'noble', arch: 'amd64', variant: 'server', channel: 'release', serial: '20261120', pinned: false };
    await assert.rejects(target.remove(victim, { log }), { code: 'UNSAFE_PATH' });
    await assert.rejects(target.remove({ ...victim, ref: path.join(root, 'releases', 'noble', 'release-20261120', 'keep.txt') }, { log }), { code: 'UNSAFE_PATH' });
    assert.equal(readFileSync(victim.ref, 'utf8'), 'precious');
    assert.deepEqual(readdirSync(path.join(outside, 'noble', 'release-20261120')), ['keep.txt']);
    assert.equal(lstatSync(path.join(root, 'releases')).isSymbolicLink(), true);
  });

  test('check says whether the path is writable without creating it', async () => {
    const target = new MirrorTarget('internal', root);
    assert.match(await target.check(), /does not exist yet; it is created under .*cloudimg-mirror-target-/);
    assert.equal(existsSync(root), false);
    await mkdir(root);
    assert.match(await target.check(), /writable$/);
    assert.deepEqual(readdirSync(root), [], 'the probe file is gone');
  });

  test('refuses upstream paths that climb out, hide, or name no folder', () => {
    const serial = upstreamSerial('20261120', ['amd64']);
    for (const upstreamPath of ['releases/../../etc/x.img', '/etc/x.img', 'releases/noble/.hidden/x.img', 'x.img', 'releases//x.img']) {
      assert.throws(() => mirrorPlacement({ ...serial.imageOf('amd64'), upstreamPath }), { code: 'UNSAFE_PATH' }, upstreamPath);
    }
    assert.throws(() => mirrorPlacement({ ...serial.imageOf('amd64'), upstreamPath: undefined }), { code: 'MIRROR_LAYOUT_UNKNOWN' });
  });

  test('documents outside the serial folder (simplestreams indexes) are placed at their own paths', () => {
    const image = { ...upstreamSerial('20240605.1', ['amd64']).imageOf('amd64'), upstreamPath: 'server/releases/noble/release-20240605.1/a.img' };
    image.signedBy = [{ url: 'https://x/releases/streams/v1/index.sjson', path: 'streams/v1/index.sjson' }];
    const placement = mirrorPlacement(image);
    assert.deepEqual(placement.folder, ['server', 'releases', 'noble', 'release-20240605.1']);
    assert.deepEqual(placement.folderDocuments, []);
    assert.deepEqual(placement.otherDocuments, [{ url: 'https://x/releases/streams/v1/index.sjson', segments: ['streams', 'v1', 'index.sjson'] }]);
  });
});
