/**
 * State against what each target really holds, once per cycle (one listing per target), before planning:
 * an image deleted by hand is recorded `removed` (so the plan publishes it again, which also restores the
 * latest pointer), one hidden by hand is recorded `hidden` (so it stays hidden), one shown again by hand is
 * recorded `published`. Deciding is pure (`reconcilePublications`); `reconcileWithTargets` applies and logs.
 */
import { describeError, errorCode } from '../errors.js';
import type { Logger } from '../log.js';
import type { ImageRecord, StateStore } from '../state/store.js';
import { publishedImageKey, type PublishedImage, type Target } from '../targets/target.js';

export interface PublicationChange {
  key: string;
  to: 'removed' | 'hidden' | 'published';
  ref: string | null;
  /** What was found changed by hand. */
  reason: 'missing' | 'hidden' | 'visible';
}

/** Pure: the state changes that make `records` agree with `listing`, what `target` holds now. */
export function reconcilePublications(records: readonly ImageRecord[], target: string, listing: readonly PublishedImage[]): PublicationChange[] {
  const byRef = new Map(listing.map((p) => [p.ref, p]));
  const completeByKey = new Map<string, PublishedImage>();
  for (const p of listing) if (p.complete !== false) completeByKey.set(publishedImageKey(p), p);
  const changes: PublicationChange[] = [];
  for (const record of records) {
    const pub = record.publications[target];
    if (!pub || (pub.state !== 'published' && pub.state !== 'hidden')) continue;
    const held = (pub.ref ? byRef.get(pub.ref) : undefined) ?? completeByKey.get(record.key);
    if (!held || held.complete === false) {
      if (pub.state === 'published') changes.push({ key: record.key, to: 'removed', ref: pub.ref, reason: 'missing' });
      continue;
    }
    const hidden = held.hidden === true || held.hiddenAtMs !== undefined;
    if (pub.state === 'published' && hidden) changes.push({ key: record.key, to: 'hidden', ref: held.ref, reason: 'hidden' });
    else if (pub.state === 'hidden' && !hidden) changes.push({ key: record.key, to: 'published', ref: held.ref, reason: 'visible' });
  }
  return changes;
}

/** `records` as they would be after applying `changes` of `target` (for `plan`, which writes nothing). Pure. */
export function withChanges(records: readonly ImageRecord[], target: string, changes: readonly PublicationChange[]): ImageRecord[] {
  return records.map((r) => {
    const change = changes.find((c) => c.key === r.key);
    const pub = r.publications[target];
    if (!change || !pub) return r;
    return { ...r, publications: { ...r.publications, [target]: { ...pub, state: change.to, ref: change.ref } } };
  });
}

const EVENT = { missing: 'image.reconcile.missing', hidden: 'image.reconcile.hidden', visible: 'image.reconcile.visible' } as const;
const SAYS = {
  missing: 'is gone from the target (deleted by hand?); it is published again if it is still wanted',
  hidden: 'was hidden on the target by hand; it stays hidden',
  visible: 'was made visible again by hand; recorded as published',
} as const;

/**
 * List each target once and bring state in line with it; a target that cannot be listed is left as recorded.
 * Returns the listings (by target name) for retention to reuse where nothing changed since.
 */
export async function reconcileWithTargets(deps: { store: StateStore; targets: readonly Target[]; log: Logger }): Promise<Map<string, PublishedImage[]>> {
  const listings = new Map<string, PublishedImage[]>();
  for (const target of deps.targets) {
    const log = deps.log.child({ target: target.name });
    let listing: PublishedImage[];
    try {
      listing = await target.listPublished({ log });
    } catch (err) {
      log.warn({ event: 'image.reconcile.failed', err: describeError(err), errCode: errorCode(err) }, `cannot list ${target.name} to compare with state: ${describeError(err)}`);
      continue;
    }
    listings.set(target.name, listing);
    const records = deps.store.listImages();
    for (const change of reconcilePublications(records, target.name, listing)) {
      deps.store.setPublication(change.key, target.name, change.to, change.to === 'removed' ? {} : { ref: change.ref });
      const record = records.find((r) => r.key === change.key)!;
      log.warn({ event: EVENT[change.reason], release: record.release, arch: record.arch, serial: record.serial, channel: record.channel, variant: record.variant, imageId: change.ref },
        `${change.key} (${change.ref ?? 'no ref'}) ${SAYS[change.reason]}`);
    }
  }
  return listings;
}
