import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { afterEach, describe, test } from 'node:test';
import type { UpstreamImage } from '../../src/image.js';
import { DirectoryTarget } from '../../src/targets/directory/target.js';
import type { PublishContext, PublishResult, StreamPublishContext, VerifiedFile } from '../../src/targets/target.js';
import { createSyncWorld, type SyncWorld } from '../support/sync-world.js';

/**
 * A directory target that uploads while downloading: bytes go to a hidden `.incoming` file, revealed only once
 * the loop says the download verified. It stands in for Glance `method: stream` to test the loop's side.
 */
class StreamingDirectoryTarget extends DirectoryTarget {
  firstChunkAtMs: number | undefined;
  streamedSha256: string | undefined;

  async publishStream(image: UpstreamImage, body: Readable, ctx: StreamPublishContext): Promise<PublishResult> {
    const dest = path.join(this.root, image.release, image.serial, image.fileName);
    const incoming = `${dest}.incoming`;
    await mkdir(path.dirname(dest), { recursive: true });
    ctx.onRef?.(dest);
    const hash = createHash('sha256');
    body.on('data', (c: Buffer) => { this.firstChunkAtMs ??= Date.now(); hash.update(c); });
    try {
      await pipeline(body, createWriteStream(incoming));
      const file = await ctx.verified;
      this.streamedSha256 = hash.digest('hex');
      if (this.streamedSha256 !== file.sha256) throw new Error('streamed bytes differ from the verified file');
      await rename(incoming, dest);
      return { ref: dest, adopted: false };
    } catch (err) {
      await rm(incoming, { force: true });
      throw err;
    }
  }
}

/** Compares md5 and sha512 after publishing, as the Glance target does; remembers the file it was given. */
class DigestComparingTarget extends DirectoryTarget {
  readonly digests = ['md5', 'sha512'] as const;
  received: VerifiedFile | undefined;

  override async publish(image: UpstreamImage, file: VerifiedFile, ctx: PublishContext): Promise<PublishResult> {
    this.received = file;
    return super.publish(image, file, ctx);
  }
}

/** A streaming target whose stream and whose publish of the verified file both fail while `failing` is set. */
class FailingStreamTarget extends StreamingDirectoryTarget {
  failing = true;

  override async publishStream(image: UpstreamImage, body: Readable, ctx: StreamPublishContext): Promise<PublishResult> {
    if (this.failing) {
      body.resume(); // drain it, as a target that fails late would have
      throw new Error('stream refused (test)');
    }
    return super.publishStream(image, body, ctx);
  }

  override async publish(image: UpstreamImage, file: VerifiedFile, ctx: PublishContext): Promise<PublishResult> {
    if (this.failing) throw new Error('publish refused (test)');
    return super.publish(image, file, ctx);
  }
}

function imageGets(w: SyncWorld): number {
  return w.mirror.requests.filter((r) => r.path.endsWith('.img') && r.method === 'GET').length;
}

let world: SyncWorld;
afterEach(async () => { await world?.close(); });

describe('stream-through publishing (upload while downloading)', () => {
  test('the target receives the bytes during the download and reveals them only after verification', async () => {
    world = await createSyncWorld({ mirror: { imageSizeBytes: 2 * 1024 * 1024 } });
    world.mirror.inject({ path: /\.img$/, fault: 'slow', bytesPerSecond: 4_000_000 });
    const target = new StreamingDirectoryTarget('streamer', path.join(world.dir, 'streamed'));
    const summary = await world.sync({ targets: [target] });
    assert.equal(summary.result, 'ok', summary.errors.join());
    const image = world.mirror.published()[0]!;
    assert.equal(target.streamedSha256, image.sha256);
    const done = world.events('image.download.done')[0]!;
    assert.ok(target.firstChunkAtMs! < Date.parse(String(done.time)) - 200, 'bytes reached the target well before the download finished');
    assert.equal(world.store().listImages()[0]!.publications.streamer!.state, 'published');
  });

  test('wrong bytes: the download fails verification and the target removes what it received', async () => {
    world = await createSyncWorld();
    world.mirror.inject({ path: /\.img$/, fault: 'wrong-bytes' });
    const target = new StreamingDirectoryTarget('streamer', path.join(world.dir, 'streamed'));
    const summary = await world.sync({ targets: [target] });
    assert.equal(summary.result, 'failed');
    const image = world.mirror.published()[0]!;
    const dest = path.join(world.dir, 'streamed', 'noble', image.serial, image.fileName);
    assert.equal(existsSync(dest), false);
    assert.equal(existsSync(`${dest}.incoming`), false);
    const pub = world.store().listImages()[0]!.publications.streamer!;
    assert.equal(pub.state, 'failed');
  });

  test('a download that restarts from byte 0 voids the stream; the verified file is published instead', async () => {
    world = await createSyncWorld();
    world.mirror.inject({ path: /\.img$/, fault: 'reset', afterBytes: 150_000, times: 1 });
    world.mirror.inject({ path: /\.img$/, fault: 'ignore-range', times: 1 });
    const target = new StreamingDirectoryTarget('streamer', path.join(world.dir, 'streamed'));
    const summary = await world.sync({ targets: [target] });
    assert.equal(summary.result, 'ok', summary.errors.join());
    assert.equal(world.events('image.publish.fallback').length, 1);
    const image = world.mirror.published()[0]!;
    const dest = path.join(world.dir, 'streamed', 'noble', image.serial, image.fileName);
    assert.equal(createHash('sha256').update(readFileSync(dest)).digest('hex'), image.sha256);
  });

  test('a resumed download streams the bytes already on disk first', async () => {
    world = await createSyncWorld();
    world.mirror.inject({ path: /\.img$/, fault: 'reset', afterBytes: 200_000, times: 1 });
    const target = new StreamingDirectoryTarget('streamer', path.join(world.dir, 'streamed'));
    const summary = await world.sync({ targets: [target] });
    assert.equal(summary.result, 'ok', summary.errors.join());
    assert.equal(world.events('image.publish.fallback').length, 0);
    assert.equal(target.streamedSha256, world.mirror.published()[0]!.sha256);
  });

  test('a target that compares md5 and sha512 gets them with the verified file, digested in the download\'s pass, and kept in state', async () => {
    world = await createSyncWorld();
    const comparing = new DigestComparingTarget('comparing', path.join(world.dir, 'comparing'));
    const summary = await world.sync({ targets: [comparing] });
    assert.equal(summary.result, 'ok', summary.errors.join());
    const image = world.mirror.published()[0]!;
    const bytes = readFileSync(path.join(world.mirror.root, image.urlPath));
    const expected = { md5: createHash('md5').update(bytes).digest('hex'), sha512: createHash('sha512').update(bytes).digest('hex') };
    assert.deepEqual(comparing.received?.digests, expected);
    assert.deepEqual(world.store().listImages()[0]!.digests, expected);
  });

  test('when every target streams, the cached copy is scratch: not flushed to disk, never in state, gone after publishing', async () => {
    world = await createSyncWorld();
    const target = new StreamingDirectoryTarget('streamer', path.join(world.dir, 'streamed'));
    const summary = await world.sync({ targets: [target] });
    assert.equal(summary.result, 'ok', summary.errors.join());
    assert.equal(world.events('image.download.done')[0]!.durable, false);
    const record = world.store().listImages()[0]!;
    assert.equal(record.state, 'verified');
    assert.equal(record.localPath, null);
    const image = world.mirror.published()[0]!;
    assert.equal(existsSync(path.join(world.dir, 'cache', 'noble', image.serial, image.fileName)), false);
  });

  test('with keepCache, or a target that takes the verified file, the copy is flushed to disk as it downloads', async () => {
    world = await createSyncWorld({ config: { keepCache: true } });
    let summary = await world.sync({ targets: [new StreamingDirectoryTarget('streamer', path.join(world.dir, 'streamed'))] });
    assert.equal(summary.result, 'ok', summary.errors.join());
    assert.equal(world.events('image.download.done')[0]!.durable, true);
    const record = world.store().listImages()[0]!;
    assert.ok(record.localPath && existsSync(record.localPath), 'keepCache: the copy stays and state points at it');
    await world.close();

    world = await createSyncWorld();
    summary = await world.sync({ targets: [
      new StreamingDirectoryTarget('streamer', path.join(world.dir, 'streamed')), new DirectoryTarget('plain', path.join(world.dir, 'plain')),
    ] });
    assert.equal(summary.result, 'ok', summary.errors.join());
    assert.equal(world.events('image.download.done')[0]!.durable, true);
  });

  test('a scratch copy kept by a failed publication is flushed and recorded; the next run publishes it without downloading', async () => {
    world = await createSyncWorld();
    const target = new FailingStreamTarget('streamer', path.join(world.dir, 'streamed'));
    const first = await world.sync({ targets: [target] });
    assert.equal(first.result, 'failed');
    assert.equal(world.events('image.download.done')[0]!.durable, false);
    const record = world.store().listImages()[0]!;
    assert.ok(record.localPath && existsSync(record.localPath), 'state points at the kept copy');
    assert.equal(record.publications.streamer!.state, 'failed');
    assert.equal(imageGets(world), 1);

    target.failing = false;
    const second = await world.sync({ targets: [target] });
    assert.equal(second.result, 'ok', second.errors.join());
    assert.equal(imageGets(world), 1, 'no second download');
    const image = world.mirror.published()[0]!;
    const dest = path.join(world.dir, 'streamed', 'noble', image.serial, image.fileName);
    assert.equal(createHash('sha256').update(readFileSync(dest)).digest('hex'), image.sha256);
    assert.equal(world.store().listImages()[0]!.localPath, null);
    assert.equal(existsSync(record.localPath), false);
  });

  test('without such a target the download digests sha256 alone', async () => {
    world = await createSyncWorld();
    const summary = await world.sync({ targets: [new DirectoryTarget('plain', path.join(world.dir, 'plain'))] });
    assert.equal(summary.result, 'ok', summary.errors.join());
    assert.equal(world.store().listImages()[0]!.digests, null);
  });
});
