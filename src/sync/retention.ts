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
}

export interface RetentionDecision {
  hide: PublishedImage[];
  remove: PublishedImage[];
  /** Images past `keep` that stay, and why (pinned, hidden within grace). */
  spared: Array<{ image: PublishedImage; reason: 'pinned' | 'grace' }>;
}

function seriesOf(image: PublishedImage): string {
  return `${image.channel}/${image.variant}/${image.release}/${image.arch}`;
}

/**
 * Which published images to hide and which to delete: per series, the newest `keep` serials stay; older ones
 * are hidden first (where the target hides) and deleted once hidden for the grace period. Pinned images
 * (protected, tagged to keep) are never touched. Pure.
 */
export function decideRetention(published: readonly PublishedImage[], policy: RetentionPolicy): RetentionDecision {
  const decision: RetentionDecision = { hide: [], remove: [], spared: [] };
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
      if (kept.has(image.serial)) continue;
      if (image.pinned) {
        decision.spared.push({ image, reason: 'pinned' });
      } else if (!policy.hidesBeforeDelete) {
        decision.remove.push(image);
      } else if (image.hiddenAtMs === undefined) {
        decision.hide.push(image);
      } else if (policy.nowMs - image.hiddenAtMs >= policy.hideGraceMs) {
        decision.remove.push(image);
      } else {
        decision.spared.push({ image, reason: 'grace' });
      }
    }
  }
  return decision;
}
