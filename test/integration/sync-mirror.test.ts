import assert from 'node:assert/strict';
import { appendFileSync, existsSync, readdirSync, readFileSync, utimesSync } from 'node:fs';
import { createHash } from 'node:crypto';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { SyncMetrics } from '../../src/daemon/metrics.js';
import { DirectoryTarget } from '../../src/targets/directory/target.js';
import type { EventRecord } from '../../src/events.js';
import { createSyncWorld, type SyncWorld } from '../support/sync-world.js';

let world: SyncWorld;
afterEach(async () => { await world?.close(); });

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.join(d.parentPath, d.name));
}

function sha256Of(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

function imageRequests(w: SyncWorld) {
  return w.mirror.requests.filter((r) => r.path.endsWith('.img'));
}

describe('sync cycle against the fixture mirror (directory target)', () => {
  test('publishes the newest signed serial of each release/arch with a manifest, and records every step', async () => {
    world = await createSyncWorld({
      mirror: { releases: [{ codename: 'noble', serials: ['20261101', '20261120'], arches: ['amd64', 'arm64'] }, { codename: 'jammy', serials: ['20261115'] }] },
      config: { source: { releases: ['noble', '22.04'], arches: ['amd64', 'arm64'] }, keep: 1 },
    });
    const summary = await world.sync();
    // jammy is published for amd64 only: its arm64 is reported, the rest of the run goes on.
    assert.equal(summary.result, 'incomplete', summary.errors.join('\n'));
    assert.deepEqual(summary.incomplete.map((i) => [i.stream, i.release, i.arch]), [['release/server', 'jammy', 'arm64']]);
    assert.equal(summary.downloaded, 3);
    const expected = world.mirror.published({ channel: 'release', variant: 'server' }).filter((i) => i.serial !== '20261101');
    assert.equal(expected.length, 3);
    for (const image of expected) {
      const file = path.join(world.dir, 'images', image.release, image.serial, image.fileName);
      assert.equal(sha256Of(file), image.sha256, `${file} holds the signed bytes`);
      const manifest = JSON.parse(readFileSync(`${file}.cloudimg-sync.json`, 'utf8')) as Record<string, unknown>;
      assert.equal(manifest.sha256, image.sha256);
      assert.equal(manifest.serial, image.serial);
    }
    const store = world.store();
    const states = store.listImages().map((r) => [r.release, r.arch, r.serial, r.state, r.publications.local?.state]);
    assert.deepEqual(states.sort(), [
      ['jammy', 'amd64', '20261115', 'verified', 'published'],
      ['noble', 'amd64', '20261120', 'verified', 'published'],
      ['noble', 'arm64', '20261120', 'verified', 'published'],
    ]);
    assert.equal(store.listRuns()[0]!.result, 'incomplete');
    assert.deepEqual(filesUnder(path.join(world.dir, 'cache')), [], 'the cache is emptied once every target has the image');
    assert.deepEqual(store.listImages().map((r) => r.localPath), [null, null, null], 'and state no longer points at the removed copies');
    for (const name of ['sync.run.started', 'image.discovered', 'image.download.done', 'image.verify.ok', 'image.publish.done', 'sync.run.finished']) {
      assert.ok(world.events(name).length > 0, `event ${name} logged`);
    }
    const ua = world.mirror.requests[0]!.headers['user-agent'];
    assert.match(String(ua), /^cloudimg-sync\/\d+\.\d+\.\d+/);
  });

  test('a second cycle with nothing new upstream downloads nothing and costs only conditional requests', async () => {
    world = await createSyncWorld();
    assert.equal((await world.sync()).result, 'ok');
    world.mirror.clearRequests();
    const second = await world.sync();
    assert.equal(second.result, 'ok');
    assert.equal(second.downloaded, 0);
    assert.equal(imageRequests(world).length, 0);
    assert.ok(world.mirror.requests.length > 0 && world.mirror.requests.every((r) => r.status === 304), 'every request revalidated with 304');
    assert.ok(world.mirror.requests.every((r) => r.headers['if-none-match'] || r.headers['if-modified-since']));
    assert.equal(world.events('source.sums.verified').length, 1, 'an unchanged signed list is not verified again');
  });

  test('the publication lag runs from the SHA256SUMS Last-Modified upstream to the reveal, and feeds the lag metric', async () => {
    world = await createSyncWorld({ mirror: { releases: [{ codename: 'noble', serials: ['20261120'] }] } });
    // Upstream wrote the serial's SHA256SUMS two hours ago (whole seconds, as Last-Modified carries them).
    const writtenAt = new Date(Math.floor(Date.now() / 1000) * 1000 - 2 * 3_600_000);
    const sums = path.join(world.mirror.root, 'releases/noble/release-20261120/SHA256SUMS');
    utimesSync(sums, writtenAt, writtenAt);
    assert.equal((await world.sync()).result, 'ok');
    const [done] = world.events('image.publish.done');
    assert.equal(done?.publishedAt, writtenAt.toISOString());
    const lag = Number(done?.lagSeconds);
    assert.ok(lag >= 7_200 && lag < 7_260, `lagSeconds ${lag}`);
    const metrics = new SyncMetrics(() => undefined);
    for (const record of world.logs) metrics.observe(record as unknown as EventRecord);
    const gauge = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'cloudimg_sync_publication_lag_seconds');
    assert.deepEqual(gauge?.values.map((v) => [v.labels, v.value]), [[{ stream: 'release/server', release: 'noble', arch: 'amd64', target: 'local' }, lag]]);
  });

  test('an unchanged list that verified is not fetched with its signature again; a changed one is, and a bad signature on it is caught', async () => {
    world = await createSyncWorld();
    assert.equal((await world.sync()).result, 'ok');
    world.mirror.inject({ path: /SHA256SUMS\.gpg$/, fault: 'bad-signature', how: 'foreign-key' });
    world.mirror.clearRequests();
    assert.equal((await world.sync()).result, 'ok', 'the bytes checked before are unchanged: nothing to verify');
    assert.deepEqual(world.mirror.requests.filter((r) => r.path.endsWith('.gpg')), [], 'no signature fetched for an unchanged list');
    // Upstream's list changes under the same URL without a matching signature: it is fetched and refused.
    world.mirror.clearFaults();
    const [image] = world.mirror.published();
    const sums = path.join(world.mirror.root, path.dirname(image!.urlPath), 'SHA256SUMS');
    appendFileSync(sums, `${'0'.repeat(64)} *unsigned-extra.img\n`);
    const later = new Date(Date.now() + 5_000);
    utimesSync(sums, later, later);
    const summary = await world.sync();
    assert.equal(summary.result, 'failed');
    assert.match(summary.errors[0]!, /SIGNATURE_INVALID/);
    assert.equal(world.mirror.requests.filter((r) => r.path.endsWith('.gpg')).length, 1, 'the changed list\'s signature was fetched');
  });

  test('a new serial upstream is fetched and the oldest beyond keep is removed from the directory', async () => {
    world = await createSyncWorld({ mirror: { releases: [{ codename: 'noble', serials: ['20261101'] }] }, config: { keep: 1 } });
    assert.equal((await world.sync()).result, 'ok');
    await world.mirror.addSerial({ codename: 'noble', serial: '20261120' });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok');
    assert.equal(summary.retired, 1);
    const images = filesUnder(path.join(world.dir, 'images')).map((f) => path.relative(path.join(world.dir, 'images'), f)).sort();
    assert.deepEqual(images, [
      'noble/20261120/ubuntu-24.04-server-cloudimg-amd64.img',
      'noble/20261120/ubuntu-24.04-server-cloudimg-amd64.img.cloudimg-sync.json',
    ]);
    const old = world.store().getImage('release/server/noble/amd64/20261101')!;
    assert.equal(old.publications.local!.state, 'removed');
    assert.equal(world.events('image.retire.removed').length, 1);
  });

  test('a 503 on the image is retried with backoff and recovers', async () => {
    world = await createSyncWorld();
    world.mirror.inject({ path: /\.img$/, fault: 'status', status: 503, times: 2 });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join());
    assert.deepEqual(imageRequests(world).map((r) => r.status), [503, 503, 200]);
    assert.equal(world.events('http.retry').length, 2);
  });

  test('a connection reset mid-body resumes from the byte it stopped at', async () => {
    world = await createSyncWorld();
    world.mirror.inject({ path: /\.img$/, fault: 'reset', afterBytes: 200_000, times: 1 });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join());
    const reqs = imageRequests(world);
    assert.equal(reqs.length, 2);
    const range = String(reqs[1]!.headers.range);
    const from = Number(/bytes=(\d+)-/.exec(range)?.[1]);
    assert.ok(from > 0 && from <= 200_000, `resumed with ${range}`);
    assert.equal(reqs[1]!.status, 206);
    const image = world.mirror.published()[0]!;
    assert.equal(sha256Of(path.join(world.dir, 'images', 'noble', image.serial, image.fileName)), image.sha256);
  });

  test('a truncated body is resumed and the result verifies', async () => {
    world = await createSyncWorld();
    world.mirror.inject({ path: /\.img$/, fault: 'truncate', afterBytes: 100_000, times: 1 });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join());
    assert.equal(imageRequests(world)[1]!.status, 206);
  });

  test('a server that ignores Range makes the download restart cleanly from byte 0', async () => {
    world = await createSyncWorld();
    world.mirror.inject({ path: /\.img$/, fault: 'reset', afterBytes: 150_000, times: 1 });
    world.mirror.inject({ path: /\.img$/, fault: 'ignore-range', times: 1 });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join());
    assert.deepEqual(imageRequests(world).map((r) => r.status), [200, 200]);
  });

  test('wrong bytes fail the checksum: nothing is published, no partial file stays, the next cycle recovers', async () => {
    world = await createSyncWorld();
    world.mirror.inject({ path: /\.img$/, fault: 'wrong-bytes' });
    const summary = await world.sync();
    assert.equal(summary.result, 'failed');
    assert.match(summary.errors[0]!, /CHECKSUM_MISMATCH/);
    assert.deepEqual(filesUnder(path.join(world.dir, 'images')), []);
    assert.deepEqual(filesUnder(path.join(world.dir, 'cache')), [], 'the bad download and its .part are deleted');
    const rec = world.store().listImages()[0]!;
    assert.deepEqual([rec.state, rec.errorCode], ['failed', 'CHECKSUM_MISMATCH']);
    assert.equal(world.events('image.verify.failed').length, 1);
    world.mirror.clearFaults();
    assert.equal((await world.sync()).result, 'ok');
    assert.equal(world.store().listImages()[0]!.publications.local!.state, 'published');
  });

  for (const how of ['foreign-key', 'tampered-sums'] as const) {
    test(`a bad signature (${how}) stops the release before any image byte is fetched`, async () => {
      world = await createSyncWorld();
      world.mirror.inject({ path: /SHA256SUMS/, fault: 'bad-signature', how });
      const summary = await world.sync();
      assert.equal(summary.result, 'failed');
      assert.match(summary.errors[0]!, /SIGNATURE_INVALID/);
      assert.equal(imageRequests(world).length, 0);
      assert.deepEqual(world.store().listImages(), []);
    });
  }

  test('a pruned newest serial falls back to the previous one', async () => {
    world = await createSyncWorld({ mirror: { releases: [{ codename: 'noble', serials: ['20261101', '20261120'] }] } });
    world.mirror.inject({ path: /release-20261120\//, fault: 'pruned' });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join());
    assert.deepEqual(world.store().listImages().map((r) => r.serial), ['20261101']);
    assert.equal(world.events('source.serial.pruned').length, 1);
  });

  test('a malformed listing fails the release with a clear message and leaves state untouched', async () => {
    world = await createSyncWorld();
    world.mirror.inject({ path: '/releases/noble/', fault: 'malformed-listing', kind: 'garbage' });
    const summary = await world.sync();
    assert.equal(summary.result, 'failed');
    assert.match(summary.errors[0]!, /LISTING_NO_SERIALS: .*\/releases\/noble\/ lists no serial folders \(fix: /);
    assert.deepEqual(world.store().listImages(), []);
    assert.equal(world.store().listRuns()[0]!.result, 'failed');
  });

  test('a listing with old-style Apache dates still works', async () => {
    world = await createSyncWorld();
    world.mirror.inject({ path: /\/$/, fault: 'malformed-listing', kind: 'odd-dates' });
    assert.equal((await world.sync()).result, 'ok');
  });

  test('a slow body still completes and reports progress', async () => {
    world = await createSyncWorld();
    world.mirror.inject({ path: /\.img$/, fault: 'slow', bytesPerSecond: 2_000_000 });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join());
    assert.ok(world.events('image.download.progress').length >= 2);
  });

  test('a stalled body hits the idle timeout, is retried and resumes', async () => {
    world = await createSyncWorld({ config: { http: { retries: 3, retryBaseDelayMs: 10, retryMaxDelayMs: 50, idleTimeoutMs: 300 } } });
    world.mirror.inject({ path: /\.img$/, fault: 'slow', bytesPerSecond: 1, times: 1 });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join());
    assert.ok(imageRequests(world).length >= 2);
  });

  test('turning signature checking off is logged as a warning on every run', async () => {
    world = await createSyncWorld({ config: { source: { verifySignature: false } } });
    await world.sync();
    await world.sync();
    assert.equal(world.events('source.signature.disabled').length, 2);
    assert.ok(world.events('source.signature.disabled').every((e) => e.level === 'warn'));
  });

  test('an abort mid-download leaves a resumable .part and the next run continues from it', async () => {
    world = await createSyncWorld({ mirror: { imageSizeBytes: 4 * 1024 * 1024 } });
    const fault = world.mirror.inject({ path: /\.img$/, fault: 'slow', bytesPerSecond: 4_000_000, times: 1 });
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 400);
    const first = await world.sync({ signal: abort.signal });
    assert.equal(first.result, 'interrupted');
    assert.equal(fault.hits, 1);
    const parts = filesUnder(path.join(world.dir, 'cache')).filter((f) => f.endsWith('.part'));
    assert.equal(parts.length, 1);
    assert.equal(world.store().listImages()[0]!.state, 'downloading');
    const second = await world.sync();
    assert.equal(second.result, 'ok', second.errors.join());
    const resumed = imageRequests(world).at(-1)!;
    assert.match(String(resumed.headers.range), /^bytes=[1-9]\d*-$/);
  });
});

describe('channels and variants', () => {
  test('the daily channel syncs <codename>-server-cloudimg-<arch>.img from /<codename>/<serial>/', async () => {
    world = await createSyncWorld({
      mirror: { releases: [{ codename: 'noble', serials: ['20261118', '20261119.1'], channels: ['daily'] }] },
      config: { source: { channel: 'daily' }, keep: 1 },
    });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join());
    const rec = world.store().listImages();
    assert.deepEqual(rec.map((r) => [r.channel, r.serial, r.fileName, r.version]), [['daily', '20261119.1', 'noble-server-cloudimg-amd64.img', '24.04']]);
    assert.ok(world.mirror.requests.some((r) => r.path === '/noble/20261119.1/SHA256SUMS'));
  });

  test('the minimal variant syncs from /minimal/releases/ with the version from the file name', async () => {
    world = await createSyncWorld({
      mirror: { releases: [{ codename: 'resolute', serials: ['20261120'], variants: ['minimal'], channels: ['release'] }] },
      config: { source: { variant: 'minimal', releases: ['26.04'] } },
    });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join());
    const rec = world.store().listImages();
    assert.deepEqual(rec.map((r) => [r.variant, r.release, r.fileName]), [['minimal', 'resolute', 'ubuntu-26.04-minimal-cloudimg-amd64.img']]);
    assert.ok(world.mirror.requests.some((r) => r.path.startsWith('/minimal/releases/resolute/release-20261120/')));
  });

  test('a release missing from the codename table still syncs on the release channel (version from the file name)', async () => {
    world = await createSyncWorld({
      mirror: { releases: [{ codename: 'zebu', version: '27.04', serials: ['20270501'], channels: ['release'] }] },
      config: { source: { releases: ['zebu'] } },
    });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join());
    assert.deepEqual(world.store().listImages().map((r) => [r.release, r.version]), [['zebu', '27.04']]);
  });
});

describe('retention safety', () => {
  test('a target that failed to publish the new serial retires nothing this run', async () => {
    world = await createSyncWorld({ mirror: { releases: [{ codename: 'noble', serials: ['20261101'] }] }, config: { keep: 1 } });
    assert.equal((await world.sync()).result, 'ok');
    await world.mirror.addSerial({ codename: 'noble', serial: '20261120' });
    const { DirectoryTarget } = await import('../../src/targets/directory/target.js');
    class FailingTarget extends DirectoryTarget {
      override async publish(): Promise<never> { throw new Error('disk on fire'); }
    }
    const target = new FailingTarget('local', path.join(world.dir, 'images'));
    const summary = await world.sync({ targets: [target] });
    assert.equal(summary.result, 'failed');
    assert.equal(summary.retired, 0);
    assert.equal(world.events('image.retire.skipped').length, 1);
    assert.ok(existsSync(path.join(world.dir, 'images', 'noble', '20261101')), 'the old serial is still there');
  });
});

describe('images in parallel', () => {
  /** A directory target that takes one publication at a time and counts how many overlapped. */
  class OneAtATimeTarget extends DirectoryTarget {
    readonly concurrency = 1;
    inFlight = 0;
    mostInFlight = 0;
    override async publish(...args: Parameters<DirectoryTarget['publish']>) {
      this.mostInFlight = Math.max(this.mostInFlight, ++this.inFlight);
      try {
        await new Promise((resolve) => setTimeout(resolve, 50));
        return await super.publish(...args);
      } finally {
        this.inFlight--;
      }
    }
  }

  /** Most downloads running at once, from the order of their start and done events. */
  function mostDownloadsAtOnce(w: SyncWorld): number {
    let now = 0;
    let most = 0;
    for (const e of w.logs) {
      if (e.event === 'image.download.started') most = Math.max(most, ++now);
      if (e.event === 'image.download.done' || e.event === 'image.download.failed') now--;
    }
    return most;
  }

  for (const concurrency of [1, 3]) {
    test(`concurrency ${concurrency}: ${concurrency} image(s) download at once, a target limited to one publication takes them one by one, each image's state its own`, async () => {
      const arches = ['amd64', 'arm64', 'ppc64el'] as const;
      world = await createSyncWorld({
        mirror: { releases: [{ codename: 'noble', serials: ['20261120'], arches: [...arches] }] },
        config: { concurrency, source: { arches: [...arches] } },
      });
      // Slow enough that the downloads overlap when they may: 512 KiB at 2 MB/s each.
      world.mirror.inject({ path: /\.img$/, fault: 'slow', bytesPerSecond: 2_000_000 });
      const target = new OneAtATimeTarget('local', path.join(world.dir, 'images'));
      const summary = await world.sync({ targets: [target] });
      assert.equal(summary.result, 'ok', summary.errors.join('\n'));
      assert.equal(summary.published, 3);
      assert.equal(mostDownloadsAtOnce(world), concurrency);
      assert.equal(target.mostInFlight, 1);
      const states = world.store().listImages().map((r) => [r.arch, r.state, r.publications.local?.state]).sort();
      assert.deepEqual(states, arches.map((a) => [a, 'verified', 'published']).sort());
      for (const arch of arches) {
        const file = path.join(world.dir, 'images', 'noble', '20261120', `ubuntu-24.04-server-cloudimg-${arch}.img`);
        assert.equal(sha256Of(file), world.mirror.published({ arch }).find((i) => i.serial === '20261120')!.sha256);
      }
      const done = world.events('image.publish.done');
      assert.deepEqual(done.map((e) => e.arch).sort(), [...arches].sort(), 'each image logs its own publication, with its own fields');
    });
  }
});
