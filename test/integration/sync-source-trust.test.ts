import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { createSyncWorld, type SyncWorld } from '../support/sync-world.js';

let world: SyncWorld;
afterEach(async () => { await world?.close(); });

const imagePath = (w: SyncWorld, serial: string) => path.join(w.dir, 'images', 'noble', serial, 'ubuntu-24.04-server-cloudimg-amd64.img');

describe('what a sync trusts from the source (fixture mirror, directory target)', () => {
  test('accepts a binary (unarmored) SHA256SUMS.gpg and publishes', async () => {
    world = await createSyncWorld({ mirror: { releases: [{ codename: 'noble', serials: ['20261120'], channels: ['release'] }] } });
    const fault = world.mirror.inject({ path: /SHA256SUMS\.gpg$/, fault: 'alt-signature', how: 'binary' });
    const summary = await world.sync();
    assert.ok(fault.hits > 0, 'the binary signature was served');
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.equal(summary.published, 1);
    assert.equal(world.events('source.sums.verified')[0]?.fingerprint, world.mirror.fingerprint);
  });

  test('accepts a signature made before its key expired, as gpgv does, with a warning event', async () => {
    world = await createSyncWorld({ mirror: { releases: [{ codename: 'noble', serials: ['20261120'], channels: ['release'] }] } });
    world.mirror.inject({ path: /SHA256SUMS\.gpg$/, fault: 'alt-signature', how: 'expired-key' });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.equal(summary.published, 1);
    const [warning, ...more] = world.events('source.signature.key_expired');
    assert.equal(more.length, 0);
    assert.equal(warning?.level, 'warn');
    assert.equal(warning?.serial, '20261120');
    assert.ok(typeof warning?.keyExpiredAt === 'string' && Date.parse(warning.keyExpiredAt) < Date.now());
    assert.notEqual(warning?.fingerprint, world.mirror.fingerprint, 'the retired key signed, not the current one');
  });

  test('a validly signed older serial offered as newest never replaces the newer published one (source.rollback.refused)', async () => {
    world = await createSyncWorld({
      mirror: { releases: [{ codename: 'noble', serials: ['20261101', '20261120'], channels: ['release'] }] },
      config: { keep: 1 },
    });
    assert.equal((await world.sync()).published, 1);
    assert.ok(existsSync(imagePath(world, '20261120')));
    // The mirror goes back in time: 20261101, still validly signed, is its newest again.
    await world.mirror.removeSerial({ codename: 'noble', serial: '20261120' });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.equal(summary.published, 0);
    assert.equal(summary.downloaded, 0);
    assert.ok(existsSync(imagePath(world, '20261120')), 'the newer serial stays published');
    assert.ok(!existsSync(imagePath(world, '20261101')), 'the older one is not published');
    const [refused] = world.events('source.rollback.refused');
    assert.equal(refused?.serial, '20261101');
    assert.equal(refused?.publishedSerial, '20261120');
  });
});
