import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, beforeEach, describe, test } from 'node:test';
import { downloadFile } from '../../src/fetch/download.js';
import { createHttpClient } from '../../src/fetch/http-client.js';
import { silentLogger } from '../../src/log.js';
import type { UpstreamImage } from '../../src/image.js';
import { acquireStateLock } from '../../src/state/lock.js';
import { StateStore } from '../../src/state/store.js';
import { DirectoryTarget } from '../../src/targets/directory/target.js';
import { startMirror, type Mirror } from '../fixtures/mirror/index.js';

const VICTIM_TEXT = 'the operator\'s file, not an image\n';
const FILE = 'ubuntu-24.04-server-cloudimg-amd64.img';
const IMAGE_PATH = `/releases/noble/release-20261120/${FILE}`;
const ctx = { log: silentLogger() };

let mirror: Mirror;
let client: ReturnType<typeof createHttpClient>;
let dir: string;
let victim: string;
before(async () => {
  mirror = await startMirror({ releases: [{ codename: 'noble', serials: ['20261120'], channels: ['release'] }] });
  client = createHttpClient();
});
after(async () => {
  await client.close();
  await mirror.close();
});
beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), 'cloudimg-local-'));
  mkdirSync(path.join(dir, 'outside'));
  victim = path.join(dir, 'outside', 'victim');
  writeFileSync(victim, VICTIM_TEXT);
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const mode = (file: string) => statSync(file).mode & 0o777;
const sha256 = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

function image(): UpstreamImage {
  const p = mirror.published()[0]!;
  return { ...p, signed: true, url: mirror.urlOf(p.urlPath) };
}

async function verifiedFile(): Promise<{ path: string; sizeBytes: number; sha256: string }> {
  const dest = path.join(dir, 'cache', FILE);
  mkdirSync(path.dirname(dest), { recursive: true });
  const res = await downloadFile(mirror.urlOf(IMAGE_PATH), dest, { client, retries: 0 });
  return { path: res.path, sizeBytes: res.sizeBytes, sha256: res.sha256 };
}

describe('never follow a planted symlink', () => {
  for (const suffix of ['.part', '.part.json']) {
    test(`a symlink at the cache ${suffix} is refused (UNSAFE_PATH) and the file it points to is untouched`, async () => {
      const dest = path.join(dir, 'cache', FILE);
      mkdirSync(path.dirname(dest), { recursive: true });
      symlinkSync(victim, `${dest}${suffix}`);
      await assert.rejects(downloadFile(mirror.urlOf(IMAGE_PATH), dest, { client, retries: 0 }), { code: 'UNSAFE_PATH' });
      assert.equal(readFileSync(victim, 'utf8'), VICTIM_TEXT);
      assert.ok(!existsSync(dest));
    });
  }

  for (const [what, planted] of [
    ['the manifest\'s .tmp', `${FILE}.cloudimg-sync.json.tmp`],
    ['the directory publish temporary file', `${FILE}.tmp-${process.pid}`],
  ] as const) {
    test(`a symlink at ${what} is refused and the file it points to is untouched`, async () => {
      const file = await verifiedFile();
      const target = new DirectoryTarget('local', path.join(dir, 'images'));
      const serialDir = path.join(dir, 'images', 'noble', '20261120');
      mkdirSync(serialDir, { recursive: true });
      symlinkSync(victim, path.join(serialDir, planted));
      await assert.rejects(target.publish(image(), file, ctx), { code: 'UNSAFE_PATH' });
      assert.equal(readFileSync(victim, 'utf8'), VICTIM_TEXT);
      assert.equal((await target.listPublished(ctx)).length, 0, 'nothing listed as published');
    });
  }

  test('the published image is a regular file of its own bytes, never a symlink to the verified file', async () => {
    const file = await verifiedFile();
    const link = path.join(dir, 'cache', 'link.img');
    symlinkSync(victim, link);
    const target = new DirectoryTarget('local', path.join(dir, 'images'));
    await assert.rejects(target.publish(image(), { ...file, path: link }, ctx), { code: 'UNSAFE_PATH' });
    const { ref } = await target.publish(image(), file, ctx);
    assert.ok(lstatSync(ref).isFile());
    assert.equal(sha256(ref), file.sha256);
  });

  test('a release folder that is a symlink out of the target directory is refused; nothing is written outside', async () => {
    const file = await verifiedFile();
    mkdirSync(path.join(dir, 'images'));
    symlinkSync(path.join(dir, 'outside'), path.join(dir, 'images', 'noble'));
    const target = new DirectoryTarget('local', path.join(dir, 'images'));
    await assert.rejects(target.publish(image(), file, ctx), { code: 'UNSAFE_PATH' });
    assert.ok(!existsSync(path.join(dir, 'outside', '20261120')), 'no serial folder created outside');
  });
});

describe('retention removes only what is inside the target', () => {
  function plantManifest(release: string, serial: string, manifest: Record<string, unknown>): void {
    const serialDir = path.join(dir, 'images', release, serial);
    mkdirSync(serialDir, { recursive: true });
    writeFileSync(path.join(serialDir, `${FILE}.cloudimg-sync.json`), JSON.stringify({
      channel: 'release', variant: 'server', release, version: '24.04', arch: 'amd64', serial, fileName: FILE,
      sha256: 'a'.repeat(64), sizeBytes: 1, sourceUrl: 'x', publishedAt: new Date().toISOString(), ...manifest,
    }));
  }

  test('a manifest whose fileName leaves its folder, or whose release/serial do not match it, is not listed', async () => {
    plantManifest('noble', '20200101', { fileName: '../../../outside/victim' });
    plantManifest('noble', '20200102', { serial: '20990101' });
    plantManifest('noble', '20200103', { release: 'jammy' });
    plantManifest('noble', '20200104', {});
    const target = new DirectoryTarget('local', path.join(dir, 'images'));
    const listed = await target.listPublished(ctx);
    assert.deepEqual(listed.map((i) => i.serial), ['20200104']);
  });

  test('removing a ref outside the target directory is refused and deletes nothing', async () => {
    const target = new DirectoryTarget('local', path.join(dir, 'images'));
    mkdirSync(path.join(dir, 'images'));
    const outside = { ref: victim, release: 'noble', arch: 'amd64', variant: 'server', channel: 'release', serial: '20200101', pinned: false };
    await assert.rejects(target.remove(outside), { code: 'UNSAFE_PATH' });
    const viaDotDot = { ...outside, ref: path.join(dir, 'images', 'noble', '20200101', '..', '..', '..', 'outside', FILE) };
    writeFileSync(path.join(dir, 'outside', FILE), 'not ours');
    await assert.rejects(target.remove(viaDotDot), { code: 'UNSAFE_PATH' });
    assert.ok(existsSync(victim) && existsSync(path.join(dir, 'outside', FILE)));
  });
});

describe('file modes, whatever the umask', () => {
  let umask: number;
  beforeEach(() => { umask = process.umask(0o000); });
  afterEach(() => { process.umask(umask); });

  test('the state database (and its WAL) and the lock are 0600 in a 0700 state directory', () => {
    const stateDir = path.join(dir, 'state');
    const lock = acquireStateLock(stateDir);
    const store = StateStore.open(stateDir);
    try {
      store.startRun();
      assert.equal(mode(stateDir), 0o700);
      for (const name of ['cloudimg-sync.db', 'cloudimg-sync.db-wal', 'cloudimg-sync.lock']) {
        assert.equal(mode(path.join(stateDir, name)).toString(8), '600', name);
      }
    } finally {
      store.close();
      lock.release();
    }
  });

  test('cached downloads are 0600; published images and manifests get the configured mode (default 0644)', async () => {
    const file = await verifiedFile();
    assert.equal(mode(file.path).toString(8), '600');
    process.umask(0o077);
    const { ref } = await new DirectoryTarget('local', path.join(dir, 'images')).publish(image(), file, ctx);
    assert.equal(mode(ref).toString(8), '644');
    assert.equal(mode(`${ref}.cloudimg-sync.json`).toString(8), '644');
    rmSync(path.join(dir, 'images'), { recursive: true });
    const { ref: again } = await new DirectoryTarget('local', path.join(dir, 'images'), 0o640).publish(image(), await verifiedFile(), ctx);
    assert.equal(mode(again).toString(8), '640');
  });
});
