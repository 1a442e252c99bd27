import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { createSyncWorld, type SyncWorld } from '../support/sync-world.js';

let world: SyncWorld;
afterEach(async () => { await world?.close(); });

function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.relative(dir, path.join(d.parentPath, d.name))).sort();
}

const sha256Of = (file: string): string => createHash('sha256').update(readFileSync(file)).digest('hex');
const imageRequests = (w: SyncWorld) => w.mirror.requests.filter((r) => r.path.endsWith('.img'));

/** The simplestreams source on the world's mirror: its released server tree, the mirror's key. */
function streamsSource(w: SyncWorld, more: Record<string, unknown> = {}): Record<string, unknown> {
  return { type: 'simplestreams', url: w.mirror.streamsUrl('release', 'server'), keyring: w.mirror.keyringPath, ...more };
}

describe('sync cycle from the simplestreams source (directory and mirror targets)', () => {
  test('publishes the newest serial of each release/arch the signed metadata lists, verified against its sha256 and size', async () => {
    world = await createSyncWorld({
      mirror: { releases: [{ codename: 'noble', serials: ['20261101', '20261120'], arches: ['amd64', 'arm64'] }, { codename: 'jammy', serials: ['20261115'] }] },
    });
    const config = world.configWith({ keep: 1, source: streamsSource(world, { releases: ['noble', '22.04'], arches: ['amd64', 'arm64'] }) });
    const summary = await world.sync({ config });
    // jammy has no arm64 in the metadata: reported, the run is incomplete (not failed).
    assert.equal(summary.result, 'incomplete', summary.errors.join('\n'));
    assert.deepEqual(summary.incomplete.map((i) => [i.stream, i.release, i.arch]), [['release/server', 'jammy', 'arm64']]);
    assert.equal(summary.downloaded, 3);
    const expected = world.mirror.published({ channel: 'release', variant: 'server' }).filter((i) => i.serial !== '20261101');
    for (const image of expected) {
      const file = path.join(world.dir, 'images', image.release, image.serial, image.fileName);
      assert.equal(sha256Of(file), image.sha256, `${file} holds the signed bytes`);
    }
    assert.deepEqual(world.store().listImages().map((r) => r.key).sort(), expected.map((i) => `release/server/${i.release}/${i.arch}/${i.serial}`).sort());
    assert.deepEqual(imageRequests(world).map((r) => r.path).sort(), expected.map((i) => `/releases/server${i.urlPath}`).sort(),
      'images are fetched at the item paths of the metadata');
    assert.ok(!world.mirror.requests.some((r) => /SHA256SUMS|\/$/.test(r.path)), 'no listing and no SHA256SUMS is read');
    assert.equal(world.events('source.streams.verified').length, 2);
  });

  test('image.publish.done carries when upstream published the serial (the products file\'s updated) and the lag since', async () => {
    world = await createSyncWorld();
    const config = world.configWith({ source: streamsSource(world) });
    assert.equal((await world.sync({ config })).result, 'ok');
    const products = await (await fetch(`${world.mirror.streamsUrl('release', 'server')}streams/v1/com.ubuntu.cloud:released:download.json`)).json() as { updated: string };
    const done = world.events('image.publish.done')[0];
    assert.equal(done?.publishedAt, new Date(products.updated).toISOString());
    const lag = Number(done?.lagSeconds);
    const expected = (Date.parse(String(done?.time)) - Date.parse(products.updated)) / 1000;
    assert.ok(Math.abs(lag - expected) <= 1, `lagSeconds ${lag}, expected ${expected}`);
  });

  test('a second cycle with nothing new costs two conditional GETs (index and products, 304) and no signature check', async () => {
    world = await createSyncWorld();
    const config = world.configWith({ source: streamsSource(world) });
    assert.equal((await world.sync({ config })).result, 'ok');
    world.mirror.clearRequests();
    const verifiedBefore = world.events('source.streams.verified').length;
    const second = await world.sync({ config });
    assert.equal(second.result, 'ok');
    assert.deepEqual(world.mirror.requests.map((r) => [r.path, r.status]), [
      ['/releases/streams/v1/index.sjson', 304], ['/releases/streams/v1/com.ubuntu.cloud:released:download.sjson', 304],
    ]);
    assert.equal(world.events('source.streams.verified').length, verifiedBefore, 'unchanged bytes that verified are not verified again');
  });

  test('switching an existing state dir from the listing source to simplestreams and back downloads and publishes nothing', async () => {
    world = await createSyncWorld({ mirror: { releases: [{ codename: 'noble', serials: ['20261120'], arches: ['amd64', 'arm64'] }] } });
    const listing = world.configWith({ source: { url: world.mirror.url, keyring: world.mirror.keyringPath, releases: ['noble'], arches: ['amd64', 'arm64'] } });
    const streams = world.configWith({ source: streamsSource(world, { releases: ['noble'], arches: ['amd64', 'arm64'] }) });
    const first = await world.sync({ config: listing });
    assert.equal(first.result, 'ok', first.errors.join('\n'));
    assert.equal(first.downloaded, 2);
    const imagesBefore = filesUnder(path.join(world.dir, 'images'));
    const stateBefore = world.store().listImages().map((r) => [r.key, r.fileName, r.sha256, r.state, r.publications.local?.state]);

    for (const config of [streams, listing, streams]) {
      world.mirror.clearRequests();
      const again = await world.sync({ config });
      assert.equal(again.result, 'ok', again.errors.join('\n'));
      assert.deepEqual([again.discovered, again.downloaded, again.published], [0, 0, 0]);
      assert.deepEqual(imageRequests(world), [], 'not one image byte fetched again');
    }
    assert.deepEqual(filesUnder(path.join(world.dir, 'images')), imagesBefore);
    assert.deepEqual(world.store().listImages().map((r) => [r.key, r.fileName, r.sha256, r.state, r.publications.local?.state]), stateBefore);
  });

  test('an item whose bytes no longer match the signed sha256 is not published, and no partial file stays', async () => {
    world = await createSyncWorld();
    await world.mirror.replaceImageBytes({ codename: 'noble', serial: '20261120', channel: 'release', variant: 'server' });
    const summary = await world.sync({ config: world.configWith({ source: streamsSource(world) }) });
    assert.equal(summary.result, 'failed');
    assert.match(summary.errors.join('\n'), /CHECKSUM_MISMATCH/);
    assert.equal(world.events('image.verify.failed').length, 1);
    assert.deepEqual(filesUnder(path.join(world.dir, 'images')), []);
    assert.deepEqual(filesUnder(path.join(world.dir, 'cache')), []);
  });

  test('a file upstream larger than the signed size is refused from its headers, before its body is read', async () => {
    world = await createSyncWorld();
    const [image] = world.mirror.published({ codename: 'noble', channel: 'release', variant: 'server' });
    appendFileSync(path.join(world.mirror.root, image!.urlPath), Buffer.alloc(4096));
    const summary = await world.sync({ config: world.configWith({ source: streamsSource(world) }) });
    assert.equal(summary.result, 'failed');
    assert.match(summary.errors.join('\n'), /SIZE_MISMATCH: GET \S+ announces \d+ bytes, the signed metadata says \d+/);
    assert.equal(imageRequests(world).length, 1, 'not retried: upstream is not what was signed for');
    assert.deepEqual(world.events('image.download.progress'), [], 'not one byte of the body was taken');
    assert.equal(world.events('image.download.failed')[0]?.errCode, 'SIZE_MISMATCH');
    assert.deepEqual(filesUnder(path.join(world.dir, 'cache')), []);
  });

  for (const [how, code] of [['tampered-sums', /SIGNATURE_INVALID/], ['foreign-key', /SIGNATURE_INVALID/], ['unsigned', /STREAMS_UNSIGNED/]] as const) {
    test(`a ${how} products .sjson stops the cycle before any image byte is fetched`, async () => {
      world = await createSyncWorld();
      world.mirror.inject({ path: /download\.sjson$/, fault: 'bad-signature', how });
      const summary = await world.sync({ config: world.configWith({ source: streamsSource(world) }) });
      assert.equal(summary.result, 'failed');
      assert.match(summary.errors.join('\n'), code);
      assert.deepEqual(imageRequests(world), []);
      assert.deepEqual(world.store().listImages(), []);
    });
  }

  test('an .sjson signed before its key expired is accepted, as gpgv does, with a warning event', async () => {
    world = await createSyncWorld();
    const fault = world.mirror.inject({ path: /download\.sjson$/, fault: 'alt-signature', how: 'expired-key' });
    const summary = await world.sync({ config: world.configWith({ source: streamsSource(world) }) });
    assert.ok(fault.hits > 0, 'the products file signed by the retired key was served');
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.equal(summary.published, 1);
    const [warning, ...more] = world.events('source.signature.key_expired');
    assert.equal(more.length, 0);
    assert.match(String(warning?.url), /com\.ubuntu\.cloud:released:download\.sjson$/);
    assert.ok(typeof warning?.keyExpiredAt === 'string' && Date.parse(warning.keyExpiredAt) < Date.now());
    assert.notEqual(warning?.fingerprint, world.mirror.fingerprint, 'the retired key signed, not the current one');
  });

  test('into a mirror target: the image where the site serves it, the .sjson copied byte for byte', async () => {
    world = await createSyncWorld();
    const airGapped = path.join(world.dir, 'air-gapped');
    const summary = await world.sync({ config: world.configWith({ source: streamsSource(world), targets: [{ name: 'air', type: 'mirror', path: airGapped }] }) });
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    const [image] = world.mirror.published({ codename: 'noble', channel: 'release', variant: 'server' });
    // Where the products file says the item is (releases/ + server/releases/...): a downstream reader finds it there.
    assert.equal(sha256Of(path.join(airGapped, 'releases/server/releases/noble/release-20261120/ubuntu-24.04-server-cloudimg-amd64.img')), image!.sha256);
    for (const doc of ['index.sjson', 'com.ubuntu.cloud:released:download.sjson']) {
      assert.deepEqual(readFileSync(path.join(airGapped, 'releases/streams/v1', doc)), readFileSync(path.join(world.mirror.root, 'releases/streams/v1', doc)), `${doc} byte for byte`);
    }
  });

  test('the daily minimal tree syncs the same images as the listing finds for it', async () => {
    world = await createSyncWorld({ mirror: { releases: [{ codename: 'noble', serials: ['20261120'], channels: ['daily'], variants: ['minimal'] }] } });
    const summary = await world.sync({ config: world.configWith({ source: { type: 'simplestreams', channel: 'daily', variant: 'minimal', url: world.mirror.streamsUrl('daily', 'minimal'), keyring: world.mirror.keyringPath } }) });
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.deepEqual(world.store().listImages().map((r) => [r.key, r.fileName]), [['daily/minimal/noble/amd64/20261120', 'noble-minimal-cloudimg-amd64.img']]);
  });
});
