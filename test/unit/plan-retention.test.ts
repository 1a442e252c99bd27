import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { imageKey, type UpstreamImage } from '../../src/image.js';
import type { ImageRecord, PublicationRecord } from '../../src/state/store.js';
import { planSync } from '../../src/sync/plan.js';
import { decideRetention } from '../../src/sync/retention.js';
import type { PublishedImage } from '../../src/targets/target.js';

function upstream(serial: string, arch: UpstreamImage['arch'] = 'amd64', sha256 = `sha-${serial}`): UpstreamImage {
  return {
    channel: 'release', variant: 'server', release: 'noble', version: '24.04', arch, serial,
    fileName: `ubuntu-24.04-server-cloudimg-${arch}.img`, url: `https://x/${serial}/${arch}.img`, sha256, signed: true,
  };
}

function record(image: UpstreamImage, state: ImageRecord['state'], pubs: Record<string, PublicationRecord['state']> = {}): ImageRecord {
  const publications = Object.fromEntries(Object.entries(pubs).map(([target, s]) => [target, {
    target, state: s, ref: `ref-${target}`, errorCode: null, error: null, attempts: 1, hiddenAt: null, updatedAt: '',
  }]));
  const { signed: _signed, ...rest } = image;
  return { ...rest, id: 1, key: imageKey(image), sizeBytes: 10, state, localPath: '/cache/x', digests: null, errorCode: null, error: null,
    attempts: 0, discoveredAt: '', updatedAt: '', publications };
}

describe('planSync', () => {
  const a = upstream('20260926');
  const cases: Array<{ name: string; images: ImageRecord[]; cached: string[]; want: Array<{ download: boolean; publishTo: string[] }> }> = [
    { name: 'a new image is downloaded and published everywhere', images: [], cached: [], want: [{ download: true, publishTo: ['local', 'glance'] }] },
    { name: 'an image published everywhere needs nothing', images: [record(a, 'verified', { local: 'published', glance: 'published' })], cached: [], want: [] },
    { name: 'a hidden image counts as published (retention hid it)', images: [record(a, 'verified', { local: 'hidden', glance: 'published' })], cached: [], want: [] },
    { name: 'a verified cached image is published to the missing target without download', images: [record(a, 'verified', { local: 'published', glance: 'failed' })], cached: [imageKey(a)], want: [{ download: false, publishTo: ['glance'] }] },
    { name: 'a verified image whose cache file is gone is downloaded again', images: [record(a, 'verified', { local: 'published' })], cached: [], want: [{ download: true, publishTo: ['glance'] }] },
    { name: 'an interrupted download is taken up again', images: [record(a, 'downloading')], cached: [], want: [{ download: true, publishTo: ['local', 'glance'] }] },
    { name: 'a failed download is retried', images: [record(a, 'failed')], cached: [], want: [{ download: true, publishTo: ['local', 'glance'] }] },
    { name: 'an upload left mid-way (publishing) is redone', images: [record(a, 'verified', { local: 'published', glance: 'publishing' })], cached: [imageKey(a)], want: [{ download: false, publishTo: ['glance'] }] },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const actions = planSync({ upstream: [a], images: c.images, targets: [{ name: 'local' }, { name: 'glance' }], cachedKeys: new Set(c.cached) });
      assert.deepEqual(actions.map((x) => ({ download: x.download, publishTo: x.publishTo })), c.want);
    });
  }

  test('an upstream re-spin of the same serial (new sha256) is fetched and published again', () => {
    const respun = upstream('20260926', 'amd64', 'sha-new');
    const actions = planSync({ upstream: [respun], images: [record(a, 'verified', { local: 'published' })], targets: [{ name: 'local' }], cachedKeys: new Set([imageKey(a)]) });
    assert.deepEqual(actions.map((x) => [x.download, x.publishTo]), [[true, ['local']]]);
  });

  describe('copies the targets already hold (their listing at the start of the cycle)', () => {
    const listed = (image: UpstreamImage, extra: Partial<PublishedImage> = {}): PublishedImage => ({
      ref: `id-${image.serial}`, release: image.release, arch: image.arch, variant: image.variant, channel: image.channel, serial: image.serial,
      pinned: false, complete: true, sha256: image.sha256, ...extra,
    });
    const plan = (images: ImageRecord[], held: Record<string, PublishedImage[]>, cached: string[] = []) =>
      planSync({ upstream: [a], images, targets: [{ name: 'g1' }, { name: 'g2' }], cachedKeys: new Set(cached), held: new Map(Object.entries(held)) })
        .map((x) => ({ download: x.download, publishTo: x.publishTo, adopt: x.adopt }));

    test('every target holds a complete copy of the same bytes: adopted, nothing downloaded', () => {
      assert.deepEqual(plan([], { g1: [listed(a)], g2: [listed(a)] }), [{ download: false, publishTo: ['g1', 'g2'], adopt: ['g1', 'g2'] }]);
    });
    test('some hold one: they adopt it, the image is downloaded for the rest', () => {
      assert.deepEqual(plan([], { g1: [listed(a)], g2: [] }), [{ download: true, publishTo: ['g1', 'g2'], adopt: ['g1'] }]);
    });
    test('a copy of other bytes (a re-spin), an incomplete one, or one without a sha256 is not adopted', () => {
      assert.deepEqual(plan([], { g1: [listed(a, { sha256: 'sha-old' })], g2: [listed(a, { complete: false })] }), [{ download: true, publishTo: ['g1', 'g2'], adopt: [] }]);
      assert.deepEqual(plan([], { g1: [listed(a, { sha256: undefined })] }), [{ download: true, publishTo: ['g1', 'g2'], adopt: [] }]);
    });
    test('a target that cannot adopt (no listing given for it) gets the download', () => {
      assert.deepEqual(plan([], { g1: [listed(a)] }), [{ download: true, publishTo: ['g1', 'g2'], adopt: ['g1'] }]);
    });
    test('a verified copy in the cache is published from there as before', () => {
      const rec = record(a, 'verified');
      assert.deepEqual(plan([rec], { g1: [listed(a)], g2: [listed(a)] }, [imageKey(a)]), [{ download: false, publishTo: ['g1', 'g2'], adopt: [] }]);
    });
  });

  test('orders work by release, arch and serial', () => {
    const actions = planSync({ upstream: [upstream('2', 'arm64'), upstream('1', 'amd64')], images: [], targets: [{ name: 't' }], cachedKeys: new Set() });
    assert.deepEqual(actions.map((x) => x.image.arch), ['amd64', 'arm64']);
  });
});

describe('decideRetention', () => {
  const day = 86_400_000;
  const now = 100 * day;
  function pub(serial: string, extra: Partial<PublishedImage> = {}): PublishedImage {
    return { ref: `img-${serial}`, release: 'noble', arch: 'amd64', variant: 'server', channel: 'release', serial, pinned: false, ...extra };
  }
  const refs = (list: PublishedImage[]) => list.map((i) => i.ref).sort();

  test('keeps the newest N serials and deletes older ones on a target that does not hide', () => {
    const d = decideRetention([pub('20260101'), pub('20260301'), pub('20260201'), pub('20251201')], { keep: 2, hidesBeforeDelete: false, hideGraceMs: 0, nowMs: now });
    assert.deepEqual(refs(d.remove), ['img-20251201', 'img-20260101']);
    assert.deepEqual(d.hide, []);
  });

  test('hides first, then deletes once the grace period has passed', () => {
    const images = [pub('3'), pub('2'), pub('1', { hiddenAtMs: now - 2 * day }), pub('0', { hiddenAtMs: now - 4 * day })];
    const d = decideRetention(images, { keep: 1, hidesBeforeDelete: true, hideGraceMs: 3 * day, nowMs: now });
    assert.deepEqual(refs(d.hide), ['img-2']);
    assert.deepEqual(refs(d.remove), ['img-0']);
    assert.deepEqual(d.spared.map((s) => [s.image.ref, s.reason]), [['img-1', 'grace']]);
  });

  test('never touches pinned (protected or keep-tagged) images', () => {
    const d = decideRetention([pub('3'), pub('2', { pinned: true }), pub('1', { pinned: true, hiddenAtMs: 0 })], { keep: 1, hidesBeforeDelete: true, hideGraceMs: 0, nowMs: now });
    assert.deepEqual(d.hide, []);
    assert.deepEqual(d.remove, []);
    assert.equal(d.spared.length, 2);
  });

  test('counts each release/arch/variant/channel series on its own', () => {
    const d = decideRetention([pub('2'), pub('1'), pub('1', { arch: 'arm64', ref: 'arm-1' }), pub('1', { channel: 'daily', ref: 'daily-1' })],
      { keep: 1, hidesBeforeDelete: false, hideGraceMs: 0, nowMs: now });
    assert.deepEqual(refs(d.remove), ['img-1']);
  });

  test('compares serials numerically including suffixes', () => {
    const d = decideRetention([pub('20240605.1'), pub('20240605'), pub('20240605.10')], { keep: 1, hidesBeforeDelete: false, hideGraceMs: 0, nowMs: now });
    assert.deepEqual(refs(d.remove), ['img-20240605', 'img-20240605.1']);
  });
});
