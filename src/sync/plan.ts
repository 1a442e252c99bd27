import { compareSerials, imageKey, type UpstreamImage } from '../image.js';
import { streamId } from '../source/streams.js';
import type { ImageRecord } from '../state/store.js';
import { publishedImageKey, type PublishedImage } from '../targets/target.js';

/**
 * One image to bring to some targets: from the verified copy in the cache, else by adopting the copies targets
 * already hold and downloading it for the rest.
 */
export interface SyncAction {
  image: UpstreamImage;
  key: string;
  /** A verified copy is in the cache: every target of `publishTo` gets it from there. */
  cached: boolean;
  /** Not cached, and some target of `publishTo` holds no copy to adopt: the image is downloaded. */
  download: boolean;
  publishTo: string[];
  /**
   * Of `publishTo` (when not cached), the targets whose listing shows a complete copy of these bytes (same
   * sha256): each adopts it before any download, and one that turns out not to hold it after all gets the download.
   */
  adopt: string[];
}

export interface PlanInput {
  upstream: readonly UpstreamImage[];
  images: readonly ImageRecord[];
  /**
   * Target names, each with the stream ids it carries (undefined: every stream) and the releases it must not
   * get (end of life on a target whose `eol:` policy hides or deletes them).
   */
  targets: ReadonlyArray<{ name: string; streams?: readonly string[]; excludeReleases?: ReadonlySet<string> }>;
  /** Keys of images whose verified file is present in the cache. */
  cachedKeys: ReadonlySet<string>;
  /**
   * What targets that can adopt a copy they hold (`Target.adoptHeld`) list at the start of the cycle, by target name;
   * their complete copies with a sha256 are adopted instead of downloaded.
   */
  held?: ReadonlyMap<string, readonly PublishedImage[]>;
}

/**
 * Decide the work of a cycle: every upstream image not yet published to every target that carries its
 * stream, in a stable order (channel, variant, release, arch, serial): one action, so one download, per
 * image whatever the number of targets. Pure: no I/O, same input -> same plan.
 */
export function planSync({ upstream, images, targets, cachedKeys, held }: PlanInput): SyncAction[] {
  const byKey = new Map(images.map((r) => [r.key, r]));
  const copies = heldCopies(held);
  const actions: SyncAction[] = [];
  for (const image of upstream) {
    const key = imageKey(image);
    const record = byKey.get(key);
    const sameBytes = record !== undefined && record.sha256 === image.sha256;
    const stream = streamId(image);
    const carriers = targets.filter((t) => (!t.streams || t.streams.includes(stream)) && !t.excludeReleases?.has(image.release));
    const publishTo = carriers.map((t) => t.name).filter((t) => {
      const pub = sameBytes ? record.publications[t] : undefined;
      return !(pub && (pub.state === 'published' || pub.state === 'hidden'));
    });
    if (publishTo.length === 0) continue;
    const cached = sameBytes && record.state === 'verified' && cachedKeys.has(key);
    const adopt = cached ? [] : publishTo.filter((t) => copies.get(t)?.has(`${key} ${image.sha256}`));
    actions.push({ image, key, cached, download: !cached && adopt.length < publishTo.length, publishTo, adopt });
  }
  return actions.sort((a, b) => a.key.localeCompare(b.key));
}

/** `key sha256` of every complete copy each target lists with its sha256. */
function heldCopies(held: PlanInput['held']): Map<string, Set<string>> {
  const copies = new Map<string, Set<string>>();
  for (const [target, listing] of held ?? []) {
    const complete = listing.filter((p) => p.complete === true && p.sha256 !== undefined);
    copies.set(target, new Set(complete.map((p) => `${publishedImageKey(p)} ${p.sha256}`)));
  }
  return copies;
}

/** An upstream image older than what a target already has of its series: a rollback, refused. */
export interface RefusedRollback {
  image: UpstreamImage;
  /** The newest serial of the series published (or hidden) on some target. */
  publishedSerial: string;
}

/**
 * Upstream offering an older serial as its newest (a replayed, still validly signed SHA256SUMS, or a mirror
 * gone back in time) must never displace a newer published serial. With `keep` above 1 discovery also offers
 * the serials before the newest (the rollback images, rightly): only a series whose NEWEST offered serial is
 * older than the published one is a rollback, and then none of its images is taken. Pure: splits what
 * discovery found into the images to plan with and the refused ones.
 */
export function refuseRollbacks(
  upstream: readonly UpstreamImage[], images: readonly ImageRecord[],
): { accepted: UpstreamImage[]; refused: RefusedRollback[] } {
  const newest = new Map<string, string>();
  for (const r of images) {
    if (!Object.values(r.publications).some((p) => p.state === 'published' || p.state === 'hidden')) continue;
    const series = seriesKey(r);
    const known = newest.get(series);
    if (known === undefined || compareSerials(r.serial, known) > 0) newest.set(series, r.serial);
  }
  const offered = new Map<string, string>();
  for (const image of upstream) {
    const series = seriesKey(image);
    const known = offered.get(series);
    if (known === undefined || compareSerials(image.serial, known) > 0) offered.set(series, image.serial);
  }
  const accepted: UpstreamImage[] = [];
  const refused: RefusedRollback[] = [];
  for (const image of upstream) {
    const series = seriesKey(image);
    const publishedSerial = newest.get(series);
    if (publishedSerial !== undefined && compareSerials(offered.get(series)!, publishedSerial) < 0) refused.push({ image, publishedSerial });
    else accepted.push(image);
  }
  return { accepted, refused };
}

function seriesKey(i: Pick<UpstreamImage, 'channel' | 'variant' | 'release' | 'arch'>): string {
  return `${i.channel}/${i.variant}/${i.release}/${i.arch}`;
}
