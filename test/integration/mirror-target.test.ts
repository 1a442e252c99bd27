/**
 * The mirror target fed by whole sync cycles from the fixture mirror, and read back through a REAL nginx
 * (autoindex on, installed by test/nginx/ensure.sh) by a second instance. No OpenStack: the Glance end of
 * the chain is test/integration/mirror-chain.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import type { LoadedConfig } from '../../src/config/load.js';
import { nginxAvailability, startNginx, type StaticServer } from '../support/nginx.js';
import { createSyncWorld, type SyncWorld } from '../support/sync-world.js';

const nginx = await nginxAvailability();
const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

let worlds: SyncWorld[] = [];
let server: StaticServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
  for (const w of worlds) await w.close();
  worlds = [];
});

async function world(options: Parameters<typeof createSyncWorld>[0]): Promise<SyncWorld> {
  const w = await createSyncWorld(options);
  worlds.push(w);
  return w;
}

/** The world's config with a mirror target at `<dir>/www` instead of its directory target. */
function mirrorConfig(w: SyncWorld, more: Record<string, unknown> = {}): LoadedConfig {
  return w.configWith({ ...more, targets: [{ name: 'internal', type: 'mirror', path: path.join(w.dir, 'www') }] });
}

const sameBytes = async (a: string, b: string) => assert.deepEqual(await readFile(a), await readFile(b), `${a} = ${b}`);

describe('mirror target fed by sync cycles', () => {
  test('mirrors the daily channel at its upstream paths with upstream\'s SHA256SUMS, and retention takes whole serial folders', async () => {
    const w = await world({ mirror: { releases: [{ codename: 'noble', serials: ['20261101'], channels: ['daily'] }] } });
    const config = mirrorConfig(w, { source: { url: w.mirror.url, keyring: w.mirror.keyringPath, channel: 'daily' }, keep: 1 });
    assert.equal((await w.sync({ config })).result, 'ok');
    for (const name of ['SHA256SUMS', 'SHA256SUMS.gpg']) await sameBytes(path.join(w.dir, 'www/noble/20261101', name), path.join(w.mirror.root, 'noble/20261101', name));
    const [image] = w.mirror.published({ serial: '20261101' });
    assert.equal(sha256(await readFile(path.join(w.dir, 'www', image!.urlPath))), image!.sha256);

    await w.mirror.addSerial({ codename: 'noble', serial: '20261120' });
    const second = await w.sync({ config });
    assert.equal(second.result, 'ok', second.errors.join('\n'));
    assert.equal(second.retired, 1);
    assert.deepEqual(await readdir(path.join(w.dir, 'www/noble')), ['20261120'], 'the old serial folder left whole, no work folder behind');
    assert.equal(w.store().getImage('daily/server/noble/amd64/20261101')!.publications.internal!.state, 'removed');
  });
});

describe('mirror target from the simplestreams source, read back through nginx', { skip: !nginx.available && process.env.CI !== 'true' ? `nginx unavailable: ${nginx.available ? '' : nginx.reason}` : false }, () => {
  test('writes items at their paths and the .sjson byte for byte; a second instance verifies them through nginx and finds the images', async () => {
    if (!nginx.available) throw new Error(`nginx unavailable (CI=true: not skipping): ${nginx.reason}`);
    const a = await world({ mirror: { releases: [{ codename: 'noble', serials: ['20261101'] }] } });
    const streams = (w: SyncWorld) => ({ type: 'simplestreams', url: w.mirror.streamsUrl('release', 'server'), keyring: w.mirror.keyringPath });
    const aConfig = mirrorConfig(a, { source: streams(a), keep: 1 });
    assert.equal((await a.sync({ config: aConfig })).result, 'ok');
    const www = path.join(a.dir, 'www');
    // The site's layout: the tree at releases/, items at their URL paths (releases/server/releases/... as upstream serves them).
    const tree = path.join(www, 'releases');
    const upstreamTree = path.join(a.mirror.root, 'releases');
    for (const doc of ['streams/v1/index.sjson', 'streams/v1/com.ubuntu.cloud:released:download.sjson']) await sameBytes(path.join(tree, doc), path.join(upstreamTree, doc));
    const [first] = a.mirror.published({ serial: '20261101', channel: 'release' });
    assert.equal(sha256(await readFile(path.join(tree, 'server/releases/noble/release-20261101', first!.fileName))), first!.sha256);

    await chmod(a.dir, 0o755); // mkdtemp's 0700: nginx's workers (www-data) must reach the mirror
    server = await startNginx(nginx.binary, www);
    const b = await world({});
    const bConfig = b.configWith({ source: { type: 'simplestreams', url: `${server.url}/releases/`, keyring: a.mirror.keyringPath } });
    const bFirst = await b.sync({ config: bConfig });
    assert.equal(bFirst.result, 'ok', bFirst.errors.join('\n'));
    assert.equal(bFirst.downloaded, 1);
    assert.deepEqual(b.events('source.streams.verified').map((e) => e.fingerprint), [a.mirror.fingerprint, a.mirror.fingerprint], 'index and products verified with upstream\'s key');
    assert.equal(sha256(await readFile(path.join(b.dir, 'images/noble/20261101', first!.fileName))), first!.sha256);

    await a.mirror.addSerial({ codename: 'noble', serial: '20261120' });
    const aSecond = await a.sync({ config: aConfig });
    assert.equal(aSecond.result, 'ok', aSecond.errors.join('\n'));
    assert.equal(aSecond.retired, 1);
    assert.deepEqual(await readdir(path.join(tree, 'server/releases/noble')), ['release-20261120']);
    await sameBytes(path.join(tree, 'streams/v1/com.ubuntu.cloud:released:download.sjson'), path.join(upstreamTree, 'streams/v1/com.ubuntu.cloud:released:download.sjson'));
    const bSecond = await b.sync({ config: bConfig });
    assert.equal(bSecond.result, 'ok', bSecond.errors.join('\n'));
    assert.equal(bSecond.downloaded, 1);
  });
});
