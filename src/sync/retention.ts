import { compareSerials } from '../image.js';
import type { PublishedImage } from '../targets/target.js';

export interface RetentionPolicy {
  /** Newest serials kept per channel/variant/release/arch. */
  keep: number;
  /** Whether the target hides images before deleting them. */
  hidesBeforeDelete: boolean;
  /** How long a hidden image stays before it is deleted. */
  hideGraceMs: number;
  nowMs: number;
  /**
   * The target's `eol:` policy over releases past end of life: `keep` leaves them to `keep`; `hide` hides all
   * their images; `delete` hides them, then deletes them after the grace (directly where the target cannot hide).
   */
  eol?: { policy: 'keep' | 'hide' | 'delete'; releases: ReadonlySet<string> };
}

export interface RetentionDecision {
  hide: PublishedImage[];
  remove: PublishedImage[];
  /** Images past `keep` (or of an end-of-life release) that stay, and why (pinned, hidden within grace). */
  spared: Array<{ image: PublishedImage; reason: 'pinned' | 'grace' }>;
  /** Of hide and remove, those retired because their release is past end of life. */
  endOfLife: Set<PublishedImage>;
}

function seriesOf(image: PublishedImage): string {
  return `${image.channel}/${image.variant}/${image.release}/${image.arch}`;
}

/**
 * Which published images to hide and which to delete: per series, the newest `keep` serials stay; older ones
 * are hidden first (where the target hides) and deleted once hidden for the grace period. Images of a release
 * past end of life follow the `eol` policy instead when it is not `keep`. Pinned images (protected, tagged to
 * keep) are never touched. Pure.
 */
export function decideRetention(published: readonly PublishedImage[], policy: RetentionPolicy): RetentionDecision {
  const decision: RetentionDecision = { hide: [], remove: [], spared: [], endOfLife: new Set() };
  const eolPolicy = policy.eol?.policy ?? 'keep';
  const retire = (image: PublishedImage, hideOnly: boolean): void => {
    if (image.pinned) {
      decision.spared.push({ image, reason: 'pinned' });
    } else if (!policy.hidesBeforeDelete) {
      if (!hideOnly) decision.remove.push(image);
    } else if (image.hiddenAtMs === undefined) {
      decision.hide.push(image);
    } else if (hideOnly) {
      // already hidden: an end-of-life image under `eol: hide` stays hidden
    } else if (policy.nowMs - image.hiddenAtMs >= policy.hideGraceMs) {
      decision.remove.push(image);
    } else {
      decision.spared.push({ image, reason: 'grace' });
    }
  };
  const series = new Map<string, PublishedImage[]>();
  for (const image of published) {
    const list = series.get(seriesOf(image)) ?? [];
    list.push(image);
    series.set(seriesOf(image), list);
  }
  for (const images of series.values()) {
    const serials = [...new Set(images.map((i) => i.serial))].sort((a, b) => compareSerials(b, a));
    const kept = new Set(serials.slice(0, policy.keep));
    for (const image of images) {
      const endOfLife = eolPolicy !== 'keep' && policy.eol!.releases.has(image.release);
      if (kept.has(image.serial) && !endOfLife) continue;
      const hides = decision.hide.length;
      const removes = decision.remove.length;
      // Past keep, an image goes whatever the eol policy; within keep, `eol: hide` only hides it.
      retire(image, endOfLife && eolPolicy === 'hide' && kept.has(image.serial));
      if (endOfLife && (decision.hide.length > hides || decision.remove.length > removes)) decision.endOfLife.add(image);
    }
  }
  return decision;
}
