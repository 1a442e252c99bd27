/**
 * The mirror target end to end: instance A syncs the fixture mirror into a mirror target; a REAL nginx
 * (Debian's, autoindex on) serves that directory; instance B, pointed at nginx with the same keyring,
 * publishes the same images into the REAL Glance of test/openstack/up.sh. Run under
 * `flock /tmp/cloudimg-it.lock`. Without nginx or OpenStack the chain skips — with CI=true it fails.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { chmod } from 'node:fs/promises';
import path from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { resolveAuthSettings } from '../../src/openstack/auth-config.js';
import { GlanceClient } from '../../src/openstack/glance.js';
import { KeystoneSession } from '../../src/openstack/keystone.js';
import { parseListing } from '../../src/source/listing/parse-listing.js';
import { PROP } from '../../src/targets/glance/image-spec.js';
import { nginxAvailability, startNginx, type StaticServer } from '../support/nginx.js';
import { createSyncWorld, type SyncWorld } from '../support/sync-world.js';
import { describeWithOpenStack, loadOpenStackEnv } from './openstack-env.js';

const openstack = await loadOpenStackEnv();
const nginx = await nginxAvailability();
const run = randomUUID().slice(0, 8);

let worlds: SyncWorld[] = [];
let server: StaticServer | undefined;
afterEach(async () => {
  await server?.stop();
  server = undefined;
  for (const w of worlds) await w.close();
  worlds = [];
});

/** Instance A: the fixture mirror upstream, a mirror target at `<dir>/www` (its cycles: `a.sync({ config: a.config })`). */
async function instanceA(keep: number): Promise<SyncWorld> {
  const w = await createSyncWorld({
    mirror: { releases: [{ codename: 'noble', serials: ['20261101'], arches: ['amd64', 'arm64'] }] },
    config: { source: { arches: ['amd64', 'arm64'] }, keep },
  });
  worlds.push(w);
  w.config = w.configWith({ targets: [{ name: 'internal', type: 'mirror', path: path.join(w.dir, 'www') }] });
  // mkdtemp made the world's dir 0700; nginx's workers (www-data) must reach the mirror inside it.
  await chmod(w.dir, 0o755);
  return w;
}

if (!nginx.available) {
  if (process.env.CI === 'true') {
    test('mirror chain needs nginx (CI=true: not skipping)', () => { throw new Error(`nginx unavailable: ${nginx.reason}`); });
  } else {
    test('mirror chain through nginx into Glance', { skip: `nginx unavailable: ${nginx.reason}` }, () => {});
  }
} else {
  const nginxBinary = nginx.binary;
  describeWithOpenStack('mirror chain: fixture mirror -> A -> mirror target -> nginx -> B -> real Glance', openstack, (os) => {
    let session: KeystoneSession;
    let glance: GlanceClient;
    const glanceName = `mirror-chain-${run}`;
    before(() => {
      session = new KeystoneSession(resolveAuthSettings({ env: os.env, files: new Map(), cwd: '/', homeDir: '/nonexistent' }));
      glance = new GlanceClient(session);
    });
    after(async () => {
      for (const image of await glance.findImages({ [PROP.target]: glanceName }, { includeHidden: true })) await glance.deleteImage(image.id);
      await session.close();
    });

    test('B verifies the upstream signature through nginx\'s autoindex and publishes the images A mirrored; a new serial replaces the old on both', async () => {
      const a = await instanceA(1);
      assert.equal((await a.sync({ config: a.config })).result, 'ok');
      server = await startNginx(nginxBinary, path.join(a.dir, 'www'));
      const b = await createSyncWorld({
        config: {
          source: { url: server.url, keyring: a.mirror.keyringPath, arches: ['amd64', 'arm64'] }, keep: 1,
          targets: [{ name: glanceName, type: 'glance', visibility: 'private' }],
        },
        targetEnv: os.env,
      });
      worlds.push(b);

      const first = await b.sync();
      assert.equal(first.result, 'ok', first.errors.join('\n'));
      assert.equal(first.published, 2);
      const verified = b.events('source.sums.verified');
      assert.equal(verified.length, 1);
      assert.equal(verified[0]!.fingerprint, a.mirror.fingerprint, 'B checked the upstream signer\'s signature, relayed byte for byte');
      const log = await server.accessLog();
      for (const line of ['GET /releases/noble/ 200', 'GET /releases/noble/release-20261101/SHA256SUMS 200', 'GET /releases/noble/release-20261101/SHA256SUMS.gpg 200',
        'GET /releases/noble/release-20261101/ubuntu-24.04-server-cloudimg-amd64.img 200']) {
        assert.ok(log.includes(line), `nginx served ${line}: ${log.join(', ')}`);
      }
      await assertGlanceHolds(glance, glanceName, a.mirror.published({ serial: '20261101', channel: 'release' }));

      await a.mirror.addSerial({ codename: 'noble', serial: '20261120' });
      const aSecond = await a.sync({ config: a.config });
      assert.equal(aSecond.result, 'ok', aSecond.errors.join('\n'));
      assert.equal(aSecond.retired, 2);
      const page = await (await fetch(`${server.url}/releases/noble/`)).text();
      assert.deepEqual(parseListing(page, `${server.url}/releases/noble/`).map((e) => e.name), ['release-20261120'], 'the listing shows only the kept serial');

      const second = await b.sync();
      assert.equal(second.result, 'ok', second.errors.join('\n'));
      assert.equal(second.published, 2);
      await assertGlanceHolds(glance, glanceName, a.mirror.published({ serial: '20261120', channel: 'release' }));
    });
  });
}

/** Glance shows exactly `images` (by sha256 and size) among the visible images of the target. */
async function assertGlanceHolds(glance: GlanceClient, target: string, images: ReadonlyArray<{ arch: string; sha256: string; sizeBytes: number; serial: string }>): Promise<void> {
  const visible = (await glance.findImages({ [PROP.target]: target })).filter((i) => i.status === 'active');
  assert.deepEqual(
    visible.map((i) => [i[PROP.sha256], i.size, i.ubuntu_serial]).sort(),
    images.map((i) => [i.sha256, i.sizeBytes, i.serial]).sort(),
  );
}
