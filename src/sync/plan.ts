import { compareSerials, imageKey, type UpstreamImage } from '../image.js';
import { streamId } from '../source/streams.js';
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
  /**
   * Target names, each with the stream ids it carries (undefined: every stream) and the releases it must not
   * get (end of life on a target whose `eol:` policy hides or deletes them).
   */
  targets: ReadonlyArray<{ name: string; streams?: readonly string[]; excludeReleases?: ReadonlySet<string> }>;
  /** Keys of images whose verified file is present in the cache. */
  cachedKeys: ReadonlySet<string>;
}

/**
 * Decide the work of a cycle: every upstream image not yet published to every target that carries its
 * stream, in a stable order (channel, variant, release, arch, serial): one action, so one download, per
 * image whatever the number of targets. Pure: no I/O, same input -> same plan.
 */
export function planSync({ upstream, images, targets, cachedKeys }: PlanInput): SyncAction[] {
  const byKey = new Map(images.map((r) => [r.key, r]));
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
    actions.push({ image, key, download: !cached, publishTo });
  }
  return actions.sort((a, b) => a.key.localeCompare(b.key));
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
