/**
 * A real fleet against the fixture mirror (directory targets): many streams in one config, `keep` serials
 * from the first run, end of life, partial serials and missing arches (issue 11 §1-4).
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { formatStatus, statusCommand } from '../../src/commands/status.js';
import { HealthTracker } from '../../src/daemon/health.js';
import { SyncMetrics } from '../../src/daemon/metrics.js';
import type { EventRecord } from '../../src/events.js';
import { createSyncWorld, type SyncWorld } from '../support/sync-world.js';

let world: SyncWorld;
afterEach(async () => { await world?.close(); });

/** `release/serial/file` of every image a directory target holds. */
function imagesIn(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile() && d.name.endsWith('.img'))
    .map((d) => path.relative(dir, path.join(d.parentPath, d.name)))
    .sort();
}

function imageGets(w: SyncWorld): string[] {
  return w.mirror.requests.filter((r) => r.method === 'GET' && r.path.endsWith('.img')).map((r) => r.path).sort();
}

/** The state rows as `channel/variant/release/arch/serial`. */
function keys(w: SyncWorld): string[] {
  return w.store().listImages().map((r) => r.key).sort();
}

/** The world's config as a file, for the commands that read one. */
function configFile(w: SyncWorld): string {
  const file = path.join(w.dir, 'config.json');
  writeFileSync(file, JSON.stringify({
    source: w.config.source, stateDir: w.config.stateDir, cacheDir: w.config.cacheDir, targets: w.config.targets, keep: w.config.keep,
  }));
  return file;
}

describe('many streams in one config', () => {
  test('release server + minimal + a daily in one run: one download per image, a target restricted to release/server gets only those', async () => {
    world = await createSyncWorld({
      mirror: {
        releases: [
          { codename: 'noble', serials: ['20261101', '20261120'], arches: ['amd64', 'arm64'], channels: ['release'], variants: ['server', 'minimal'] },
          { codename: 'jammy', serials: ['20261115'], arches: ['amd64', 'arm64'], channels: ['release'] },
          { codename: 'resolute', serials: ['20261119', '20261120'], channels: ['daily'] },
        ],
      },
      config: {
        keep: 1,
        source: {
          streams: [
            { channel: 'release', variant: 'server', releases: ['noble', 'jammy'], arches: ['amd64', 'arm64'] },
            { channel: 'release', variant: 'minimal', releases: ['noble'], arches: ['amd64'] },
            { channel: 'daily', variant: 'server', releases: ['resolute'], arches: ['amd64'] },
          ],
        },
      },
    });
    const config = world.reconfigure({
      keep: 1,
      source: world.config.source,
      targets: [
        { name: 'all', type: 'directory', path: path.join(world.dir, 'all') },
        { name: 'servers', type: 'directory', path: path.join(world.dir, 'servers'), streams: ['release/server'] },
      ],
    });
    const summary = await world.sync({ config });
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.deepEqual(keys(world), [
      'daily/server/resolute/amd64/20261120',
      'release/minimal/noble/amd64/20261120',
      'release/server/jammy/amd64/20261115',
      'release/server/jammy/arm64/20261115',
      'release/server/noble/amd64/20261120',
      'release/server/noble/arm64/20261120',
    ]);
    const gets = imageGets(world);
    assert.equal(gets.length, 6, 'six images, each fetched once for two targets');
    assert.equal(new Set(gets).size, 6);
    assert.deepEqual(imagesIn(path.join(world.dir, 'all')), [
      'jammy/20261115/ubuntu-22.04-server-cloudimg-amd64.img',
      'jammy/20261115/ubuntu-22.04-server-cloudimg-arm64.img',
      'noble/20261120/ubuntu-24.04-minimal-cloudimg-amd64.img',
      'noble/20261120/ubuntu-24.04-server-cloudimg-amd64.img',
      'noble/20261120/ubuntu-24.04-server-cloudimg-arm64.img',
      'resolute/20261120/resolute-server-cloudimg-amd64.img',
    ]);
    assert.deepEqual(imagesIn(path.join(world.dir, 'servers')), [
      'jammy/20261115/ubuntu-22.04-server-cloudimg-amd64.img',
      'jammy/20261115/ubuntu-22.04-server-cloudimg-arm64.img',
      'noble/20261120/ubuntu-24.04-server-cloudimg-amd64.img',
      'noble/20261120/ubuntu-24.04-server-cloudimg-arm64.img',
    ]);
    const minimal = world.store().getImage('release/minimal/noble/amd64/20261120')!;
    assert.deepEqual(Object.keys(minimal.publications), ['all'], 'the restricted target has no publication of another stream');

    // status tells server and minimal apart.
    const status = statusCommand({ config: configFile(world) });
    const text = formatStatus(status);
    assert.match(text, /^STREAM\s+RELEASE\s+VERSION\s+ARCH\s+SERIAL\s+STATE\s+TARGETS$/m);
    assert.match(text, /^release\/minimal\s+noble\s+24\.04\s+amd64\s+20261120\s+verified\s+all:published$/m);
    assert.match(text, /^release\/server\s+noble\s+24\.04\s+amd64\s+20261120\s+verified\s+all:published servers:published$/m);
    assert.match(text, /^daily\/server\s+resolute\s+26\.04\s+amd64\s+20261120/m);
  });
});

describe('keep: N serials from the first run', () => {
  test('a fresh install with keep: 2 mirrors the two newest serials per release/arch, not only the newest', async () => {
    world = await createSyncWorld({
      mirror: { releases: [{ codename: 'noble', serials: ['20261101', '20261110', '20261120'], arches: ['amd64', 'arm64'], channels: ['release'] }] },
      config: { keep: 2, source: { releases: ['noble'], arches: ['amd64', 'arm64'] } },
    });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.deepEqual(keys(world), [
      'release/server/noble/amd64/20261110', 'release/server/noble/amd64/20261120',
      'release/server/noble/arm64/20261110', 'release/server/noble/arm64/20261120',
    ]);
    assert.equal(imagesIn(path.join(world.dir, 'images')).length, 4);
    assert.equal(summary.retired, 0, 'nothing fetched is retired again');
    // A new serial: the oldest of the two goes, the new one comes.
    await world.mirror.addSerial({ codename: 'noble', serial: '20261201' });
    const next = await world.sync();
    assert.equal(next.result, 'ok', next.errors.join('\n'));
    assert.deepEqual(imagesIn(path.join(world.dir, 'images')).map((f) => f.split('/')[1]), ['20261120', '20261120', '20261201', '20261201']);
  });

  test('keep larger than what upstream has takes what there is, and a serial pruned upstream is skipped, not an error', async () => {
    world = await createSyncWorld({
      mirror: { releases: [{ codename: 'noble', serials: ['20261101', '20261110', '20261120'], channels: ['release'] }] },
      config: { keep: 3 },
    });
    // 20261110 is pruned between the listing and the read of its SHA256SUMS.
    world.mirror.inject({ path: /\/release-20261110\/(SHA256SUMS)?$/, fault: 'pruned' });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.deepEqual(keys(world), ['release/server/noble/amd64/20261101', 'release/server/noble/amd64/20261120']);
    assert.deepEqual(world.events('source.serial.pruned').map((e) => e.serial), ['20261110']);
    world.mirror.clearFaults();
    await world.mirror.removeSerial({ codename: 'noble', serial: '20261110' });
    const again = await world.sync();
    assert.equal(again.result, 'ok', again.errors.join('\n'));
    assert.equal(again.downloaded, 0);
  });
});

describe('end of life', () => {
  test('a released EOL release is mirrored with a warning once per cycle, not a failure; one gone upstream (404) neither', async () => {
    world = await createSyncWorld({
      mirror: { releases: [{ codename: 'noble', serials: ['20261120'], channels: ['release'] }, { codename: 'plucky', serials: ['20260110'], channels: ['release'] }] },
      // plucky ended 2026-01-15 and is still on the mirror; focal ended 2025-05-29 and is gone (404).
      config: { keep: 1, source: { releases: ['noble', 'plucky', 'focal'], arches: ['amd64'] } },
    });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.deepEqual(summary.eol, [
      { stream: 'release/server', release: 'plucky', eol: '2026-01-15', gone: false, imported: true },
      { stream: 'release/server', release: 'focal', eol: '2025-05-29', gone: true, imported: true },
    ]);
    assert.deepEqual(world.events('source.release.eol').map((e) => [e.release, e.gone]), [['plucky', false], ['focal', true]]);
    assert.ok(keys(world).includes('release/server/plucky/amd64/20260110'), 'released images of an EOL release are still mirrored');
    assert.equal(world.events('source.release.failed').length, 0);

    // The daemon's view of that cycle: healthy, and the metric shows both releases.
    const health = new HealthTracker(24);
    const metrics = new SyncMetrics(() => undefined);
    for (const record of world.logs) { health.observe(record as unknown as EventRecord); metrics.observe(record as unknown as EventRecord); }
    assert.equal(health.report().healthy, true);
    const text = await metrics.registry.metrics();
    assert.match(text, /cloudimg_sync_release_eol\{channel="release",variant="server",release="plucky",gone="false"\} 1/);
    assert.match(text, /cloudimg_sync_release_eol\{channel="release",variant="server",release="focal",gone="true"\} 1/);

    // Once per cycle.
    await world.sync();
    assert.equal(world.events('source.release.eol').length, 4);
  });

  test('a supported release that answers 404 still fails the cycle', async () => {
    world = await createSyncWorld({ config: { source: { releases: ['noble', 'jammy'] } } });
    const summary = await world.sync();
    assert.equal(summary.result, 'failed');
    assert.match(summary.errors.join('\n'), /jammy \(release\/server\): HTTP_NOT_FOUND/);
    assert.deepEqual(summary.eol, []);
  });

  test('EOL dailies are not imported: by the release table, or by an END OF LIFE description in the listing', async () => {
    world = await createSyncWorld({
      mirror: {
        releases: [
          { codename: 'noble', serials: ['20261120'], channels: ['daily'] },
          { codename: 'plucky', serials: ['20260110'], channels: ['daily'] },
          // The table says resolute is supported until 2031; the site says it is over.
          { codename: 'resolute', serials: ['20261120'], channels: ['daily'], eol: '2026-06-01' },
        ],
      },
      config: { keep: 1, source: { channel: 'daily', releases: ['noble', 'plucky', 'resolute'] } },
    });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.deepEqual(keys(world), ['daily/server/noble/amd64/20261120']);
    assert.deepEqual(summary.eol.map((e) => [e.release, e.imported]), [['plucky', false], ['resolute', false]]);
    assert.ok(!world.mirror.requests.some((r) => r.path.startsWith('/plucky/') || r.path.startsWith('/resolute/')), 'nothing of theirs is even read');
  });

  test('eol: delete retires an EOL release from that target only; the default (keep) target keeps it', async () => {
    world = await createSyncWorld({
      mirror: { releases: [{ codename: 'noble', serials: ['20261120'], channels: ['release'] }, { codename: 'resolute', serials: ['20261120'], channels: ['release'] }] },
      config: {
        keep: 1,
        source: { releases: ['noble', 'resolute'] },
        targets: [
          { name: 'keeper', type: 'directory', path: path.join('KEEPER') },
        ],
      },
    });
    const config = world.reconfigure({
      keep: 1,
      source: { releases: ['noble', 'resolute'] },
      targets: [
        { name: 'keeper', type: 'directory', path: path.join(world.dir, 'keeper') },
        { name: 'cleaner', type: 'directory', path: path.join(world.dir, 'cleaner'), eol: 'delete' },
      ],
    });
    assert.equal((await world.sync({ config })).result, 'ok');
    assert.equal(imagesIn(path.join(world.dir, 'cleaner')).length, 2);
    // Upstream declares resolute over (a listing description): the cleaner target deletes its images.
    await world.mirror.setEndOfLife('resolute', '2026-06-01');
    const summary = await world.sync({ config });
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.deepEqual(imagesIn(path.join(world.dir, 'cleaner')), ['noble/20261120/ubuntu-24.04-server-cloudimg-amd64.img']);
    assert.equal(imagesIn(path.join(world.dir, 'keeper')).length, 2);
    const removed = world.events('image.retire.removed');
    assert.deepEqual(removed.map((e) => [e.target, e.release, e.reason]), [['cleaner', 'resolute', 'eol']]);
    // And it is not published there again on the next cycle.
    const again = await world.sync({ config });
    assert.equal(again.published, 0);
    assert.equal(imagesIn(path.join(world.dir, 'cleaner')).length, 1);
  });
});

describe('partial serials and missing arches', () => {
  test('an arch comes from the newest serial that has it, and from the new serial once upstream completes it', async () => {
    world = await createSyncWorld({
      mirror: { releases: [{ codename: 'noble', serials: ['20261101'], arches: ['amd64', 'arm64'], channels: ['release'] }] },
      config: { keep: 1, source: { releases: ['noble'], arches: ['amd64', 'arm64'] } },
    });
    // The new serial is published amd64 first; a fresh install takes arm64 from the serial before.
    await world.mirror.addSerial({ codename: 'noble', serial: '20261120', arches: ['amd64'] });
    const partial = await world.sync();
    assert.equal(partial.result, 'ok', partial.errors.join('\n'));
    assert.deepEqual(imagesIn(path.join(world.dir, 'images')), [
      'noble/20261101/ubuntu-24.04-server-cloudimg-arm64.img',
      'noble/20261120/ubuntu-24.04-server-cloudimg-amd64.img',
    ]);
    assert.deepEqual(world.events('source.arch.older').map((e) => [e.arch, e.serial, e.newestSerial]), [['arm64', '20261101', '20261120']]);
    // Upstream finishes the serial: arm64 moves to it on the next cycle.
    await world.mirror.addSerial({ codename: 'noble', serial: '20261120', arches: ['amd64', 'arm64'] });
    const complete = await world.sync();
    assert.equal(complete.result, 'ok', complete.errors.join('\n'));
    assert.equal(complete.downloaded, 1);
    assert.deepEqual(imagesIn(path.join(world.dir, 'images')), [
      'noble/20261120/ubuntu-24.04-server-cloudimg-amd64.img',
      'noble/20261120/ubuntu-24.04-server-cloudimg-arm64.img',
    ]);
  });

  test('an arch no recent serial has makes the run incomplete: in the result, in status, in the metric; the daemon stays healthy', async () => {
    world = await createSyncWorld({ config: { source: { releases: ['noble'], arches: ['amd64', 's390x'] } } });
    const summary = await world.sync();
    assert.equal(summary.result, 'incomplete');
    assert.deepEqual(summary.errors, []);
    assert.deepEqual(summary.incomplete, [{ stream: 'release/server', release: 'noble', arch: 's390x', reason: 'no s390x image in serials 20261120' }]);
    assert.ok(keys(world).includes('release/server/noble/amd64/20261120'), 'the arches that are there are synced');
    assert.equal(world.store().listRuns()[0]!.result, 'incomplete');

    const status = statusCommand({ config: configFile(world) });
    assert.deepEqual(status.incomplete, summary.incomplete);
    assert.match(formatStatus(status), /^incomplete {2}release\/server noble s390x: no s390x image in serials 20261120 \(run 1, incomplete\)$/m);

    const health = new HealthTracker(24);
    const metrics = new SyncMetrics(() => undefined);
    for (const record of world.logs) { health.observe(record as unknown as EventRecord); metrics.observe(record as unknown as EventRecord); }
    assert.equal(health.report().healthy, true);
    const text = await metrics.registry.metrics();
    assert.match(text, /cloudimg_sync_arch_missing\{channel="release",variant="server",release="noble",arch="s390x"\} 1/);
    assert.match(text, /cloudimg_sync_runs_total\{result="incomplete"\} 1/);
  });

  test('diagnostics name the cause: no SHA256SUMS.gpg yet, no SHA256SUMS yet, or gone', async () => {
    world = await createSyncWorld({ mirror: { releases: [{ codename: 'noble', serials: ['20261101'], channels: ['release'] }] }, config: { keep: 1 } });
    // Newest serial signed list there, its signature not yet: the older serial is used, and the log says why.
    await world.mirror.addSerial({ codename: 'noble', serial: '20261120', publishedUpTo: 'sums' });
    const summary = await world.sync();
    assert.equal(summary.result, 'ok', summary.errors.join('\n'));
    assert.deepEqual(keys(world), ['release/server/noble/amd64/20261101']);
    assert.deepEqual(world.events('source.serial.incomplete').map((e) => [e.serial, e.missing]), [['20261120', 'SHA256SUMS.gpg']]);
    assert.equal(world.events('source.serial.pruned').length, 0, 'a serial being published is not called gone');

    // Nothing complete at all: the error names each serial's cause.
    world.mirror.inject({ path: '/releases/noble/release-20261101/SHA256SUMS', fault: 'pruned' });
    world.mirror.inject({ path: '/releases/noble/release-20261101/', fault: 'pruned' });
    await world.mirror.addSerial({ codename: 'noble', serial: '20261125', publishedUpTo: 'images' });
    const stuck = await world.sync();
    assert.equal(stuck.result, 'failed');
    assert.match(stuck.errors[0]!, /SERIALS_NOT_READY: none of the 3 newest serials under \S+ is complete upstream \(20261125: no SHA256SUMS yet \(not complete upstream\); 20261120: no SHA256SUMS\.gpg yet \(not complete upstream\); 20261101: gone \(404\)\)/);
  });
});
