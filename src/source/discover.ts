import { HttpStatusError, SyncError, describeError } from '../errors.js';
import type { Logger } from '../log.js';
import { compareSerials, type Arch, type Channel, type UpstreamImage, type Variant } from './image.js';
import { parseListing } from './listing.js';
import { endOfLife } from './end-of-life.js';
import type { ReleaseName } from './releases.js';
import { selectSerials, serialsToRead, type SerialReading } from './select-serials.js';
import { parseSha256Sums } from './sha256sums.js';
import { verifyDetachedSignature, type Keyring } from './signature.js';
import type { StreamSelection } from './streams.js';

/**
 * The keyring, loaded when first needed, with an id that changes when its file does. `verifiedSums`
 * remembers which SHA256SUMS verified with which keyring id, so a list and signature that are both
 * unchanged (304) since they verified are not verified again.
 */
export interface KeyringSource {
  id: string;
  load(): Promise<Keyring>;
  verifiedSums?: { get(url: string): string | undefined; set(url: string, verifiedWith: string): void };
}

/** GET a small text resource, answering from a cache when the server says it is unchanged. */
export type CachedGet = (url: string) => Promise<{ body: Buffer; changed: boolean; /** The server's Last-Modified, when it sent one. */ lastModified?: string }>;

export interface DiscoverOptions {
  sourceUrl: string;
  streams: readonly StreamSelection[];
  /** Newest serials wanted per stream/release/arch. */
  keep: number;
  /** Verify SHA256SUMS.gpg with this keyring (loaded on first need); undefined means signature checking is off. */
  keyring: KeyringSource | undefined;
  get: CachedGet;
  log: Logger;
  /** Clock of the end-of-life checks. */
  nowMs: number;
}

/** Where a release/stream stands: identity plus what was found. */
export interface StreamRelease {
  stream: string;
  channel: Channel;
  variant: Variant;
  release: string;
}

/** A configured release past its end of life (by the table, the source, or an `END OF LIFE` listing). */
export interface EolRelease extends StreamRelease {
  /** End of standard support (YYYY-MM-DD) when known. */
  eol?: string;
  /** The release's folder answers 404: upstream removed it. */
  gone: boolean;
  /** False for dailies: images of an end-of-life daily are not imported. */
  imported: boolean;
}

/** A configured arch that no recent serial has: the run is `incomplete`. */
export interface IncompleteArch extends StreamRelease {
  arch: Arch;
  reason: string;
}

export interface DiscoveryResult {
  images: UpstreamImage[];
  /** Release/streams that could not be read this cycle, with the reason. */
  failures: Array<StreamRelease & { error: unknown }>;
  incomplete: IncompleteArch[];
  eol: EolRelease[];
}

/** The folder listing a release's serials, per channel and variant (see docs/cloud-images layout). */
export function seriesUrl(sourceUrl: string, channel: Channel, variant: Variant, codename: string): string {
  return `${streamRootUrl(sourceUrl, channel, variant)}${codename}/`;
}

/** The folder listing a stream's releases, with their descriptions (`... [END OF LIFE - for reference only]`). */
export function streamRootUrl(sourceUrl: string, channel: Channel, variant: Variant): string {
  const root = sourceUrl.replace(/\/+$/, '');
  const prefix = variant === 'minimal' ? `${root}/minimal` : root;
  if (channel === 'release') return `${prefix}/releases/`;
  return variant === 'minimal' ? `${prefix}/daily/` : `${prefix}/`;
}

const SERIAL_DIR_RE: Record<Channel, RegExp> = {
  release: /^release-(\d{8}(?:\.\d+)?)$/,
  daily: /^(\d{8}(?:\.\d+)?)$/,
};

const END_OF_LIFE_RE = /END OF LIFE/i;

/** For each stream and release: the newest `keep` signed serials of each wanted arch. */
export async function discoverImages(options: DiscoverOptions): Promise<DiscoveryResult> {
  const result: DiscoveryResult = { images: [], failures: [], incomplete: [], eol: [] };
  for (const stream of options.streams) {
    const eolInListing = await releasesMarkedEol(options, stream);
    for (const release of stream.releases) {
      const where: StreamRelease = { stream: stream.id, channel: stream.channel, variant: stream.variant, release: release.codename };
      const log = options.log.child({ release: release.codename, channel: stream.channel, variant: stream.variant });
      const verdict = endOfLife(release.codename, stream.channel, options.nowMs, { markedEol: eolInListing.has(release.codename) });
      const eol: EolRelease | undefined = verdict.pastEol
        ? { ...where, ...(verdict.eol ? { eol: verdict.eol } : {}), gone: false, imported: verdict.imported } : undefined;
      try {
        if (eol && !eol.imported) continue;
        const found = await discoverRelease(options, stream, release, log);
        result.images.push(...found.images.map((i) => (verdict.eol ? { ...i, eol: verdict.eol } : i)));
        result.incomplete.push(...found.missing.map((arch) => ({ ...where, arch, reason: `no ${arch} image in serials ${found.serialsRead.join(', ')}` })));
      } catch (error) {
        if (eol && (isNotFound(error) || (error instanceof SyncError && error.code === 'LISTING_NO_SERIALS'))) {
          eol.gone = true;
          continue;
        }
        log.error({ event: 'source.release.failed', err: describeError(error), errCode: (error as { code?: string }).code }, `cannot read ${release.codename}: ${describeError(error)}`);
        result.failures.push({ ...where, error });
      } finally {
        if (eol) {
          result.eol.push(eol);
          log.warn({ event: 'source.release.eol', eol: eol.eol, gone: eol.gone, imported: eol.imported },
            `${release.codename} (${stream.id}) is past its end of life${eol.eol ? ` (${eol.eol})` : ''}${eol.gone ? ' and gone upstream' : ''}${eol.imported ? '' : '; its dailies are not imported'}: move to a supported release`);
        }
      }
    }
  }
  return result;
}

/**
 * Codenames whose row in the stream's root listing says `END OF LIFE`. The descriptions are a hint beside the
 * table: a mirror without them (or a root that cannot be read) marks nothing.
 */
async function releasesMarkedEol(options: DiscoverOptions, stream: StreamSelection): Promise<Set<string>> {
  const url = streamRootUrl(options.sourceUrl, stream.channel, stream.variant);
  try {
    const { body } = await options.get(url);
    return new Set(parseListing(body.toString('utf8'), url)
      .filter((e) => e.isDirectory && e.description !== undefined && END_OF_LIFE_RE.test(e.description))
      .map((e) => e.name));
  } catch (err) {
    options.log.debug({ event: 'source.root.unreadable', url, err: describeError(err) }, `no release descriptions from ${url}: ${describeError(err)}`);
    return new Set();
  }
}

interface ReleaseFound {
  images: UpstreamImage[];
  missing: Arch[];
  serialsRead: string[];
}

async function discoverRelease(options: DiscoverOptions, stream: StreamSelection, release: ReleaseName, log: Logger): Promise<ReleaseFound> {
  const listingUrl = seriesUrl(options.sourceUrl, stream.channel, stream.variant, release.codename);
  const { body } = await options.get(listingUrl);
  const serialDirs = parseListing(body.toString('utf8'), listingUrl)
    .filter((e) => e.isDirectory)
    .map((e) => ({ serial: SERIAL_DIR_RE[stream.channel].exec(e.name)?.[1], url: e.url, modified: e.modified }))
    .filter((e): e is { serial: string; url: string; modified: Date | undefined } => e.serial !== undefined)
    .sort((a, b) => compareSerials(b.serial, a.serial));
  if (serialDirs.length === 0) {
    throw new SyncError('LISTING_NO_SERIALS', `${listingUrl} lists no serial folders`,
      `check source.url, the stream's channel and that ${release.codename} is published there`, { retryable: true });
  }
  const readings: SerialReading[] = [];
  const images: UpstreamImage[] = [];
  const toRead = serialDirs.slice(0, serialsToRead(options.keep));
  for (const dir of toRead) {
    const read = await readSerial(options, stream, release, dir.serial, dir.url, dir.modified, log);
    readings.push(read.reading);
    images.push(...read.images);
    if (selectSerials(readings, stream.arches, options.keep).done) break;
  }
  const selection = selectSerials(readings, stream.arches, options.keep);
  if (!readings.some((r) => r.state === 'ok')) {
    const causes = readings.map((r) => `${r.serial}: ${r.state === 'incomplete' ? r.reason : 'gone (404)'}`).join('; ');
    throw new SyncError('SERIALS_NOT_READY', `none of the ${readings.length} newest serials under ${listingUrl} is complete upstream (${causes})`,
      'upstream is mid-publication or pruning; retried next cycle', { retryable: true });
  }
  const picked = images.filter((i) => selection.picks.get(i.arch)?.includes(i.serial));
  const newest = readings[0];
  for (const arch of stream.arches) {
    const from = selection.picks.get(arch)?.[0];
    if (from && newest && from !== newest.serial) {
      log.info({ event: 'source.arch.older', arch, serial: from, newestSerial: newest.serial },
        `${arch} comes from ${from}: the newest serial ${newest.serial} does not have it (yet)`);
    }
  }
  const readSerials = readings.map((r) => r.serial);
  for (const arch of selection.missing) {
    log.warn({ event: 'source.arch.missing', arch, serials: readSerials, url: listingUrl },
      `no ${arch} image in the ${readSerials.length} newest serials of ${release.codename} (${stream.id}): ${readSerials.join(', ')}`);
  }
  return { images: picked, missing: selection.missing, serialsRead: readSerials };
}

/** Read one serial's (signed) SHA256SUMS; a 404 is told apart as "gone" or "not complete upstream". */
async function readSerial(
  options: DiscoverOptions, stream: StreamSelection, release: ReleaseName, serial: string, dirUrl: string, listedAt: Date | undefined, log: Logger,
): Promise<{ reading: SerialReading; images: UpstreamImage[] }> {
  const sumsUrl = new URL('SHA256SUMS', dirUrl).href;
  let sums: Awaited<ReturnType<CachedGet>>;
  try {
    sums = await options.get(sumsUrl);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    return { reading: await notThere(options, serial, dirUrl, 'SHA256SUMS', log), images: [] };
  }
  const keyring = options.keyring;
  // A list unchanged (304) since it verified with this keyring needs no signature: its bytes are the ones
  // checked. The signature is fetched only with a new list (or keyring), saving a third of a no-op's requests.
  const earlier = keyring && !sums.changed ? keyring.verifiedSums?.get(sumsUrl) : undefined;
  if (keyring && !earlier?.startsWith(`${keyring.id}:`)) {
    let signature: { body: Buffer; changed: boolean };
    try {
      signature = await options.get(`${sumsUrl}.gpg`);
    } catch (err) {
      if (!isNotFound(err)) throw err;
      return { reading: await notThere(options, serial, dirUrl, 'SHA256SUMS.gpg', log), images: [] };
    }
    const fingerprint = await verifyDetachedSignature(sums.body, signature.body, await keyring.load(), `${sumsUrl}.gpg`);
    keyring.verifiedSums?.set(sumsUrl, `${keyring.id}:${fingerprint}`);
    log.info({ event: 'source.sums.verified', serial, url: sumsUrl, fingerprint }, `SHA256SUMS of ${serial} signed by ${fingerprint}`);
  }
  const checksums = parseSha256Sums(sums.body.toString('utf8'), sumsUrl);
  const publishedAt = upstreamTime(sums.lastModified, listedAt);
  const images: UpstreamImage[] = [];
  for (const arch of stream.arches) {
    const found = findImageFile(checksums, stream.channel, stream.variant, release, arch);
    if (!found) continue;
    images.push({
      channel: stream.channel, variant: stream.variant, release: release.codename, version: found.version,
      arch, serial, fileName: found.fileName, url: new URL(found.fileName, dirUrl).href, sha256: found.sha256,
      signed: options.keyring !== undefined, ...(publishedAt ? { publishedAt } : {}),
    });
  }
  const present = new Set(images.map((i) => i.arch));
  const absent = stream.arches.filter((a) => !present.has(a));
  if (absent.length > 0 && present.size > 0) {
    log.info({ event: 'source.serial.partial', serial, arches: [...present], missingArches: absent, url: sumsUrl },
      `serial ${serial} lists ${[...present].join(', ')} but not ${absent.join(', ')}`);
  }
  return { reading: { serial, state: 'ok', arches: present }, images };
}

/** A file of the serial answered 404: is the serial gone, or not complete upstream yet? Its folder tells. */
async function notThere(options: DiscoverOptions, serial: string, dirUrl: string, file: string, log: Logger): Promise<SerialReading> {
  try {
    await options.get(dirUrl);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    log.warn({ event: 'source.serial.pruned', serial, url: dirUrl }, `serial ${serial} is gone upstream, trying the previous one`);
    return { serial, state: 'gone' };
  }
  const reason = `no ${file} yet (not complete upstream)`;
  log.warn({ event: 'source.serial.incomplete', serial, url: new URL(file, dirUrl).href, missing: file },
    `serial ${serial} has ${reason}; using older serials this cycle`);
  return { serial, state: 'incomplete', reason };
}

function isNotFound(err: unknown): boolean {
  return err instanceof HttpStatusError && err.status === 404;
}

/**
 * When the serial appeared upstream: its SHA256SUMS's Last-Modified (to the second, and the moment the
 * serial became complete), else the folder's minute in the listing. Undefined when neither can be read.
 */
function upstreamTime(lastModified: string | undefined, listedAt: Date | undefined): string | undefined {
  const fromHeader = lastModified ? Date.parse(lastModified) : Number.NaN;
  if (Number.isFinite(fromHeader)) return new Date(fromHeader).toISOString();
  return listedAt && Number.isFinite(listedAt.getTime()) ? listedAt.toISOString() : undefined;
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
