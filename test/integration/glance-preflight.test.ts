/**
 * Fail before the big download, not after (REAL Keystone + Glance of test/openstack/up.sh): each target is
 * authenticated at the start of a cycle, and a verified copy Glance already holds is adopted without
 * downloading the image. The fixture mirror's request log is the evidence of what was (not) downloaded.
 * Target names of its own; images deleted after.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, afterEach, before, test } from 'node:test';
import { resolveAuthSettings } from '../../src/openstack/auth-config.js';
import { GlanceClient, type GlanceImage } from '../../src/openstack/glance.js';
import { KeystoneSession } from '../../src/openstack/keystone.js';
import { PROP } from '../../src/targets/glance/image-spec.js';
import { createTargets } from '../../src/targets/create.js';
import type { Target } from '../../src/targets/target.js';
import { createSyncWorld, type SyncWorld } from '../support/sync-world.js';
import { describeWithOpenStack, loadOpenStackEnv } from './openstack-env.js';

const openstack = await loadOpenStackEnv();
const run = randomUUID().slice(0, 8);
const WRONG_PASSWORD = `not-the-password-${run}`;
const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));

describeWithOpenStack('pre-flight: authenticate first, adopt what Glance holds before downloading', openstack, (os) => {
  let session: KeystoneSession;
  let glance: GlanceClient;
  let world: SyncWorld | undefined;
  let names: string[] = [];
  let seq = 0;

  before(() => {
    session = new KeystoneSession(resolveAuthSettings({ env: os.env, files: new Map(), cwd: '/', homeDir: '/nonexistent' }));
    glance = new GlanceClient(session);
  });
  after(async () => { await session.close(); });
  afterEach(async () => {
    for (const name of names) for (const image of await imagesOf(name)) await glance.deleteImage(image.id);
    names = [];
    await world?.close();
    world = undefined;
  });

  function targetName(): string {
    const name = `pf-${run}-${++seq}`;
    names.push(name);
    return name;
  }

  async function imagesOf(name: string): Promise<GlanceImage[]> {
    return glance.findImages({ [PROP.target]: name }, { includeHidden: true });
  }

  /** GETs of image files the mirror saw (the evidence of a download), and the image bytes it sent. */
  function imageRequests(w: SyncWorld): { gets: number; bytes: number } {
    const img = w.mirror.requests.filter((r) => r.path.endsWith('.img'));
    return { gets: img.length, bytes: img.reduce((n, r) => n + r.bytesSent, 0) };
  }

  /** State and cache gone, as on a new machine; the mirror's request log starts empty. */
  function loseStateAndCache(w: SyncWorld): void {
    rmSync(w.config.stateDir, { recursive: true, force: true });
    rmSync(w.config.cacheDir, { recursive: true, force: true });
    w.mirror.clearRequests();
  }

  /** `plan --json` of the world's config (its targets: `names`), as an operator would run it. */
  async function planJson(w: SyncWorld, names: readonly string[]): Promise<Array<Record<string, unknown>>> {
    const config = path.join(w.dir, 'plan-config.json'); // JSON is YAML
    writeFileSync(config, JSON.stringify({
      source: { url: w.mirror.url, keyring: w.mirror.keyringPath, releases: ['noble'], arches: ['amd64'] },
      stateDir: w.config.stateDir, cacheDir: w.config.cacheDir, keep: w.config.keep, targets: names.map((name) => ({ name, type: 'glance' })),
    }));
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', CLI, '--config', config, 'plan', '--json'], {
      env: { PATH: process.env.PATH ?? '', HOME: '/nonexistent', ...os.env },
    });
    return (JSON.parse(stdout) as { items: Array<Record<string, unknown>> }).items;
  }

  function targetsOf(w: SyncWorld, names: readonly string[]): Target[] {
    return createTargets(w.config, { env: os.env }).filter((t) => names.includes(t.name));
  }

  test('a fresh stateDir against a Glance that already holds the images fetches no image bytes: adopted with their ids, nothing created', async () => {
    const a = targetName();
    const b = targetName();
    const w = world = await createSyncWorld({
      mirror: { releases: [{ codename: 'noble', serials: ['20261113', '20261120'], channels: ['release'] }] },
      config: { keep: 2, targets: [{ name: a, type: 'glance', visibility: 'public' }, { name: b, type: 'glance', visibility: 'public' }] },
      targetEnv: os.env,
    });
    // Only A gets the images first.
    const onlyA = targetsOf(w, [a]);
    const first = await w.sync({ targets: onlyA });
    for (const t of onlyA) await t.close?.();
    assert.equal(first.result, 'ok', first.errors.join('\n'));
    assert.equal(first.published, 2);
    const held = new Map((await imagesOf(a)).map((i) => [String((i as Record<string, unknown>).ubuntu_serial), i.id]));
    assert.equal(held.size, 2);

    // A new machine with A and B: A adopts its images without a download; B needs them, so each is downloaded once.
    loseStateAndCache(w);
    const created = w.events('glance.image.created').length;
    const second = await w.sync();
    assert.equal(second.result, 'ok', second.errors.join('\n'));
    assert.equal(imageRequests(w).gets, 2, 'one download per image, for B');
    assert.deepEqual(new Map((await imagesOf(a)).map((i) => [String((i as Record<string, unknown>).ubuntu_serial), i.id])), held, 'A: the same images, none added');
    assert.equal((await imagesOf(b)).length, 2);
    assert.equal(w.events('glance.image.created').length - created, 2, 'uploads for B only');

    // Another new machine: both hold verified copies, so no image byte is fetched at all; `plan` says so first.
    loseStateAndCache(w);
    const planned = await planJson(w, [a, b]);
    assert.deepEqual(planned.filter((i) => i.action === 'download'), [], 'plan: nothing to download');
    assert.deepEqual(planned.filter((i) => i.action === 'adopt').map((i) => `${i.target}/${i.serial}`).sort(), [`${a}/20261113`, `${a}/20261120`, `${b}/20261113`, `${b}/20261120`]);
    const logsBefore = w.logs.length;
    const third = await w.sync();
    assert.equal(third.result, 'ok', third.errors.join('\n'));
    assert.deepEqual(imageRequests(w), { gets: 0, bytes: 0 }, 'no image file was requested');
    assert.equal(third.downloaded, 0);
    assert.equal(third.published, 4);
    const logs = w.logs.slice(logsBefore);
    assert.equal(logs.filter((l) => l.event === 'glance.image.created').length, 0, 'no new Glance image');
    assert.equal(logs.filter((l) => l.event === 'image.download.started').length, 0);
    const done = logs.filter((l) => l.event === 'image.publish.done');
    assert.equal(done.length, 4);
    assert.ok(done.every((l) => l.adopted === true));
    const glanceIds = new Map([...await imagesOf(a), ...await imagesOf(b)].map((i) => [`${String((i as Record<string, unknown>)[PROP.target])}/${String((i as Record<string, unknown>).ubuntu_serial)}`, i.id]));
    assert.equal(glanceIds.size, 4);
    const records = w.store().listImages();
    assert.equal(records.length, 2);
    for (const record of records) {
      for (const name of [a, b]) {
        const pub = record.publications[name];
        assert.equal(pub?.state, 'published', `${record.key} on ${name}`);
        assert.equal(pub?.ref, glanceIds.get(`${name}/${record.serial}`), `${record.key} on ${name}: the existing image`);
      }
      assert.equal(record.localPath, null, 'nothing cached');
    }
    // A next cycle has nothing to do.
    w.mirror.clearRequests();
    const fourth = await w.sync();
    assert.equal(fourth.result, 'ok', fourth.errors.join('\n'));
    assert.deepEqual([fourth.published, fourth.downloaded, imageRequests(w).gets], [0, 0, 0]);
  });

  test('a wrong password fails the cycle before any image byte is downloaded, in one line naming the cause and the fix', async () => {
    const name = targetName();
    const w = world = await createSyncWorld({ config: { targets: [{ name, type: 'glance' }] }, targetEnv: { ...os.env, OS_PASSWORD: WRONG_PASSWORD } });
    const summary = await w.sync();
    assert.equal(summary.result, 'failed');
    assert.deepEqual(imageRequests(w), { gets: 0, bytes: 0 }, 'no image file was requested');
    assert.equal(summary.downloaded, 0);
    assert.equal(summary.failed, 1, 'counted once');
    assert.equal(summary.errors.length, 1);
    const [line] = summary.errors;
    assert.match(line!, new RegExp(`^${name}: KEYSTONE_AUTH_FAILED: .*refused.*\\(fix: .*OS_PASSWORD`));
    assert.equal(line!.includes('\n'), false);
    const failed = w.events('sync.preflight.failed');
    assert.equal(failed.length, 1, 'logged once');
    assert.equal(failed[0]!.target, name);
    assert.equal(failed[0]!.errCode, 'KEYSTONE_AUTH_FAILED');
    assert.equal(w.events('image.publish.failed').length, 0);
    assert.equal(w.events('image.reconcile.failed').length, 0, 'not reported again by the reconcile');
    assert.doesNotMatch(JSON.stringify(w.logs), new RegExp(WRONG_PASSWORD));
    const [record] = w.store().listImages();
    assert.equal(record?.state, 'discovered', 'recorded upstream, not downloaded');
    assert.deepEqual(record?.publications, {});
    const cached = existsSync(w.config.cacheDir) ? readdirSync(w.config.cacheDir, { recursive: true }) : [];
    assert.deepEqual(cached.filter((f) => /\.(img|part)$/.test(String(f))), [], 'nothing in the cache');

    // The password fixed: the image is downloaded and published.
    const targets = createTargets(w.config, { env: os.env });
    const fixed = await w.sync({ targets });
    for (const t of targets) await t.close?.();
    assert.equal(fixed.result, 'ok', fixed.errors.join('\n'));
    assert.equal(fixed.downloaded, 1);
    assert.equal((await imagesOf(name)).length, 1);
  });

  test('a target that fails authentication is skipped; the image still goes to a healthy target, the failure counted once', async () => {
    const name = targetName();
    const w = world = await createSyncWorld({ config: { targets: [{ name, type: 'glance' }] }, targetEnv: { ...os.env, OS_PASSWORD: WRONG_PASSWORD } });
    const config = w.reconfigure({ targets: [{ name, type: 'glance' }, { name: 'local', type: 'directory', path: `${w.dir}/images` }] });
    const summary = await w.sync({ config });
    assert.equal(summary.result, 'failed');
    assert.deepEqual([summary.failed, summary.errors.length, summary.downloaded, summary.published], [1, 1, 1, 1]);
    assert.equal(imageRequests(w).gets, 1, 'downloaded once, for the directory');
    const events = w.logs.map((l) => l.event);
    const failedAt = events.indexOf('sync.preflight.failed');
    assert.ok(failedAt >= 0 && failedAt < events.indexOf('image.download.started'), 'the failure is known before the download');
    assert.deepEqual(w.events('image.retire.skipped').map((e) => e.target), [name], 'no retention on the failed target');
    const [record] = w.store().listImages();
    assert.equal(record?.publications.local?.state, 'published');
    assert.equal(record?.publications[name], undefined, 'nothing attempted on the failed target');
  });
});
