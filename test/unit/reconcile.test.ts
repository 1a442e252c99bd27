import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import type { ImageRecord, PublicationRecord } from '../../src/state/store.js';
import { reconcilePublications } from '../../src/sync/reconcile.js';
import type { PublishedImage } from '../../src/targets/target.js';

const ID = { channel: 'release', variant: 'server', release: 'noble', arch: 'amd64' } as const;

function record(serial: string, state: PublicationRecord['state'], ref: string): ImageRecord {
  return {
    ...ID, id: 1, key: `release/server/noble/amd64/${serial}`, version: '24.04', serial, fileName: 'x.img', url: '', sha256: 'a',
    sizeBytes: 1, state: 'verified', localPath: null, digests: null, errorCode: null, error: null, attempts: 0, discoveredAt: '', updatedAt: '',
    publications: { t: { target: 't', state, ref, errorCode: null, error: null, attempts: 1, hiddenAt: null, updatedAt: '' } },
  };
}

function held(serial: string, ref: string, extra: Partial<PublishedImage> = {}): PublishedImage {
  return { ...ID, serial, ref, pinned: false, ...extra };
}

describe('reconcile state with what a target holds (pure)', () => {
  const cases: Array<[string, ImageRecord[], PublishedImage[], Array<[string, string, string]>]> = [
    ['nothing changed by hand: no change', [record('1', 'published', 'a')], [held('1', 'a')], []],
    ['deleted by hand: removed, so the plan publishes it again', [record('1', 'published', 'a')], [], [['1', 'removed', 'missing']]],
    ['only an incomplete leftover remains: removed', [record('1', 'published', 'a')], [held('1', 'a', { complete: false })], [['1', 'removed', 'missing']]],
    ['hidden by hand: recorded hidden, so it stays hidden', [record('1', 'published', 'a')], [held('1', 'a', { hidden: true })], [['1', 'hidden', 'hidden']]],
    ['hidden by retention and still hidden: no change', [record('1', 'hidden', 'a')], [held('1', 'a', { hidden: true, hiddenAtMs: 5 })], []],
    ['made visible again by hand: recorded published', [record('1', 'hidden', 'a')], [held('1', 'a')], [['1', 'published', 'visible']]],
    ['a hidden image deleted by hand is left to retention (not published again)', [record('1', 'hidden', 'a')], [], []],
    ['found under another ref (re-uploaded elsewhere): kept', [record('1', 'published', 'a')], [held('1', 'b')], []],
  ];
  for (const [name, records, listing, expected] of cases) {
    test(name, () => {
      assert.deepEqual(reconcilePublications(records, 't', listing).map((c) => [c.key.split('/').at(-1), c.to, c.reason]), expected);
    });
  }
});
