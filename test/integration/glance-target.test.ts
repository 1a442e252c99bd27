/**
 * The Glance target against the REAL Keystone + Glance of test/openstack/up.sh, fed by whole sync cycles
 * from the fixture mirror. Every test uses target names of its own and deletes the images they made.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, afterEach, before, test } from 'node:test';
import { resolveAuthSettings } from '../../src/openstack/auth-config.js';
import { OpenStackError } from '../../src/openstack/errors.js';
import { GlanceClient, type GlanceImage, type UploadBody } from '../../src/openstack/glance.js';
import { KeystoneSession } from '../../src/openstack/keystone.js';
import { silentLogger } from '../../src/log.js';
import type { UpstreamImage } from '../../src/image.js';
import { createTargets } from '../../src/targets/create.js';
import { DirectoryTarget } from '../../src/targets/directory/target.js';
import { GlanceTarget } from '../../src/targets/glance/target.js';
import { PROP, createImageRequest } from '../../src/targets/glance/image-spec.js';
import type { PublishContext, Target, VerifiedFile } from '../../src/targets/target.js';
import type { GlanceTargetConfig } from '../../src/targets/glance/schema.js';
import { createSyncWorld, type LogEvent, type SyncWorld, type SyncWorldOptions } from '../support/sync-world.js';
import { describeWithOpenStack, loadOpenStackEnv, startExtraOpenStack, type ExtraOpenStack } from './openstack-env.js';

const openstack = await loadOpenStackEnv();
const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));
const run = randomUUID().slice(0, 8);

function sessionFor(env: Readonly<Record<string, string>>): KeystoneSession {
  return new KeystoneSession(resolveAuthSettings({ env, files: new Map(), cwd: '/', homeDir: '/nonexistent' }));
}

function md5Of(data: Buffer): string {
  return createHash('md5').update(data).digest('hex');
}

describeWithOpenStack('Glance target against the real Keystone+Glance', openstack, (os) => {
  let session: KeystoneSession;
  let glance: GlanceClient;
  let world: SyncWorld | undefined;
  /** Target names used by the current test: their images are deleted after it. */
  let names: string[] = [];
  let seq = 0;

  before(() => {
    session = sessionFor(os.env);
    glance = new GlanceClient(session);
  });
  after(async () => {
    await session.close();
  });
  afterEach(async () => {
    for (const name of names) await deleteImagesOf(glance, name);
    names = [];
    await world?.close();
    world = undefined;
  });

  function targetName(): string {
    const name = `t-${run}-${++seq}`;
    names.push(name);
    return name;
  }

  function glanceTargetConfig(extra: Record<string, unknown> = {}): Record<string, unknown> {
    return { name: targetName(), type: 'glance', visibility: 'public', ...extra };
  }

  async function glanceWorld(targets: Record<string, unknown>[], options: Omit<SyncWorldOptions, 'targetEnv'> = {}): Promise<SyncWorld> {
    world = await createSyncWorld({ ...options, config: { ...options.config, targets }, targetEnv: os.env });
    return world;
  }

  function targetConfig(w: SyncWorld, name: string): GlanceTargetConfig {
    const t = w.config.targets.find((c) => c.name === name);
    assert.ok(t?.type === 'glance');
    return t;
  }

  async function imagesOf(name: string): Promise<GlanceImage[]> {
    return glance.findImages({ [PROP.target]: name }, { includeHidden: true });
  }

  /** The only upstream image of a default world, as the sync loop sees it. */
  function upstreamImage(w: SyncWorld): UpstreamImage & { sizeBytes: number; path: string } {
    const p = w.mirror.published({ channel: 'release', variant: 'server' })[0]!;
    return { ...p, signed: true, path: path.join(w.mirror.root, p.urlPath) };
  }

  test('a sync publishes into Glance: revealed, with properties, min_disk, and the bytes the mirror signed', async () => {
    const cfg = glanceTargetConfig({ tags: ['ubuntu', 'cloudimg-sync'], properties: { hw_disk_bus: 'scsi', site: 'lab' }, containerFormat: 'bare' });
    const w = await glanceWorld([cfg]);
    const summary = await w.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.equal(summary.published, 1);

    const source = upstreamImage(w);
    const bytes = await readFile(source.path);
    const [image, ...more] = await imagesOf(String(cfg.name));
    assert.ok(image);
    assert.equal(more.length, 0);
    assert.equal(image.status, 'active');
    assert.equal(image.os_hidden, false);
    assert.equal(image.visibility, 'public');
    assert.equal(image.name, `Ubuntu 24.04 (noble) amd64 ${source.serial}`);
    assert.equal(image.disk_format, 'qcow2');
    assert.equal(image.container_format, 'bare');
    assert.equal(image.min_disk, 4, 'the 3.5 GiB virtual size of the qcow2, rounded up');
    assert.deepEqual([...image.tags].sort(), ['cloudimg-sync', 'ubuntu']);
    assert.equal(image.size, bytes.length);
    assert.equal(image.checksum, md5Of(bytes));
    assert.equal(image.os_hash_value, createHash('sha512').update(bytes).digest('hex'));
    assert.equal(image.virtual_size, 3584 * 1024 * 1024);
    const props = image as Record<string, unknown>;
    assert.deepEqual(
      [props.os_distro, props.os_version, props.architecture, props.ubuntu_codename, props.ubuntu_serial, props[PROP.sha256], props[PROP.source]],
      ['ubuntu', '24.04', 'x86_64', 'noble', source.serial, source.sha256, source.url],
    );
    assert.equal(props.hw_disk_bus, 'scsi', 'configured properties override the hw defaults');
    assert.equal(props.hw_vif_model, 'virtio');
    assert.equal(props.site, 'lab');
    assert.equal(props[PROP.verified], 'true');
    // This Glance hashes with sha512 (its default): that is the one digest computed besides sha256 and compared.
    assert.deepEqual(w.events('image.download.done').map((e) => e.digests), [['sha256', 'sha512']]);
    assert.deepEqual(w.events('glance.image.verified').map((e) => e.compared), [['size', 'sha512']]);
    assert.equal(props[PROP.latest], 'true');

    const record = w.store().getImage(`release/server/noble/amd64/${source.serial}`)!;
    assert.deepEqual([record.publications[String(cfg.name)]?.state, record.publications[String(cfg.name)]?.ref], ['published', image.id]);
    assert.equal(w.events('glance.image.verified').length, 1);
    const progress = w.events('image.publish.progress');
    assert.ok(progress.length > 0, 'upload progress is reported');
    assert.equal(progress.at(-1)!.bytes, bytes.length);

    // State lost (a new machine, a deleted state dir): the run adopts the image in Glance without downloading it.
    await rm(w.config.stateDir, { recursive: true, force: true });
    const again = await w.sync();
    assert.equal(again.result, 'ok', again.errors.join('\n'));
    assert.equal(again.downloaded, 0);
    assert.deepEqual((await imagesOf(String(cfg.name))).map((i) => i.id), [image.id], 'no duplicate');
    assert.equal(w.events('image.publish.done').at(-1)?.adopted, true);
    assert.equal(w.events('glance.image.created').length, 1);
  });

  for (const method of ['glance-direct', 'web-download', 'stream'] as const) {
    test(`method ${method} publishes a verified, revealed image`, async () => {
      const cfg = glanceTargetConfig({ method });
      const w = await glanceWorld([cfg]);
      // Stream: a download slow enough that the upload visibly overlaps it.
      if (method === 'stream') w.mirror.inject({ path: /\.img$/, fault: 'slow', bytesPerSecond: 256 * 1024 });
      const summary = await w.sync();
      assert.equal(summary.result, 'ok', summary.errors.join('\n'));
      const images = await imagesOf(String(cfg.name));
      assert.equal(images.length, 1);
      const source = upstreamImage(w);
      assert.equal(images[0]!.checksum, md5Of(await readFile(source.path)));
      assert.equal(images[0]!.os_hidden, false);
      assert.equal((images[0] as Record<string, unknown>)[PROP.verified], 'true');
      const imageGets = w.mirror.requests.filter((r) => r.path.endsWith('.img') && r.method === 'GET' && r.status !== 304);
      if (method === 'web-download') {
        assert.equal(imageGets.length, 2, 'Glance fetched the image from the mirror itself');
        assert.equal(w.events('glance.image.created')[0]?.method, 'web-download');
      } else {
        assert.equal(imageGets.length, 1);
      }
      if (method === 'stream') {
        assert.equal(w.events('glance.image.created')[0]?.method, 'stream');
        assert.equal(w.events('image.publish.fallback').length, 0);
        assert.equal(images[0]!.min_disk, 4, 'min_disk set from the verified file after streaming');
        const created = Date.parse(String(w.events('glance.image.created')[0]!.time));
        const downloaded = Date.parse(String(w.events('image.download.done')[0]!.time));
        assert.ok(created <= downloaded, 'the image was created before the download finished: bytes went to Glance while downloading');
      }
    });
  }

  test('progress events carry totalBytes, percent and bytesPerSecond; a stream upload takes its total from the download\'s Content-Length', async () => {
    const streamed = glanceTargetConfig({ method: 'stream' });
    const put = glanceTargetConfig({ method: 'put' });
    const w = await glanceWorld([streamed, put]);
    w.mirror.inject({ path: /\.img$/, fault: 'slow', bytesPerSecond: 1024 * 1024 }); // 512 KiB arriving in many chunks
    const summary = await w.sync(); // the world reports progress at every chunk
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    const size = upstreamImage(w).sizeBytes;
    const started = w.events('image.publish.started').find((e) => e.target === streamed.name);
    assert.deepEqual([started?.method, started?.bytes], ['stream', undefined], 'the listing gave no size: the stream began without one');

    const checkProgress = (events: LogEvent[], what: string, atLeast: number) => {
      assert.ok(events.length >= atLeast, `${what}: ${events.length} progress events`);
      for (const e of events) {
        const bytes = Number(e.bytes);
        const durationMs = Number(e.durationMs);
        assert.equal(e.totalBytes, size, `${what}: totalBytes at ${bytes} bytes`);
        assert.ok(typeof e.percent === 'number' && Math.abs(e.percent - (bytes * 100) / size) <= 0.1, `${what}: percent ${String(e.percent)} at ${bytes}/${size}`);
        assert.ok(typeof e.bytesPerSecond === 'number' && Number.isFinite(e.bytesPerSecond), `${what}: bytesPerSecond ${String(e.bytesPerSecond)}`);
        if (durationMs > 0) assert.ok(Math.abs(e.bytesPerSecond - (bytes * 1000) / durationMs) <= 1, `${what}: the mean rate, ${String(e.bytesPerSecond)} B/s for ${bytes} bytes in ${durationMs} ms`);
      }
      assert.deepEqual([events.at(-1)!.bytes, events.at(-1)!.percent], [size, 100], `${what}: ends at 100%`);
    };
    // Streamed: reported while the bytes arrive, each event with the total. A put reads the file in large pieces.
    checkProgress(w.events('image.download.progress'), 'download', 2);
    checkProgress(w.events('image.publish.progress').filter((e) => e.target === streamed.name), 'method stream', 2);
    checkProgress(w.events('image.publish.progress').filter((e) => e.target === put.name), 'method put', 1);
  });

  test('method stream with bytes that fail the signed checksum: the streamed image is deleted, never revealed', async () => {
    const cfg = glanceTargetConfig({ method: 'stream' });
    const w = await glanceWorld([cfg]);
    w.mirror.inject({ path: /\.img$/, fault: 'wrong-bytes' });
    const summary = await w.sync();
    assert.equal(summary.result, 'failed');
    assert.match(summary.errors.join('\n'), /CHECKSUM_MISMATCH/);
    assert.equal(w.events('glance.image.created').length, 1, 'the upload had started');
    assert.equal(w.events('glance.image.discarded').length, 1);
    assert.deepEqual(await imagesOf(String(cfg.name)), [], 'nothing of ours is left in Glance');
    const record = w.store().listImages()[0]!;
    assert.equal(record.publications[String(cfg.name)]?.state, 'failed');
  });

  test('kill -9 mid-upload leaves nothing visible in Glance, and the next run cleans up and completes', async () => {
    const cfg = glanceTargetConfig({ method: 'put' });
    const w = await glanceWorld([cfg], { mirror: { imageSizeBytes: 48 * 1024 * 1024 } });
    const config = path.join(w.dir, 'config.json'); // JSON is YAML
    await writeFile(config, JSON.stringify({
      source: { url: w.mirror.url, keyring: w.mirror.keyringPath, releases: ['noble'], arches: ['amd64'] },
      stateDir: w.config.stateDir, cacheDir: w.config.cacheDir, targets: [cfg],
    }));
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, '--config', config, 'sync', '--once'], {
      env: { ...process.env, ...os.env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    let killedAt: string | undefined;
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, signal) => resolve(signal)));
    let buffered = '';
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      const created = /"event":"glance\.image\.created","imageId":"([0-9a-f-]+)"/.exec(buffered);
      if (created && !killedAt) {
        killedAt = created[1];
        child.kill('SIGKILL'); // the image exists and the upload is starting or under way
      }
    });
    assert.equal(await exited, 'SIGKILL');
    assert.ok(killedAt, 'killed after the image was created');
    const left = await imagesOf(String(cfg.name));
    assert.ok(left.every((i) => i.os_hidden === true && (i as Record<string, unknown>)[PROP.verified] === undefined), 'nothing half-made is visible');
    assert.ok(left.some((i) => i.id === killedAt), 'the half-made image is still there, hidden');
    const record = w.store().listImages()[0]!;
    assert.equal(record.publications[String(cfg.name)]?.ref, killedAt, 'its id was recorded before the upload');

    const next = await w.sync();
    assert.equal(next.result, 'ok', next.errors.join('\n'));
    const after = await imagesOf(String(cfg.name));
    assert.equal(after.length, 1);
    assert.notEqual(after[0]!.id, killedAt);
    assert.equal(after[0]!.os_hidden, false);
    assert.equal(w.events('glance.image.leftover_deleted')[0]?.imageId, killedAt);
  });

  test('Glance holding other bytes than the verified ones: the image is deleted, never revealed, the run fails', async () => {
    const cfg = glanceTargetConfig();
    const w = await glanceWorld([cfg]);
    /** Flips one byte after our digests were taken: Glance stores other bytes than we hashed. */
    class CorruptingGlanceTarget extends GlanceTarget {
      protected override uploadBody(body: UploadBody): UploadBody {
        return (async function* flipOneByte() {
          let flipped = false;
          for await (const piece of body) {
            let chunk = Buffer.from(piece);
            if (!flipped && chunk.length > 100) { chunk[100] = chunk[100]! ^ 0xff; flipped = true; }
            yield chunk;
          }
        })();
      }
    }
    const target = new CorruptingGlanceTarget(targetConfig(w, String(cfg.name)), { env: os.env });
    const summary = await w.sync({ targets: [target] });
    await target.close();
    assert.equal(summary.result, 'failed');
    assert.match(summary.errors[0] ?? '', /GLANCE_HASH_MISMATCH/);
    assert.equal(summary.errors[0]?.includes('\n'), false);
    assert.deepEqual(await imagesOf(String(cfg.name)), [], 'the image is gone');
    const source = upstreamImage(w);
    const publication = w.store().getImage(`release/server/noble/amd64/${source.serial}`)!.publications[String(cfg.name)]!;
    assert.equal(publication.state, 'failed');
    assert.ok(publication.ref, 'the image id was recorded before bytes moved');
    await assert.rejects(glance.getImage(publication.ref), (err: unknown) => err instanceof OpenStackError && err.status === 404);
    assert.equal(w.events('glance.image.discarded').length, 1);
  });

  test('web-download from a mirror serving other bytes to Glance: deleted, never revealed', async () => {
    const cfg = glanceTargetConfig({ method: 'web-download' });
    const w = await glanceWorld([cfg]);
    const inner = new GlanceTarget(targetConfig(w, String(cfg.name)), { env: os.env, importPollIntervalMs: 100 });
    // The sync's own download already verified the file; the fault hits only Glance's fetch.
    const target = wrapPublish(inner, async (publish) => {
      w.mirror.inject({ path: /\.img$/, fault: 'wrong-bytes', times: 1 });
      return publish();
    });
    const summary = await w.sync({ targets: [target] });
    await inner.close();
    assert.equal(summary.result, 'failed');
    assert.match(summary.errors[0] ?? '', /GLANCE_HASH_MISMATCH: .*os_hash_value \(sha512\)/);
    assert.deepEqual(await imagesOf(String(cfg.name)), []);
  });

  test('an orphaned queued image of ours (a crashed run) is deleted and the image published anew', async () => {
    const cfg = glanceTargetConfig();
    const w = await glanceWorld([cfg]);
    const source = upstreamImage(w);
    const orphan = await glance.createImage(createImageRequest(targetConfig(w, String(cfg.name)), source, source, { format: 'qcow2', minDiskGiB: 4 }));
    assert.equal(orphan.status, 'queued');
    const summary = await w.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    const images = await imagesOf(String(cfg.name));
    assert.equal(images.length, 1);
    assert.notEqual(images[0]!.id, orphan.id);
    assert.equal(images[0]!.status, 'active');
    assert.deepEqual(w.events('glance.image.leftover_deleted').map((e) => [e.imageId, e.status]), [[orphan.id, 'queued']]);
    await assert.rejects(glance.getImage(orphan.id), (err: unknown) => err instanceof OpenStackError && err.status === 404);
  });

  test('a token revoked between create and upload: the upload re-authenticates and completes', async () => {
    const cfg = glanceTargetConfig();
    const w = await glanceWorld([cfg]);
    const shared = sessionFor(os.env);
    const inner = new GlanceTarget(targetConfig(w, String(cfg.name)), { session: shared });
    let revoked = '';
    const target = wrapPublish(inner, async (publish, ctx) => {
      const token = await shared.getToken();
      return publish({
        ...ctx,
        onRef: (ref) => {
          ctx.onRef?.(ref);
          // Synchronously, so the PUT that follows carries the dead token.
          revokeSync(shared.settings.authUrl, token);
          revoked = token;
        },
      });
    });
    try {
      const summary = await w.sync({ targets: [target] });
      assert.equal(summary.result, 'ok', summary.errors.join('\n'));
      assert.ok(revoked);
      assert.notEqual(await shared.getToken(), revoked, 'a new token was issued');
      const images = await imagesOf(String(cfg.name));
      assert.equal(images.length, 1);
      assert.equal(images[0]!.checksum, md5Of(await readFile(upstreamImage(w).path)));
    } finally {
      await shared.close();
    }
  });

  test('a file cached before any Glance target wanted its sha512 is digested while it is uploaded', async () => {
    const cfg = glanceTargetConfig();
    const w = await glanceWorld([cfg], { config: { keepCache: true } });
    const first = await w.sync({ targets: [new DirectoryTarget('dir', path.join(w.dir, 'dir'))] });
    assert.equal(first.result, 'ok', first.errors.join('\n'));
    const source = upstreamImage(w);
    const key = `release/server/noble/amd64/${source.serial}`;
    assert.equal(w.store().getImage(key)!.digests, null, 'a directory target does not ask for them');

    const targets = createTargets(w.config, { env: os.env });
    const second = await w.sync({ targets });
    await (targets[0] as GlanceTarget).close();
    assert.equal(second.result, 'ok', second.errors.join('\n'));
    assert.equal(second.downloaded, 0);
    const [held] = await imagesOf(String(cfg.name));
    assert.equal(held?.checksum, md5Of(await readFile(source.path)));
    assert.equal(held?.os_hidden, false);
    assert.deepEqual(w.events('glance.image.verified').map((e) => e.compared), [['size', 'sha512']]);
  });

  test('a cached file altered after the download digested it: CACHE_FILE_CHANGED, and the image is deleted', async () => {
    const cfg = glanceTargetConfig();
    const w = await glanceWorld([cfg], { config: { keepCache: true } });
    assert.equal((await w.sync()).result, 'ok', 'published; the digests and the cached file stay (keepCache)');
    const key = `release/server/noble/amd64/${upstreamImage(w).serial}`;
    const record = w.store().getImage(key)!;
    assert.ok(record.digests && record.localPath);
    // Deleted by hand in Glance: published again from the cached copy, which has changed meanwhile.
    await deleteImagesOf(glance, String(cfg.name));
    const bytes = await readFile(record.localPath);
    bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 0xff;
    await writeFile(record.localPath, bytes);

    const summary = await w.sync();
    assert.equal(summary.result, 'failed');
    assert.match(summary.errors[0] ?? '', /CACHE_FILE_CHANGED: .*changed since it was verified.*\(fix: /);
    assert.deepEqual(await imagesOf(String(cfg.name)), [], 'the upload of the altered bytes is gone');
  });

  test('check reports the Glance endpoint, project and method without changing anything; bad credentials fail it', async () => {
    const cfg = glanceTargetConfig({ method: 'glance-direct' });
    const w = await glanceWorld([cfg]);
    const good = new GlanceTarget(targetConfig(w, String(cfg.name)), { env: os.env });
    const bad = new GlanceTarget(targetConfig(w, String(cfg.name)), { env: { ...os.env, OS_PASSWORD: 'wrong' } });
    try {
      assert.match(await good.check({ log: silentLogger() }), /^Glance http:\/\/127\.0\.0\.1:\d+, project \w+, method glance-direct, 0 image\(s\) of this target$/);
      await assert.rejects(bad.check({ log: silentLogger() }), (err: unknown) => err instanceof OpenStackError && err.code === 'KEYSTONE_AUTH_FAILED');
    } finally {
      await good.close();
      await bad.close();
    }
  });

  test('two glance targets on one cloud and a directory get ONE download, each its own image', async () => {
    const a = glanceTargetConfig();
    const b = glanceTargetConfig({ visibility: 'private' });
    const dir = await mkdtemp(path.join(tmpdir(), 'glance-target-dir-'));
    const w = await glanceWorld([a, b, { name: 'local', type: 'directory', path: dir }]);
    const summary = await w.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.equal(summary.published, 3);
    assert.equal(w.mirror.requests.filter((r) => r.path.endsWith('.img') && r.method === 'GET').length, 1);
    const [ia] = await imagesOf(String(a.name));
    const [ib] = await imagesOf(String(b.name));
    assert.ok(ia && ib && ia.id !== ib.id);
    assert.equal(ia.visibility, 'public');
    assert.equal(ib.visibility, 'private');
    assert.equal(ia.checksum, ib.checksum);
    const source = upstreamImage(w);
    assert.equal(md5Of(await readFile(path.join(dir, 'noble', source.serial, source.fileName))), ia.checksum);
    await rm(dir, { recursive: true, force: true });
  });

  test('streams and end of life: server and minimal images apart by name and properties, ubuntu_eol, eol: delete hides then deletes', async () => {
    const cfg = glanceTargetConfig({ hideGraceHours: 0, eol: 'delete' });
    const name = String(cfg.name);
    const w = await glanceWorld([cfg], {
      mirror: { releases: [{ codename: 'resolute', serials: ['20261120'], channels: ['release'], variants: ['server', 'minimal'] }] },
      config: { keep: 1, source: { streams: [{ releases: ['resolute'] }, { variant: 'minimal', releases: ['resolute'] }] } },
    });
    const first = await w.sync();
    assert.equal(first.result, 'ok', first.errors.join('\n'));
    assert.equal(w.mirror.requests.filter((r) => r.path.endsWith('.img') && r.method === 'GET').length, 2);
    const images = (await imagesOf(name)).map((i) => i as Record<string, unknown>);
    assert.deepEqual(images.map((i) => [i.name, i[PROP.channel], i[PROP.variant], i.ubuntu_eol, i.os_hidden]).sort(), [
      ['Ubuntu 26.04 (resolute) amd64 20261120', 'release', 'server', '2031-05-29', false],
      ['Ubuntu 26.04 (resolute) minimal amd64 20261120', 'release', 'minimal', '2031-05-29', false],
    ]);
    // Upstream declares the release over: hidden at once (eol: delete), deleted after the grace (0 h here).
    await w.mirror.setEndOfLife('resolute', '2026-06-01');
    const second = await w.sync();
    assert.equal(second.result, 'ok', second.errors.join('\n'));
    assert.deepEqual(second.eol.map((e) => [e.stream, e.release]), [['release/server', 'resolute'], ['release/minimal', 'resolute']]);
    assert.deepEqual((await imagesOf(name)).map((i) => i.os_hidden), [true, true]);
    assert.deepEqual(w.events('image.retire.hidden').map((e) => e.reason), ['eol', 'eol']);
    const third = await w.sync();
    assert.equal(third.retired, 2);
    assert.deepEqual(await imagesOf(name), []);
    const fourth = await w.sync();
    assert.equal(fourth.published, 0, 'an end-of-life release is not published again on a target that deletes it');
  });

  test('retention hides the old serial, deletes it after the grace period, spares protected images; the latest pointer and stable name move', async () => {
    const cfg = glanceTargetConfig({ hideGraceHours: 0, stableName: 'Ubuntu {version} {arch} (latest)' });
    const name = String(cfg.name);
    const w = await glanceWorld([cfg], { mirror: { releases: [{ codename: 'noble', serials: ['20261101'] }] }, config: { keep: 1 } });
    const byserial = async () => new Map((await imagesOf(name)).map((i) => [(i as Record<string, unknown>).ubuntu_serial as string, i]));

    assert.equal((await w.sync()).result, 'ok');
    const first = (await byserial()).get('20261101')!;
    assert.equal(first.name, 'Ubuntu 24.04 amd64 (latest)');
    assert.equal((first as Record<string, unknown>)[PROP.latest], 'true');

    await w.mirror.addSerial({ codename: 'noble', serial: '20261120' });
    const second = await w.sync();
    assert.equal(second.result, 'ok', second.errors.join('\n'));
    let images = await byserial();
    const newest = images.get('20261120')!;
    const old = images.get('20261101')!;
    assert.equal((newest as Record<string, unknown>)[PROP.latest], 'true');
    assert.equal(newest.name, 'Ubuntu 24.04 amd64 (latest)');
    assert.equal((old as Record<string, unknown>)[PROP.latest], undefined, 'the pointer left the old image');
    assert.equal(old.name, 'Ubuntu 24.04 (noble) amd64 20261101', 'the old image got its template name back');
    assert.equal(old.os_hidden, true, 'hidden first');
    assert.ok((old as Record<string, unknown>)[PROP.hiddenAt]);
    assert.equal(w.store().getImage('release/server/noble/amd64/20261101')!.publications[name]?.state, 'hidden');

    const third = await w.sync();
    assert.equal(third.retired, 1);
    images = await byserial();
    assert.deepEqual([...images.keys()], ['20261120'], 'deleted once the grace period (0 h) passed');

    // A protected image past `keep` is neither hidden nor deleted.
    await glance.patchImage(newest.id, [{ op: 'replace', path: '/protected', value: true }]);
    await w.mirror.addSerial({ codename: 'noble', serial: '20261201' });
    const fourth = await w.sync();
    assert.equal(fourth.result, 'ok', fourth.errors.join('\n'));
    images = await byserial();
    assert.deepEqual([...images.keys()].sort(), ['20261120', '20261201']);
    assert.equal(images.get('20261120')!.os_hidden, false);
    assert.equal((images.get('20261201') as Record<string, unknown>)[PROP.latest], 'true');
    assert.ok(w.events('image.retire.spared').some((e) => e.imageId === newest.id && e.reason === 'pinned'));
  });
});

describeWithOpenStack('Glance target on a second Keystone+Glance with a small image_size_cap and glance-direct only', openstack, () => {
  let extra: ExtraOpenStack;
  let world: SyncWorld | undefined;
  before(async () => {
    extra = await startExtraOpenStack(await mkdtemp(path.join(tmpdir(), 'cloudimg-sync-openstack-glance-cap-')), {
      OPENSTACK_GLANCE_IMAGE_SIZE_CAP: String(256 * 1024),
      OPENSTACK_GLANCE_IMPORT_METHODS: 'glance-direct',
    });
  });
  after(async () => {
    await world?.close();
    await extra?.stop();
  });

  test('an image over image_size_cap (413) is a clear IMAGE_TOO_LARGE and leaves no image', async () => {
    const name = `cap-${run}`;
    world = await createSyncWorld({ config: { targets: [{ name, type: 'glance' }] }, targetEnv: extra.env });
    const summary = await world.sync();
    assert.equal(summary.result, 'failed');
    assert.match(summary.errors[0] ?? '', /IMAGE_TOO_LARGE: .*image_size_cap/);
    const session = sessionFor(extra.env);
    try {
      assert.deepEqual(await new GlanceClient(session).findImages({ [PROP.target]: name }, { includeHidden: true }), []);
    } finally {
      await session.close();
    }
  });

  test('method web-download where Glance does not offer it falls back to put, saying why', async () => {
    await world?.close();
    const name = `fallback-${run}`;
    world = await createSyncWorld({ mirror: { imageSizeBytes: 128 * 1024 }, config: { targets: [{ name, type: 'glance', method: 'web-download' }] }, targetEnv: extra.env });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    const fallback = world.events('image.publish.fallback')[0];
    assert.equal(fallback?.used, 'put');
    assert.match(String(fallback?.reason), /offers only: glance-direct/);
    assert.equal(world.events('glance.image.created')[0]?.method, 'put');
    const session = sessionFor(extra.env);
    try {
      const images = await new GlanceClient(session).findImages({ [PROP.target]: name }, { includeHidden: true });
      assert.equal(images.length, 1);
      assert.equal(images[0]!.os_hidden, false);
      await deleteImagesOf(new GlanceClient(session), name);
    } finally {
      await session.close();
    }
  });
});

/** A Target that runs `around` instead of the inner publish (which it may call, with another context). */
function wrapPublish(
  inner: Target,
  around: (publish: (ctx?: PublishContext) => ReturnType<Target['publish']>, ctx: PublishContext) => ReturnType<Target['publish']>,
): Target {
  return {
    name: inner.name, type: inner.type, hidesBeforeDelete: inner.hidesBeforeDelete, hideGraceMs: inner.hideGraceMs, digests: inner.digests,
    publish: (image: UpstreamImage, file: VerifiedFile, ctx: PublishContext) => around((c) => inner.publish(image, file, c ?? ctx), ctx),
    listPublished: (ctx) => inner.listPublished(ctx),
    hide: (image, ctx) => inner.hide(image, ctx),
    remove: (image, ctx) => inner.remove(image, ctx),
  };
}

/** Revoke a token before returning (curl, so the event loop does not move on meanwhile). */
function revokeSync(authUrl: string, token: string): void {
  const status = execFileSync('curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'DELETE', '-H', `X-Auth-Token: ${token}`, '-H', `X-Subject-Token: ${token}`, `${authUrl}/auth/tokens`], { encoding: 'utf8' });
  assert.equal(status, '204');
}

async function deleteImagesOf(glance: GlanceClient, targetName: string): Promise<void> {
  for (const image of await glance.findImages({ [PROP.target]: targetName }, { includeHidden: true })) {
    if (image.protected) await glance.patchImage(image.id, [{ op: 'replace', path: '/protected', value: false }]);
    await glance.deleteImage(image.id);
  }
}
