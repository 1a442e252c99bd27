import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { SyncMetrics, newestPublishedSerials, serialDateMs, type StateView } from '../../src/daemon/metrics.js';
import type { EventName, EventRecord } from '../../src/events.js';
import type { ImageRecord } from '../../src/state/store.js';

const IMAGE = { channel: 'release', variant: 'server', release: 'noble', arch: 'amd64', serial: '20261120' };
const T = '2026-11-27T10:00:00.000Z';

function ev(event: EventName, fields: Record<string, unknown> = {}, image: Record<string, unknown> = IMAGE): EventRecord {
  return { level: 'info', time: T, msg: event, event, ...image, ...fields };
}

async function value(metrics: SyncMetrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const sample = metric?.values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l) && (Object.keys(labels).length > 0 || Object.keys(v.labels).length === 0));
  return sample?.value;
}

function feed(metrics: SyncMetrics, records: EventRecord[]): void {
  for (const r of records) metrics.observe(r);
}

describe('metrics from log events: bytes that crossed the network, each counted once', () => {
  const cases: Array<{ name: string; events: EventRecord[]; bytes: number }> = [
    {
      name: 'a fresh download: progress then done',
      events: [ev('image.download.started'), ev('image.download.progress', { bytes: 300, totalBytes: 1000 }), ev('image.download.done', { bytes: 1000, resumedFromBytes: 0 })],
      bytes: 1000,
    },
    {
      name: 'a fresh process resuming a .part left by another: the prefix is not counted',
      events: [ev('image.download.started'), ev('http.download.resume', { fromBytes: 400, totalBytes: 1000 }), ev('image.download.progress', { bytes: 700 }), ev('image.download.done', { bytes: 1000, resumedFromBytes: 400 })],
      bytes: 600,
    },
    {
      name: 'a reset and retry inside one download: bytes before the reset count, the resumed rest too',
      events: [ev('image.download.started'), ev('http.retry', { attempt: 1 }), ev('http.download.resume', { fromBytes: 350 }), ev('image.download.done', { bytes: 1000, resumedFromBytes: 350 })],
      bytes: 1000,
    },
    {
      name: 'a server that ignores Range: the restart from byte 0 moves the whole file again',
      events: [ev('image.download.started'), ev('image.download.progress', { bytes: 200 }), ev('http.retry'), ev('http.download.resume', { fromBytes: 250 }), ev('http.download.restart', { discardedBytes: 250 }), ev('image.download.done', { bytes: 1000 })],
      bytes: 1250,
    },
    {
      name: 'aborted in one cycle, resumed in the next by the same process: bytes after the last progress count once',
      events: [
        ev('image.download.started'), ev('image.download.progress', { bytes: 100 }), ev('image.download.aborted'),
        ev('image.download.started'), ev('http.download.resume', { fromBytes: 180 }), ev('image.download.done', { bytes: 1000, resumedFromBytes: 180 }),
      ],
      bytes: 1000,
    },
    {
      name: 'a checksum failure after the whole file arrived counts the whole file',
      events: [ev('image.download.started'), ev('image.download.progress', { bytes: 10, totalBytes: 1000 }), ev('image.verify.failed')],
      bytes: 1000,
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const metrics = new SyncMetrics(() => undefined);
      feed(metrics, c.events);
      assert.equal(await value(metrics, 'cloudimg_sync_download_bytes_total'), c.bytes);
    });
  }

  test('downloads of different images are tallied apart', async () => {
    const metrics = new SyncMetrics(() => undefined);
    const arm = { ...IMAGE, arch: 'arm64' };
    feed(metrics, [
      ev('image.download.started'), ev('image.download.progress', { bytes: 500 }),
      ev('image.download.started', {}, arm), ev('image.download.progress', { bytes: 50 }, arm),
      ev('image.download.done', { bytes: 1000 }), ev('image.download.done', { bytes: 100 }, arm),
    ]);
    assert.equal(await value(metrics, 'cloudimg_sync_download_bytes_total'), 1100);
  });
});

describe('metrics from log events: runs, publications, failures', () => {
  test('runs by result, last success and last run times, uploads and durations', async () => {
    const metrics = new SyncMetrics(() => undefined);
    feed(metrics, [
      ev('sync.run.started', {}, {}),
      ev('image.download.done', { bytes: 10, durationMs: 2_000 }),
      ev('image.publish.done', { target: 'glance', bytes: 10, durationMs: 4_000, adopted: false }),
      ev('image.publish.done', { target: 'local', bytes: 10, durationMs: 1, adopted: true }),
      ev('image.publish.failed', { target: 'local' }),
      ev('sync.preflight.failed', { target: 'glance2', errCode: 'KEYSTONE_AUTH_FAILED' }, {}),
      { ...ev('sync.run.finished', { result: 'failed' }, {}), time: '2026-11-27T10:00:00.000Z' },
      { ...ev('sync.run.finished', { result: 'ok' }, {}), time: '2026-11-27T11:00:00.000Z' },
      { ...ev('sync.run.finished', { result: 'interrupted' }, {}), time: '2026-11-27T12:00:00.000Z' },
    ]);
    assert.equal(await value(metrics, 'cloudimg_sync_runs_total', { result: 'ok' }), 1);
    assert.equal(await value(metrics, 'cloudimg_sync_runs_total', { result: 'failed' }), 1);
    assert.equal(await value(metrics, 'cloudimg_sync_runs_total', { result: 'interrupted' }), 1);
    assert.equal(await value(metrics, 'cloudimg_sync_last_success_timestamp_seconds'), Date.parse('2026-11-27T11:00:00.000Z') / 1000);
    assert.equal(await value(metrics, 'cloudimg_sync_last_run_timestamp_seconds'), Date.parse('2026-11-27T11:00:00.000Z') / 1000, 'an interrupted run is not a finished cycle');
    assert.equal(await value(metrics, 'cloudimg_sync_upload_bytes_total', { target: 'glance' }), 10);
    assert.equal(await value(metrics, 'cloudimg_sync_upload_bytes_total', { target: 'local' }), undefined, 'adopting moves nothing');
    assert.equal(await value(metrics, 'cloudimg_sync_image_failures_total', { step: 'publish' }), 2, 'a failed publication, a target that could not get ready');
    assert.equal(await value(metrics, 'cloudimg_sync_cycle_running'), 0);
    const hist = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === 'cloudimg_sync_upload_duration_seconds')!;
    assert.equal(hist.values.find((v) => (v as { metricName?: string }).metricName === 'cloudimg_sync_upload_duration_seconds_sum' && v.labels.target === 'glance')?.value, 4);
  });

  test('publication lag per stream, release, arch and target: the newest reveal\'s, from image.publish.done', async () => {
    const metrics = new SyncMetrics(() => undefined);
    feed(metrics, [
      ev('image.publish.done', { target: 'glance', adopted: false, lagSeconds: 5_400 }),
      ev('image.publish.done', { target: 'glance', adopted: false, lagSeconds: 3_000 }, { ...IMAGE, arch: 'arm64' }),
      ev('image.publish.done', { target: 'glance', adopted: false, lagSeconds: 900 }, { ...IMAGE, variant: 'minimal' }),
      ev('image.publish.done', { target: 'local', adopted: true }),
    ]);
    const lag = (labels: Record<string, string>) => value(metrics, 'cloudimg_sync_publication_lag_seconds', labels);
    assert.equal(await lag({ stream: 'release/server', release: 'noble', arch: 'amd64', target: 'glance' }), 5_400);
    assert.equal(await lag({ stream: 'release/server', release: 'noble', arch: 'arm64', target: 'glance' }), 3_000);
    assert.equal(await lag({ stream: 'release/minimal', release: 'noble', arch: 'amd64', target: 'glance' }), 900);
    assert.equal(await lag({ target: 'local' }), undefined, 'an adopted copy is no reveal of ours');
    feed(metrics, [ev('image.publish.done', { target: 'glance', adopted: false, lagSeconds: 600 })]);
    assert.equal(await lag({ stream: 'release/server', release: 'noble', arch: 'amd64', target: 'glance' }), 600, 'the newest reveal replaces the one before');
  });

  test('the last success survives a restart: seeded from the runs in state', async () => {
    const metrics = new SyncMetrics(() => undefined);
    metrics.seedFromRuns([
      { id: 3, startedAt: '', finishedAt: '2026-11-27T12:00:00.000Z', result: 'failed', error: 'x', discovered: 0, downloaded: 0, published: 0, retired: 0, failed: 1, bytesDown: 0 },
      { id: 2, startedAt: '', finishedAt: '2026-11-27T06:00:00.000Z', result: 'ok', error: null, discovered: 0, downloaded: 0, published: 0, retired: 0, failed: 0, bytesDown: 0 },
    ]);
    assert.equal(await value(metrics, 'cloudimg_sync_last_success_timestamp_seconds'), Date.parse('2026-11-27T06:00:00.000Z') / 1000);
    assert.equal(await value(metrics, 'cloudimg_sync_last_run_timestamp_seconds'), Date.parse('2026-11-27T12:00:00.000Z') / 1000);
  });

  test('images by state, publications by target and state, and the newest serial age come from state at scrape time', async () => {
    const pub = (target: string, state: string) => ({ [target]: { target, state, ref: null, errorCode: null, error: null, attempts: 1, hiddenAt: null, updatedAt: T } });
    const images = [
      { ...IMAGE, serial: '20261101', state: 'verified', publications: { ...pub('local', 'removed'), ...pub('glance', 'published') } },
      { ...IMAGE, serial: '20261120', state: 'verified', publications: { ...pub('local', 'published'), ...pub('glance', 'failed') } },
      { ...IMAGE, serial: '20261125', state: 'downloading', publications: {} },
    ] as unknown as ImageRecord[];
    const state: StateView = { listImages: () => images, listRuns: () => [] };
    const now = Date.UTC(2026, 10, 27);
    const metrics = new SyncMetrics(() => state, () => now);
    assert.equal(await value(metrics, 'cloudimg_sync_images', { state: 'verified' }), 2);
    assert.equal(await value(metrics, 'cloudimg_sync_images', { state: 'downloading' }), 1);
    assert.equal(await value(metrics, 'cloudimg_sync_images', { state: 'failed' }), 0);
    assert.equal(await value(metrics, 'cloudimg_sync_publications', { target: 'glance', state: 'failed' }), 1);
    assert.equal(await value(metrics, 'cloudimg_sync_newest_serial_age_seconds', { target: 'local' }), 7 * 86_400);
    assert.equal(await value(metrics, 'cloudimg_sync_newest_serial_age_seconds', { target: 'glance' }), 26 * 86_400, 'the newest serial *published* there');
  });

  test('serial dates and the newest published serial', () => {
    assert.equal(serialDateMs('20261120'), Date.UTC(2026, 10, 20));
    assert.equal(serialDateMs('20240605.10'), Date.UTC(2024, 5, 5));
    assert.equal(serialDateMs('current'), undefined);
    const p = { t: { target: 't', state: 'published' } };
    const stream = { channel: 'release', variant: 'server' };
    const minimal = { channel: 'release', variant: 'minimal' };
    assert.deepEqual(newestPublishedSerials([
      { ...stream, release: 'noble', arch: 'amd64', serial: '20240605.9', publications: p },
      { ...stream, release: 'noble', arch: 'amd64', serial: '20240605.10', publications: p },
      { ...minimal, release: 'noble', arch: 'amd64', serial: '20240601', publications: p },
    ]), [
      { ...stream, release: 'noble', arch: 'amd64', target: 't', serial: '20240605.10' },
      { ...minimal, release: 'noble', arch: 'amd64', target: 't', serial: '20240601' },
    ], 'server and minimal images of one release/arch are separate series');
  });
});
