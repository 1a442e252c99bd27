import { imageKey, type UpstreamImage } from '../image.js';
import type { ImageRecord } from '../state/store.js';

/** One image to bring to some targets, downloading it first unless a verified copy is in the cache. */
export interface SyncAction {
  image: UpstreamImage;
  key: string;
  download: boolean;
  publishTo: string[];
}

export interface PlanInput {
  upstream: readonly UpstreamImage[];
  images: readonly ImageRecord[];
  targets: readonly string[];
  /** Keys of images whose verified file is present in the cache. */
  cachedKeys: ReadonlySet<string>;
}

/**
 * Decide the work of a cycle: every upstream image not yet published to every target, in a stable order
 * (release, arch, serial). Pure: no I/O, same input -> same plan.
 */
export function planSync({ upstream, images, targets, cachedKeys }: PlanInput): SyncAction[] {
  const byKey = new Map(images.map((r) => [r.key, r]));
  const actions: SyncAction[] = [];
  for (const image of upstream) {
    const key = imageKey(image);
    const record = byKey.get(key);
    const sameBytes = record !== undefined && record.sha256 === image.sha256;
    const publishTo = targets.filter((t) => {
      const pub = sameBytes ? record.publications[t] : undefined;
      return !(pub && (pub.state === 'published' || pub.state === 'hidden'));
    });
    if (publishTo.length === 0) continue;
    const cached = sameBytes && record.state === 'verified' && cachedKeys.has(key);
    actions.push({ image, key, download: !cached, publishTo });
  }
  return actions.sort((a, b) => a.key.localeCompare(b.key));
}
