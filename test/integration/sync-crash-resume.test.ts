/**
 * Crash consistency of the sync cycle (fixture mirror, directory target): whatever state a kill -9 leaves
 * in the database, the next cycle resumes from it, and one image's failure never ends the cycle for the others.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, truncateSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { STATE_FILE_NAME } from '../../src/state/store.js';
import { cachePath } from '../../src/sync/run.js';
import type { PublishedImage } from '../fixtures/mirror/index.js';
import { createSyncWorld, type SyncWorld } from '../support/sync-world.js';

let world: SyncWorld;
afterEach(async () => { await world?.close(); });

function imageRequests(w: SyncWorld) {
  return w.mirror.requests.filter((r) => r.path.endsWith('.img'));
}

function targetFile(w: SyncWorld, image: Pick<PublishedImage, 'release' | 'serial' | 'fileName'>): string {
  return path.join(w.dir, 'images', image.release, image.serial, image.fileName);
}

/** Leave state as a kill right after `image.download.done` did before the fix: `downloaded`, the file in the cache. */
function leaveDownloaded(w: SyncWorld, image: PublishedImage): string {
  const store = w.store();
  store.recordDiscovered({ ...image, url: w.mirror.urlOf(image.urlPath), signed: true });
  const key = `${image.channel}/${image.variant}/${image.release}/${image.arch}/${image.serial}`;
  // Written with SQL, not the store's API: a fixed store refuses to produce the two-step state at all.
  const db = new Database(path.join(w.config.stateDir, STATE_FILE_NAME));
  db.prepare(`UPDATE images SET state = 'downloaded', size_bytes = ? WHERE key = ?`).run(image.sizeBytes, key);
  db.close();
  const cached = cachePath(w.config, { ...image, url: '', signed: true });
  mkdirSync(path.dirname(cached), { recursive: true });
  copyFileSync(path.join(w.mirror.root, image.urlPath), cached);
  return cached;
}

describe('sync cycle after a crash (fixture mirror, directory target)', () => {
  test('an image left `downloaded` by a kill is re-verified from the cache and published, without downloading again', async () => {
    world = await createSyncWorld();
    const image = world.mirror.published({ channel: 'release', variant: 'server' })[0]!;
    leaveDownloaded(world, image);
    world.mirror.clearRequests();
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.equal(summary.published, 1);
    assert.ok(existsSync(targetFile(world, image)), 'the image is published');
    assert.equal(imageRequests(world).length, 0, 'the verified bytes in the cache are used, not fetched again');
    const record = world.store().listImages()[0]!;
    assert.equal(record.state, 'verified');
    assert.equal(record.publications.local?.state, 'published');
    assert.equal(world.events('image.verify.ok').length, 1);
    assert.equal((await world.sync()).result, 'ok', 'and the next cycle is clean too');
  });

  test('an image left `downloaded` with a damaged cached file is fetched again', async () => {
    world = await createSyncWorld();
    const image = world.mirror.published({ channel: 'release', variant: 'server' })[0]!;
    truncateSync(leaveDownloaded(world, image), 1000);
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.equal(summary.downloaded, 1);
    assert.ok(existsSync(targetFile(world, image)));
    assert.equal(world.store().listImages()[0]!.state, 'verified');
  });

  test("one image's unexpected error neither stops the other images nor retention", async () => {
    world = await createSyncWorld({
      mirror: { releases: [{ codename: 'noble', serials: ['20261101'], arches: ['amd64', 'arm64'] }] },
      config: { keep: 1, source: { arches: ['amd64', 'arm64'] } },
    });
    assert.equal((await world.sync()).result, 'ok');
    const added = await world.mirror.addSerial({ codename: 'noble', serial: '20261120', channels: ['release'], arches: ['amd64', 'arm64'] });
    const amd64 = added.find((i) => i.arch === 'amd64');
    const arm64 = added.find((i) => i.arch === 'arm64');
    assert.ok(amd64 && arm64);
    // A state row no code path writes: the image job for amd64 hits an error nobody anticipated.
    const store = world.store();
    store.recordDiscovered({ ...amd64, url: world.mirror.urlOf(amd64.urlPath), signed: true });
    const db = new Database(path.join(world.config.stateDir, STATE_FILE_NAME));
    db.prepare(`UPDATE images SET state = 'bogus' WHERE arch = 'amd64' AND serial = '20261120'`).run();
    db.close();
    const summary = await world.sync();
    assert.equal(summary.result, 'failed');
    assert.equal(summary.failed, 1, summary.errors.join('\n'));
    assert.match(summary.errors[0]!, /amd64\/20261120/);
    assert.ok(existsSync(targetFile(world, arm64)), 'the arm64 image after it is still published');
    assert.equal(world.events('image.job.failed').length, 1);
    assert.ok(!existsSync(path.join(world.dir, 'images', 'noble', '20261101', arm64.fileName)), 'retention still retires the old arm64 serial');
    assert.ok(existsSync(path.join(world.dir, 'images', 'noble', '20261101', amd64.fileName)), 'while amd64 keeps its only published serial');
  });
});
