/**
 * The image job's adoption before the download (Target.adoptHeld), on a real state database, a real directory
 * target and the fixture mirror: what is downloaded, what state records. The targets' `adoptHeld` here stand for
 * what a target's own check answers; the Glance one is tested against the real Glance (glance-preflight).
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { imageKey, type UpstreamImage } from '../../src/image.js';
import { silentLogger } from '../../src/log.js';
import { StateStore, type RunCounts } from '../../src/state/store.js';
import { ImageJob, type JobContext } from '../../src/sync/image-job.js';
import { DirectoryTarget } from '../../src/targets/directory/target.js';
import type { PublishResult } from '../../src/targets/target.js';
import { startMirror, type Mirror } from '../fixtures/mirror/index.js';

/** A directory target that answers the adoption question as told. */
class AdoptingDirectory extends DirectoryTarget {
  asked = 0;
  constructor(name: string, root: string, private readonly answer: PublishResult | undefined) {
    super(name, root);
  }

  async adoptHeld(): Promise<PublishResult | undefined> {
    this.asked++;
    return this.answer;
  }
}

let mirror: Mirror;
let dir: string;
let store: StateStore;
before(async () => { mirror = await startMirror(); });
after(async () => { await mirror.close(); });
afterEach(() => {
  store.close();
  rmSync(dir, { recursive: true, force: true });
});

function setUp(targets: DirectoryTarget[]): { ctx: JobContext; image: UpstreamImage; counts: RunCounts } {
  dir = mkdtempSync(path.join(tmpdir(), 'image-job-adopt-'));
  store = StateStore.open(path.join(dir, 'state'));
  const image: UpstreamImage = { ...mirror.published({ channel: 'release', variant: 'server' })[0]!, signed: true };
  store.recordDiscovered(image);
  const counts: RunCounts = { discovered: 0, downloaded: 0, published: 0, retired: 0, failed: 0, bytesDown: 0 };
  const ctx: JobContext = {
    store, targets, log: silentLogger(), http: { retries: 0, retryBaseDelayMs: 1, retryMaxDelayMs: 1 }, cacheDir: path.join(dir, 'cache'),
    keepCache: false, counts, fail: () => { counts.failed++; }, removals: [], touchedTargets: new Set(),
  };
  return { ctx, image, counts };
}

test('every target adopts the copy it holds: nothing is downloaded; a download a crash left behind is no longer pending', async () => {
  const target = new AdoptingDirectory('held', path.join(tmpdir(), 'never-written'), { ref: 'copy-1', adopted: true });
  const { ctx, image, counts } = setUp([target]);
  const key = imageKey(image);
  store.setImageState(key, 'downloading', { localPath: null });
  mirror.clearRequests();
  await new ImageJob(ctx, { image, key, cached: false, download: false, publishTo: ['held'], adopt: ['held'] }).run();
  assert.equal(mirror.requests.filter((r) => r.path.endsWith('.img')).length, 0);
  assert.deepEqual([counts.downloaded, counts.published, counts.failed], [0, 1, 0]);
  const record = store.getImage(key)!;
  assert.deepEqual([record.publications.held?.state, record.publications.held?.ref], ['published', 'copy-1']);
  assert.deepEqual([record.state, record.localPath], ['discovered', null], 'known upstream, no local copy');
});

test('a target that holds no copy after all gets the download, like the targets that had none', async () => {
  const gone = new AdoptingDirectory('gone', path.join(tmpdir(), `image-job-adopt-${process.pid}-gone`), undefined);
  const { ctx, image, counts } = setUp([gone]);
  const key = imageKey(image);
  try {
    mirror.clearRequests();
    await new ImageJob(ctx, { image, key, cached: false, download: false, publishTo: ['gone'], adopt: ['gone'] }).run();
    assert.equal(gone.asked, 1);
    assert.equal(mirror.requests.filter((r) => r.path.endsWith('.img')).length, 1);
    assert.deepEqual([counts.downloaded, counts.published, counts.failed], [1, 1, 0]);
    assert.equal(store.getImage(key)!.publications.gone?.state, 'published');
  } finally {
    await Promise.all(ctx.removals);
    rmSync(gone.root, { recursive: true, force: true });
  }
});
