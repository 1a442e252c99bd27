import { HttpStatusError, SyncError, describeError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { compareSerials, type Arch, type Channel, type UpstreamImage, type Variant } from '../../image.js';
import type { ReleaseName } from '../releases.js';
import { parseSha256Sums } from './sha256sums.js';
import type { KeyringSource } from '../keyring.js';
import { verifyDetachedSignature } from '../signature.js';
import type { CachedGet, CachedText, DiscoveryResult } from '../source.js';

export interface DiscoverOptions {
  sourceUrl: string;
  channel: Channel;
  variant: Variant;
  releases: readonly ReleaseName[];
  arches: readonly Arch[];
  /** Verify SHA256SUMS.gpg with this keyring (loaded on first need); undefined means signature checking is off. */
  keyring: KeyringSource | undefined;
  get: CachedGet;
  log: Logger;
}

/** How many serials, newest first, to try when the newest has been pruned between listing and fetch. */
const SERIALS_TO_TRY = 3;

/** The folder listing a release's serials below the source root, per channel and variant: `releases/noble/`. */
export function seriesPath(channel: Channel, variant: Variant, codename: string): string {
  const prefix = variant === 'minimal' ? 'minimal/' : '';
  if (channel === 'release') return `${prefix}releases/${codename}/`;
  return variant === 'minimal' ? `${prefix}daily/${codename}/` : `${prefix}${codename}/`;
}

/** The folder listing a release's serials, per channel and variant (see docs/cloud-images layout). */
export function seriesUrl(sourceUrl: string, channel: Channel, variant: Variant, codename: string): string {
  return `${sourceUrl.replace(/\/+$/, '')}/${seriesPath(channel, variant, codename)}`;
}

const SERIAL_DIR_RE: Record<Channel, RegExp> = {
  release: /^release-(\d{8}(?:\.\d+)?)$/,
  daily: /^(\d{8}(?:\.\d+)?)$/,
};

/** Find the newest signed serial of each wanted release and the wanted arches' images in it. */
export async function discoverImages(options: DiscoverOptions): Promise<DiscoveryResult> {
  const result: DiscoveryResult = { images: [], failures: [] };
  for (const release of options.releases) {
    const log = options.log.child({ release: release.codename, channel: options.channel, variant: options.variant });
    try {
      const images = await discoverRelease(options, release, log);
      result.images.push(...images);
    } catch (error) {
      log.error({ event: 'source.release.failed', err: describeError(error), errCode: (error as { code?: string }).code }, `cannot read ${release.codename}: ${describeError(error)}`);
      result.failures.push({ release: release.codename, error });
    }
  }
  return result;
}

async function discoverRelease(options: DiscoverOptions, release: ReleaseName, log: Logger): Promise<UpstreamImage[]> {
  const listingUrl = seriesUrl(options.sourceUrl, options.channel, options.variant, release.codename);
  const serialDirs = await serialFolders(await options.get(listingUrl), listingUrl, options.channel);
  if (serialDirs.length === 0) {
    throw new SyncError('LISTING_NO_SERIALS', `${listingUrl} lists no serial folders`,
      `check source.url, source.channel and that ${release.codename} is published there`, { retryable: true });
  }
  for (const dir of serialDirs.slice(0, SERIALS_TO_TRY)) {
    try {
      return await readSerial(options, release, dir, log);
    } catch (err) {
      if (!(err instanceof HttpStatusError && err.status === 404)) throw err;
      log.warn({ event: 'source.serial.pruned', serial: dir.serial, url: err.url }, `serial ${dir.serial} is gone upstream, trying the previous one`);
    }
  }
  throw new SyncError('SERIALS_GONE', `the ${SERIALS_TO_TRY} newest serials under ${listingUrl} have no SHA256SUMS`,
    'upstream is mid-publication or pruned; retried next cycle', { retryable: true });
}

/** A serial folder of a release listing, newest first; `modified` is its date there (ISO 8601). */
interface SerialFolder {
  serial: string;
  url: string;
  modified?: string | undefined;
}

/** Version of the remembered form: a change in how folders are read makes older ones be read again. */
const FOLDERS_FORMAT = 1;

/**
 * The serial folders of a release listing, newest first. A listing unchanged since it was read (304) is not
 * parsed again: its folders are remembered beside the cached page, and the HTML parser is not even loaded.
 */
async function serialFolders(listing: CachedText, listingUrl: string, channel: Channel): Promise<SerialFolder[]> {
  const remembered = listing.changed ? undefined : rememberedFolders(listing.parsed?.get());
  if (remembered) return remembered;
  const { parseListing } = await import('./parse-listing.js');
  const folders = parseListing(listing.body.toString('utf8'), listingUrl)
    .filter((e) => e.isDirectory)
    .map((e) => ({ serial: SERIAL_DIR_RE[channel].exec(e.name)?.[1], url: e.url, modified: e.modified?.toISOString() }))
    .filter((e): e is { serial: string; url: string; modified: string | undefined } => e.serial !== undefined)
    .sort((a, b) => compareSerials(b.serial, a.serial));
  listing.parsed?.set(JSON.stringify({ format: FOLDERS_FORMAT, folders }));
  return folders;
}

function rememberedFolders(json: string | undefined): SerialFolder[] | undefined {
  if (json === undefined) return undefined;
  try {
    const value = JSON.parse(json) as { format?: unknown; folders?: unknown };
    if (value.format !== FOLDERS_FORMAT || !Array.isArray(value.folders)) return undefined;
    const folders = value.folders as Array<Record<string, unknown>>;
    const valid = folders.every((f) => typeof f.serial === 'string' && typeof f.url === 'string' && (f.modified === undefined || typeof f.modified === 'string'));
    return valid ? (folders as unknown as SerialFolder[]) : undefined;
  } catch {
    return undefined;
  }
}

async function readSerial(options: DiscoverOptions, release: ReleaseName, folder: SerialFolder, log: Logger): Promise<UpstreamImage[]> {
  const { serial, url: dirUrl, modified: listedAt } = folder;
  // The folder's path below the source root: its name is the serial's, in the layout (see SERIAL_DIR_RE).
  const dirPath = `${seriesPath(options.channel, options.variant, release.codename)}${options.channel === 'release' ? `release-${serial}` : serial}/`;
  const sumsUrl = new URL('SHA256SUMS', dirUrl).href;
  const sums = await options.get(sumsUrl);
  const keyring = options.keyring;
  // What the checksums were verified with, for targets that republish it: the signature's bytes stay in the
  // response cache from the cycle that verified them, also when this cycle does not fetch it again.
  const signedBy = [{ url: sumsUrl, path: `${dirPath}SHA256SUMS` }];
  if (keyring) signedBy.push({ url: `${sumsUrl}.gpg`, path: `${dirPath}SHA256SUMS.gpg` });
  // A list unchanged (304) since it verified with this keyring needs no signature: its bytes are the ones
  // checked. The signature is fetched only with a new list (or keyring), saving a third of a no-op's requests.
  const earlier = keyring && !sums.changed ? keyring.verifiedSums?.get(sumsUrl) : undefined;
  if (keyring && !earlier?.startsWith(`${keyring.id}:`)) {
    const signature = await options.get(`${sumsUrl}.gpg`);
    const { fingerprint, keyExpiredAt } = await verifyDetachedSignature(sums.body, signature.body, await keyring.load(), `${sumsUrl}.gpg`);
    keyring.verifiedSums?.set(sumsUrl, `${keyring.id}:${fingerprint}`);
    log.info({ event: 'source.sums.verified', serial, url: sumsUrl, fingerprint }, `SHA256SUMS of ${serial} signed by ${fingerprint}`);
    if (keyExpiredAt) {
      log.warn({ event: 'source.signature.key_expired', serial, url: `${sumsUrl}.gpg`, fingerprint, keyExpiredAt: keyExpiredAt.toISOString() },
        `SHA256SUMS of ${serial} was signed by ${fingerprint} before that key expired (${keyExpiredAt.toISOString()}); accepted as gpgv does — update source.keyring to the current Ubuntu cloud-image key`);
    }
  }
  const checksums = parseSha256Sums(sums.body.toString('utf8'), sumsUrl);
  const publishedAt = upstreamTime(sums.lastModified, listedAt);
  const images: UpstreamImage[] = [];
  for (const arch of options.arches) {
    const found = findImageFile(checksums, options.channel, options.variant, release, arch);
    if (!found) {
      log.warn({ event: 'source.arch.missing', serial, arch, url: sumsUrl }, `no ${arch} image listed in ${sumsUrl}`);
      continue;
    }
    images.push({
      channel: options.channel, variant: options.variant, release: release.codename, version: found.version,
      arch, serial, fileName: found.fileName, url: new URL(found.fileName, dirUrl).href, sha256: found.sha256,
      signed: options.keyring !== undefined, upstreamPath: `${dirPath}${found.fileName}`, signedBy,
      ...(publishedAt ? { publishedAt } : {}),
    });
  }
  return images;
}

/**
 * When the serial appeared upstream: its SHA256SUMS's Last-Modified (to the second, and the moment the
 * serial became complete), else the folder's minute in the listing. Undefined when neither can be read.
 */
function upstreamTime(lastModified: string | undefined, listedAt: string | undefined): string | undefined {
  for (const text of [lastModified, listedAt]) {
    const ms = text ? Date.parse(text) : Number.NaN;
    if (Number.isFinite(ms)) return new Date(ms).toISOString();
  }
  return undefined;
}

/**
 * The image file of an arch in a SHA256SUMS: `ubuntu-<version>-<variant>-cloudimg-<arch>.img` on the release
 * channel, `<codename>-<variant>-cloudimg-<arch>.img` on daily; the `-disk1.img` form of releases up to 16.04.
 * A release missing from our codename table still resolves: its file names carry the version.
 */
function findImageFile(
  checksums: Map<string, string>, channel: Channel, variant: Variant, release: ReleaseName, arch: Arch,
): { fileName: string; sha256: string; version: string } | undefined {
  const stem = channel === 'release' ? `ubuntu-(\\d{2}\\.\\d{2})` : `(${release.codename})`;
  const re = new RegExp(`^${stem}-${variant}-cloudimg-${arch}(?:-disk1)?\\.img$`);
  const candidates = [...checksums.entries()]
    .map(([fileName, sha256]) => ({ fileName, sha256, match: re.exec(fileName) }))
    .filter((c) => c.match && (channel !== 'release' || !release.version || c.match[1] === release.version))
    .sort((a, b) => a.fileName.length - b.fileName.length);
  const best = candidates[0];
  if (!best?.match) return undefined;
  const version = channel === 'release' ? best.match[1]! : release.version;
  return { fileName: best.fileName, sha256: best.sha256, version };
}
