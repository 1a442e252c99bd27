import { HttpStatusError, SyncError, describeError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { compareSerials, type Arch, type Channel, type UpstreamImage, type Variant } from '../../image.js';
import { endOfLife } from '../end-of-life.js';
import type { ReleaseName } from '../releases.js';
import { selectSerials, serialsToRead, type SerialReading } from '../select-serials.js';
import { parseSha256Sums } from './sha256sums.js';
import type { KeyringSource } from '../keyring.js';
import { verifyDetachedSignature } from '../signature.js';
import type { CachedGet, CachedText, DiscoveryResult, EolRelease, StreamRelease } from '../source.js';
import type { StreamSelection } from '../streams.js';

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

/** The folder listing a release's serials below the source root, per channel and variant: `releases/noble/`. */
export function seriesPath(channel: Channel, variant: Variant, codename: string): string {
  return `${streamRootPath(channel, variant)}${codename}/`;
}

/** The folder listing a stream's releases below the source root, with their descriptions (`... [END OF LIFE - for reference only]`). */
export function streamRootPath(channel: Channel, variant: Variant): string {
  const prefix = variant === 'minimal' ? 'minimal/' : '';
  if (channel === 'release') return `${prefix}releases/`;
  return variant === 'minimal' ? `${prefix}daily/` : prefix;
}

/** The folder listing a release's serials, per channel and variant (see docs/cloud-images layout). */
export function seriesUrl(sourceUrl: string, channel: Channel, variant: Variant, codename: string): string {
  return `${sourceUrl.replace(/\/+$/, '')}/${seriesPath(channel, variant, codename)}`;
}

/** The folder listing a stream's releases. */
export function streamRootUrl(sourceUrl: string, channel: Channel, variant: Variant): string {
  return `${sourceUrl.replace(/\/+$/, '')}/${streamRootPath(channel, variant)}`;
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
        result.images.push(...found.images.map((i) => (verdict.eol ? { ...i, supportEol: verdict.eol } : i)));
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
    const page = await options.get(url);
    // Like the release listings: a page unchanged since it was read is not parsed again.
    const remembered = page.changed ? undefined : rememberedEol(page.parsed?.get());
    if (remembered) return remembered;
    const { parseListing } = await import('./parse-listing.js');
    const marked = parseListing(page.body.toString('utf8'), url)
      .filter((e) => e.isDirectory && e.description !== undefined && END_OF_LIFE_RE.test(e.description))
      .map((e) => e.name);
    page.parsed?.set(JSON.stringify({ format: EOL_FORMAT, marked }));
    return new Set(marked);
  } catch (err) {
    options.log.debug({ event: 'source.root.unreadable', url, err: describeError(err) }, `no release descriptions from ${url}: ${describeError(err)}`);
    return new Set();
  }
}

const EOL_FORMAT = 1;

function rememberedEol(json: string | undefined): Set<string> | undefined {
  if (json === undefined) return undefined;
  try {
    const value = JSON.parse(json) as { format?: unknown; marked?: unknown };
    if (value.format !== EOL_FORMAT || !Array.isArray(value.marked) || !value.marked.every((m) => typeof m === 'string')) return undefined;
    return new Set(value.marked as string[]);
  } catch {
    return undefined;
  }
}

interface ReleaseFound {
  images: UpstreamImage[];
  missing: Arch[];
  serialsRead: string[];
}

async function discoverRelease(options: DiscoverOptions, stream: StreamSelection, release: ReleaseName, log: Logger): Promise<ReleaseFound> {
  const listingUrl = seriesUrl(options.sourceUrl, stream.channel, stream.variant, release.codename);
  const serialDirs = await serialFolders(await options.get(listingUrl), listingUrl, stream.channel);
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

/** Read one serial's (signed) SHA256SUMS; a 404 is told apart as "gone" or "not complete upstream". */
async function readSerial(
  options: DiscoverOptions, stream: StreamSelection, release: ReleaseName, serial: string, dirUrl: string, listedAt: string | undefined, log: Logger,
): Promise<{ reading: SerialReading; images: UpstreamImage[] }> {
  // The folder's path below the source root: its name is the serial's, in the layout (see SERIAL_DIR_RE).
  const dirPath = `${seriesPath(stream.channel, stream.variant, release.codename)}${stream.channel === 'release' ? `release-${serial}` : serial}/`;
  const sumsUrl = new URL('SHA256SUMS', dirUrl).href;
  let sums: Awaited<ReturnType<CachedGet>>;
  try {
    sums = await options.get(sumsUrl);
  } catch (err) {
    if (!isNotFound(err)) throw err;
    return { reading: await notThere(options, serial, dirUrl, 'SHA256SUMS', log), images: [] };
  }
  const keyring = options.keyring;
  // What the checksums were verified with, for targets that republish it: the signature's bytes stay in the
  // response cache from the cycle that verified them, also when this cycle does not fetch it again.
  const signedBy = [{ url: sumsUrl, path: `${dirPath}SHA256SUMS` }];
  if (keyring) signedBy.push({ url: `${sumsUrl}.gpg`, path: `${dirPath}SHA256SUMS.gpg` });
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
  for (const arch of stream.arches) {
    const found = findImageFile(checksums, stream.channel, stream.variant, release, arch);
    if (!found) continue;
    images.push({
      channel: stream.channel, variant: stream.variant, release: release.codename, version: found.version,
      arch, serial, fileName: found.fileName, url: new URL(found.fileName, dirUrl).href, sha256: found.sha256,
      signed: options.keyring !== undefined, upstreamPath: `${dirPath}${found.fileName}`, signedBy,
      ...(publishedAt ? { publishedAt } : {}),
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
