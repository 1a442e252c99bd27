/**
 * State against what Glance really holds (REAL Keystone + Glance of test/openstack/up.sh): images deleted,
 * hidden or stripped of our flag by hand, and a state database lost. Target names of its own; images deleted after.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { rmSync } from 'node:fs';
import { after, afterEach, before, test } from 'node:test';
import { resolveAuthSettings } from '../../src/openstack/auth-config.js';
import { GlanceClient, type GlanceImage } from '../../src/openstack/glance.js';
import { KeystoneSession } from '../../src/openstack/keystone.js';
import { PROP } from '../../src/targets/glance/image-spec.js';
import { createSyncWorld, type SyncWorld } from '../support/sync-world.js';
import { describeWithOpenStack, loadOpenStackEnv } from './openstack-env.js';

const openstack = await loadOpenStackEnv();
const run = randomUUID().slice(0, 8);

describeWithOpenStack('reconcile with Glance and adopt after state loss', openstack, (os) => {
  let session: KeystoneSession;
  let glance: GlanceClient;
  let world: SyncWorld | undefined;
  let name = '';
  let seq = 0;

  before(() => {
    session = new KeystoneSession(resolveAuthSettings({ env: os.env, files: new Map(), cwd: '/', homeDir: '/nonexistent' }));
    glance = new GlanceClient(session);
  });
  after(async () => { await session.close(); });
  afterEach(async () => {
    for (const image of await imagesOf()) await glance.deleteImage(image.id);
    await world?.close();
    world = undefined;
  });

  async function imagesOf(): Promise<GlanceImage[]> {
    return glance.findImages({ [PROP.target]: name }, { includeHidden: true });
  }

  async function glanceWorld(method = 'put'): Promise<SyncWorld> {
    name = `r-${run}-${++seq}`;
    world = await createSyncWorld({ config: { targets: [{ name, type: 'glance', visibility: 'public', method }] }, targetEnv: os.env });
    return world;
  }

  test('an image deleted by hand in Glance is published again and gets the latest pointer back', async () => {
    const w = await glanceWorld();
    assert.equal((await w.sync()).result, 'ok');
    const [first] = await imagesOf();
    assert.ok(first);
    await glance.deleteImage(first.id);
    const summary = await w.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.equal(summary.published, 1);
    const [again, ...more] = await imagesOf();
    assert.ok(again && more.length === 0);
    assert.notEqual(again.id, first.id);
    assert.equal((again as Record<string, unknown>)[PROP.latest], 'true');
    assert.equal(w.events('image.reconcile.missing').length, 1);
    assert.equal(w.store().listImages()[0]!.publications[name]?.ref, again.id, 'status names the image Glance holds');
  });

  test('an image hidden by hand stays hidden', async () => {
    const w = await glanceWorld();
    assert.equal((await w.sync()).result, 'ok');
    const [image] = await imagesOf();
    await glance.patchImage(image!.id, [{ op: 'replace', path: '/os_hidden', value: true }]);
    const summary = await w.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.equal(summary.published, 0);
    const [after, ...more] = await imagesOf();
    assert.equal(more.length, 0);
    assert.equal(after?.id, image!.id);
    assert.equal(after?.os_hidden, true, 'not revealed again');
    assert.equal(w.events('image.reconcile.hidden').length, 1);
    assert.equal(w.store().listImages()[0]!.publications[name]?.state, 'hidden');
  });

  for (const method of ['put', 'stream']) {
    test(`after the state is lost, a visible image whose verified flag was removed is verified and adopted, never deleted (${method})`, async () => {
      const w = await glanceWorld(method);
      assert.equal((await w.sync()).result, 'ok');
      const [image] = await imagesOf();
      await glance.patchImage(image!.id, [{ op: 'remove', path: `/${PROP.verified}` }]);
      rmSync(w.config.stateDir, { recursive: true, force: true });
      const summary = await w.sync();
      assert.equal(summary.result, 'ok', summary.errors.join('\n'));
      const [after, ...more] = await imagesOf();
      assert.equal(more.length, 0);
      assert.equal(after?.id, image!.id, 'the same image, not a new upload');
      assert.equal((after as Record<string, unknown>)[PROP.verified], 'true');
      assert.equal(after?.os_hidden, false);
      assert.equal(w.events('glance.image.reverified').length, 1);
    });
  }
});
