/**
 * Metadata operators expect and sharing, against the REAL Keystone + Glance of test/openstack/up.sh: property
 * rules per arch, hypervisor_type, min_ram, os_admin_user, the SCS set, `visibility: shared` with members (a
 * second project made in Keystone for the test) and `community`. Every test deletes what it made.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, afterEach, before, test } from 'node:test';
import { request } from 'undici';
import { resolveAuthSettings } from '../../src/openstack/auth-config.js';
import { GlanceClient, type GlanceImage } from '../../src/openstack/glance.js';
import { KeystoneSession } from '../../src/openstack/keystone.js';
import { GLANCE_ARCHITECTURE } from '../../src/targets/glance/properties.js';
import { PROP } from '../../src/targets/glance/image-spec.js';
import { createSyncWorld, type SyncWorld } from '../support/sync-world.js';
import { describeWithOpenStack, loadOpenStackEnv } from './openstack-env.js';

const openstack = await loadOpenStackEnv();
const run = randomUUID().slice(0, 8);

describeWithOpenStack('Glance metadata and sharing against the real Keystone+Glance', openstack, (os) => {
  let session: KeystoneSession;
  let glance: GlanceClient;
  let world: SyncWorld | undefined;
  let names: string[] = [];
  /** A second project, for members. */
  let project: { id: string; name: string };

  async function keystone(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
    const res = await request(`${os.env.OS_AUTH_URL}${path}`, {
      method: method as 'GET',
      headers: { 'x-auth-token': await session.getToken(), 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.body.text();
    assert.ok(res.statusCode < 300, `${method} ${path}: ${res.statusCode} ${text}`);
    return text ? JSON.parse(text) as Record<string, unknown> : {};
  }

  before(async () => {
    session = new KeystoneSession(resolveAuthSettings({ env: os.env, files: new Map(), cwd: '/', homeDir: '/nonexistent' }));
    glance = new GlanceClient(session);
    const name = `members-${run}`;
    const made = await keystone('POST', '/projects', { project: { name, domain_id: 'default', description: 'cloudimg-sync test: image members' } });
    project = { id: (made.project as { id: string }).id, name };
  });
  after(async () => {
    if (project) {
      await keystone('PATCH', `/projects/${project.id}`, { project: { enabled: false } });
      await keystone('DELETE', `/projects/${project.id}`);
    }
    await session.close();
  });
  afterEach(async () => {
    for (const name of names) {
      for (const image of await glance.findImages({ [PROP.target]: name }, { includeHidden: true })) await glance.deleteImage(image.id);
    }
    names = [];
    await world?.close();
    world = undefined;
  });

  async function syncInto(target: Record<string, unknown>, arches: string[] = ['amd64']): Promise<{ w: SyncWorld; images: GlanceImage[] }> {
    const name = `meta-${run}-${names.length + 1}`;
    names.push(name);
    world = await createSyncWorld({
      mirror: { releases: [{ codename: 'noble', serials: ['20261120'], arches: arches as never, channels: ['release'] }], imageSizeBytes: 128 * 1024 },
      config: { source: { releases: ['noble'], arches }, keep: 3, targets: [{ name, type: 'glance', ...target }] },
      targetEnv: os.env,
    });
    const summary = await world.sync();
    return { w: world, images: summary.result === 'ok' ? await glance.findImages({ [PROP.target]: name }, { includeHidden: true }) : [] };
  }

  test('property rules per arch, hypervisor_type, min_ram, os_admin_user and the SCS set arrive on the images', async () => {
    const { images } = await syncInto({
      visibility: 'private', metadata: 'scs', hypervisorType: 'qemu', minRamMiB: 512,
      properties: [
        { set: { hw_qemu_guest_agent: 'yes' } },
        { match: { arch: 'amd64' }, set: { hw_scsi_model: 'virtio-scsi', hw_disk_bus: 'scsi' } },
      ],
    }, ['amd64', 'arm64']);
    assert.equal(images.length, 2);
    const byArch = new Map(images.map((i) => [String((i as Record<string, unknown>).architecture), i as Record<string, unknown>]));
    const amd64 = byArch.get(GLANCE_ARCHITECTURE.amd64)!;
    const arm64 = byArch.get(GLANCE_ARCHITECTURE.arm64)!;
    assert.deepEqual([amd64.hw_scsi_model, amd64.hw_disk_bus, arm64.hw_scsi_model, arm64.hw_disk_bus], ['virtio-scsi', 'scsi', undefined, 'virtio'], 'virtio-scsi for amd64 only');
    for (const image of [amd64, arm64]) {
      assert.equal(image.hw_qemu_guest_agent, 'yes');
      assert.equal(image.hypervisor_type, 'qemu');
      assert.equal(image.min_ram, 512);
      assert.equal(image.os_admin_user, 'ubuntu');
      assert.deepEqual(
        [image.image_original_user, image.image_build_date, image.replace_frequency, image.provided_until, image.uuid_validity, image.hotfix_hours],
        ['ubuntu', '2026-11-20', 'monthly', '2029-05-31', 'last-3', '0'],
      );
      assert.match(String(image.image_source), /\/releases\/noble\/release-20261120\/ubuntu-24\.04-server-cloudimg-(amd64|arm64)\.img$/);
      assert.equal(image.image_description, 'Ubuntu 24.04 LTS (Noble Numbat) server cloud image, release serial 20261120');
    }
  });

  test('visibility shared with members by name and by id: the project is a member and has accepted (admin credentials)', async () => {
    const { w, images } = await syncInto({ visibility: 'shared', members: [project.name, project.id] });
    assert.equal(images.length, 1, JSON.stringify(w.events('image.publish.failed')));
    assert.equal(images[0]!.visibility, 'shared');
    assert.deepEqual((await glance.listMembers(images[0]!.id)).map((m) => [m.member_id, m.status]), [[project.id, 'accepted']]);
    assert.equal(w.events('glance.member.added').length, 1, 'a name and the id of one project share once');
  });

  test('a member that cannot be resolved: one clear error, nothing made in Glance', async () => {
    const { w, images } = await syncInto({ visibility: 'shared', members: [`no-such-project-${run}`] });
    const summary = w.events('sync.run.finished')[0]!;
    assert.equal(summary.result, 'failed');
    const error = String((summary.errors as string[])[0]);
    assert.match(error, /PROJECT_UNRESOLVED: the member project "no-such-project-[0-9a-f]+" cannot be resolved: no project of that name/);
    assert.equal(error.includes('\n'), false);
    assert.deepEqual(images, []);
    assert.deepEqual(await glance.findImages({ [PROP.target]: names.at(-1)! }, { includeHidden: true }), []);
    assert.equal(w.events('glance.image.created').length, 0);
  });

  test('visibility community', async () => {
    const { images } = await syncInto({ visibility: 'community' });
    assert.equal(images[0]?.visibility, 'community');
    assert.equal(images[0]?.os_hidden, false);
  });
});
