/**
 * Discovery from Canonical's simplestreams metadata: `streams/v1/index.sjson` names the products file of
 * the channel (`com.ubuntu.cloud:released:download.sjson`), both clear-signed by the cloud-image key. Only
 * text a signature covers is parsed; an unsigned `.json` is read only when signature checking is off. The
 * images found are the ones the listing source finds for the same serials (same keys, file names and
 * sha256), plus what the metadata gives for free: the size and the release's end of support.
 */
import { createHash } from 'node:crypto';
import { SyncError, describeError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { KeyringSource } from '../keyring.js';
import { endOfLife } from '../end-of-life.js';
import type { CachedGet, CachedText, DiscoveryResult, EolRelease, StreamRelease } from '../source.js';
import { streamId } from '../streams.js';
import type { Arch, Channel, Variant } from '../../image.js';
import type { ReleaseName } from '../releases.js';
import { verifyCleartextSignature } from '../signature.js';
import { downloadContentId, parseProducts, parseStreamsIndex, selectImages, type StreamsSelection } from './products.js';

type Selected = ReturnType<typeof selectImages>;

export interface StreamsDiscoverOptions {
  /** The tree's root, the folder holding `streams/v1/` (e.g. `https://cloud-images.ubuntu.com/releases/`). */
  rootUrl: string;
  channel: Channel;
  variant: Variant;
  releases: readonly ReleaseName[];
  arches: readonly Arch[];
  /** Item type to take from each version (`disk1.img`: the qcow2 disk). */
  ftype: string;
  /** Verify every `.sjson` with this keyring; undefined reads the unsigned `.json` files instead. */
  keyring: KeyringSource | undefined;
  get: CachedGet;
  log: Logger;
  /** Newest serials per release and arch (config `keep`; default 1). */
  keep?: number;
  /** Clock of the end-of-life verdicts (see end-of-life.ts); without it, none are made. */
  nowMs?: number;
}

/** The signed documents a discovery read, for targets that republish them byte for byte (bytes in the response cache). */
export interface StreamsDocument {
  url: string;
  /** Below the tree root, e.g. `streams/v1/index.sjson`. */
  path: string;
}

export type StreamsDiscoveryResult = DiscoveryResult & { documents: StreamsDocument[] };

const NOT_SIGNED_CURE = 'point source.url at a tree that publishes signed .sjson metadata, or set source.verifySignature: false to accept unsigned .json (not recommended)';

/** The tree's place on cloud-images.ubuntu.com: `releases/`, `daily/`, `minimal/releases/`, `minimal/daily/`. */
function treePath(channel: Channel, variant: Variant): string {
  return `${variant === 'minimal' ? 'minimal/' : ''}${channel === 'release' ? 'releases' : 'daily'}/`;
}

/** The root with exactly one trailing slash, so relative paths resolve below it. */
export function streamsRootUrl(url: string): string {
  return `${url.replace(/\/+$/, '')}/`;
}

/** A path from the index must stay in the tree's `streams/` folder. */
function metadataUrl(path: string, rootUrl: string, indexUrl: string): string {
  if (!/^streams\/[A-Za-z0-9._:/+-]+$/.test(path) || path.split('/').includes('..')) {
    throw new SyncError('STREAMS_MALFORMED', `${indexUrl} points at ${JSON.stringify(path)}, outside the tree's streams/ folder`,
      'check source.url points at a faithful simplestreams tree');
  }
  return new URL(path, rootUrl).href;
}

/** Fetch one document and return the text to parse (see documentText). */
async function readDocument(options: StreamsDiscoverOptions, url: string, log: Logger): Promise<string> {
  return documentText(options, url, await options.get(url), log);
}

/**
 * The text to parse of a fetched document: the signed text when verifying, the body otherwise. A document
 * unchanged (304) since it verified with this keyring is not verified again (several MiB of cleartext cost
 * openpgp.js seconds): its signed text is cut out of the very bytes that verified.
 */
async function documentText(options: StreamsDiscoverOptions, url: string, { body, changed }: CachedText, log: Logger): Promise<string> {
  const keyring = options.keyring;
  if (!keyring) return body.toString('utf8');
  if (!body.toString('latin1', 0, 256).trimStart().startsWith('-----BEGIN PGP SIGNED MESSAGE-----')) {
    throw new SyncError('STREAMS_UNSIGNED', `${url} is not cleartext-signed (no "BEGIN PGP SIGNED MESSAGE" header); refusing unsigned metadata`, NOT_SIGNED_CURE);
  }
  // What verified is named by keyring and digest: cached bytes that failed (or never saw) verification never pass.
  const verifiedAs = `${keyring.id}:${sha256Hex(body)}:`;
  const earlier = changed ? undefined : keyring.verifiedSums?.get(url);
  if (earlier?.startsWith(verifiedAs)) {
    const text = cleartextBody(body.toString('utf8'));
    if (text !== undefined) return text;
  }
  const verified = await verifyCleartextSignature(body, await keyring.load(), url);
  keyring.verifiedSums?.set(url, `${verifiedAs}${verified.fingerprint}`);
  log.info({ event: 'source.streams.verified', url, fingerprint: verified.fingerprint }, `${url} signed by ${verified.fingerprint}`);
  if (verified.keyExpiredAt) {
    const keyExpiredAt = verified.keyExpiredAt.toISOString();
    log.warn({ event: 'source.signature.key_expired', url, fingerprint: verified.fingerprint, keyExpiredAt },
      `${url} was signed by ${verified.fingerprint} before that key expired (${keyExpiredAt}); accepted as gpgv does — update source.keyring to the current Ubuntu cloud-image key`);
  }
  return verified.text;
}

const sha256Hex = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

/**
 * The text of a cleartext-signed message (RFC 4880 7.1: after the armor headers and a blank line, dash-escaped,
 * up to the signature), or undefined when it does not have that shape. Only for bytes that verified before.
 */
export function cleartextBody(armored: string): string | undefined {
  // One slice of a string of several MiB, not a split into lines: this runs every cycle.
  const text = armored.includes('\r') ? armored.replace(/\r\n/g, '\n') : armored;
  const start = text.indexOf('-----BEGIN PGP SIGNED MESSAGE-----\n');
  const headersEnd = start === -1 ? -1 : text.indexOf('\n\n', start);
  const end = headersEnd === -1 ? -1 : text.indexOf('\n-----BEGIN PGP SIGNATURE-----', headersEnd + 1);
  if (end === -1) return undefined;
  const body = text.slice(headersEnd + 2, end);
  return body.includes('- ') ? body.replace(/^- /gm, '') : body;
}

/** The (verified) index of the tree and where it points for the channel's products file. */
async function readIndex(options: StreamsDiscoverOptions, log: Logger): Promise<{ index: StreamsDocument; products: StreamsDocument; contentId: string }> {
  const rootUrl = streamsRootUrl(options.rootUrl);
  const signed = options.keyring !== undefined;
  const indexPath = `streams/v1/index.${signed ? 'sjson' : 'json'}`;
  const indexUrl = new URL(indexPath, rootUrl).href;
  const index = parseStreamsIndex(await readDocument(options, indexUrl, log), indexUrl);
  const contentId = downloadContentId(options.channel);
  const entry = index.index[contentId];
  if (!entry?.path) {
    throw new SyncError('STREAMS_NO_CONTENT', `${indexUrl} lists no ${contentId} (it has: ${Object.keys(index.index).join(', ') || 'nothing'})`,
      `check that source.url is the tree of the ${options.channel} channel, e.g. https://cloud-images.ubuntu.com/${options.channel === 'release' ? 'releases' : 'daily'}/`);
  }
  // A signed index names the signed products file; an older one may still name the .json beside it.
  const productsPath = signed ? entry.path.replace(/\.json$/, '.sjson') : entry.path;
  return { index: { url: indexUrl, path: indexPath }, products: { url: metadataUrl(productsPath, rootUrl, indexUrl), path: productsPath }, contentId };
}

/** Bump when what selectImages returns changes shape: selections remembered by an older version are then made again. */
const SELECTION_FORMAT = 'selection-v2'; // v2: images carry publishedAt

function rememberedSelection(json: string | undefined, memo: string): Selected | undefined {
  if (!json) return undefined;
  try {
    const kept = JSON.parse(json) as { memo?: unknown; result?: Selected };
    return kept.memo === memo && kept.result ? kept.result : undefined;
  } catch {
    return undefined;
  }
}

/** For `check`: the index answers, verifies and names the channel's products file. Returns what was found. */
export async function checkStreamsIndex(options: StreamsDiscoverOptions): Promise<string> {
  const { index, products } = await readIndex(options, options.log);
  return `${index.url} ${options.keyring ? 'signed and verified' : 'read (signature checking off)'}; products in ${products.path}`;
}

async function readTree(options: StreamsDiscoverOptions, log: Logger): Promise<{ result: Selected; documents: StreamsDocument[] }> {
  const rootUrl = streamsRootUrl(options.rootUrl);
  const signed = options.keyring !== undefined;
  const { index, products: productsDoc, contentId } = await readIndex(options, log);
  const productsUrl = productsDoc.url;
  const selection: StreamsSelection = {
    channel: options.channel, variant: options.variant, releases: options.releases, arches: options.arches,
    ftype: options.ftype, rootUrl, signed, keep: options.keep,
  };
  const fetched = await options.get(productsUrl);
  // A products file unchanged since it was verified and read answers from what was selected from it then: a
  // no-op cycle neither decodes nor parses its MiBs. Named by keyring, digest and selection, set only after
  // this run's own verification passed (the cache forgets it when the body changes).
  const memo = `${SELECTION_FORMAT}:${options.keyring?.id ?? 'unsigned'}:${sha256Hex(fetched.body)}:${JSON.stringify(selection)}`;
  const remembered = fetched.changed ? undefined : rememberedSelection(fetched.parsed?.get(), memo);
  if (remembered) return { result: remembered, documents: [index, productsDoc] };
  const products = parseProducts(await documentText(options, productsUrl, fetched, log), productsUrl);
  if (products.content_id !== contentId) {
    throw new SyncError('STREAMS_MALFORMED', `${productsUrl} holds ${products.content_id}, the index said ${contentId}`,
      'upstream is inconsistent or mid-publication; retried next cycle', { retryable: true });
  }
  const result = selectImages(products, selection);
  fetched.parsed?.set(JSON.stringify({ memo, result }));
  return { result, documents: [index, productsDoc] };
}

/** The newest serial of each wanted release and arch, from the tree's signed metadata. */
export async function discoverFromStreams(options: StreamsDiscoverOptions): Promise<StreamsDiscoveryResult> {
  const log = options.log.child({ channel: options.channel, variant: options.variant });
  let tree: Awaited<ReturnType<typeof readTree>>;
  try {
    tree = await readTree(options, log);
  } catch (error) {
    // Without the metadata no release can be read: each fails with the same cause, as a listing would.
    log.error({ event: 'source.release.failed', err: describeError(error), errCode: (error as { code?: string }).code }, `cannot read ${options.rootUrl}: ${describeError(error)}`);
    return { images: [], failures: options.releases.map((r) => ({ ...where(options, r.codename), error })), incomplete: [], eol: [], documents: [] };
  }
  const { unmatched } = tree.result;
  // For targets that republish upstream's signed documents byte for byte (their bytes stay in the response cache).
  // Paths as the site serves them (`releases/server/releases/noble/...`, `releases/streams/v1/...`): a copy of the
  // tree keeps every item where the products file says it is, so a downstream simplestreams reader finds it.
  const treeDir = treePath(options.channel, options.variant);
  const signedBy = tree.documents.map((d) => ({ url: d.url, path: `${treeDir}${d.path}` }));
  const rootPath = new URL(streamsRootUrl(options.rootUrl)).pathname;
  let images = tree.result.images.map((image) => {
    // Item URLs resolve below the root (selectImages refuses paths leaving it): the rest is the item's path.
    const itemPath = decodeURIComponent(new URL(image.url).pathname.slice(rootPath.length));
    return { ...image, upstreamPath: `${treeDir}${itemPath}`, signedBy };
  });
  const failures: DiscoveryResult['failures'] = [];
  const incomplete: DiscoveryResult['incomplete'] = [];
  const eols: EolRelease[] = [];
  for (const release of options.releases) {
    const missing = unmatched.filter((u) => u.release === release.codename);
    const ofRelease = images.filter((i) => i.release === release.codename);
    // End of life: the product's own support_eol, else the release table (see end-of-life.ts).
    const verdict = options.nowMs === undefined ? undefined
      : endOfLife(release.codename, options.channel, options.nowMs, { sourceEol: ofRelease.find((i) => i.supportEol)?.supportEol });
    if (verdict?.eol) images = images.map((i) => (i.release === release.codename ? { ...i, supportEol: verdict.eol } : i));
    if (verdict?.pastEol) {
      const eol: EolRelease = { ...where(options, release.codename), ...(verdict.eol ? { eol: verdict.eol } : {}), gone: missing.length === options.arches.length, imported: verdict.imported };
      eols.push(eol);
      if (!eol.imported) images = images.filter((i) => i.release !== release.codename);
      log.warn({ event: 'source.release.eol', release: release.codename, eol: eol.eol, gone: eol.gone, imported: eol.imported },
        `${release.codename} (${streamId(options)}) is past its end of life${eol.eol ? ` (${eol.eol})` : ''}${eol.gone ? ' and gone upstream' : ''}${eol.imported ? '' : '; its dailies are not imported'}: move to a supported release`);
      if (eol.gone || !eol.imported) continue;
    }
    if (missing.length === options.arches.length) {
      const error = new SyncError('STREAMS_RELEASE_MISSING', `${release.codename}: ${missing.map((m) => `${m.arch}: ${m.reason}`).join('; ')}`,
        'check source.releases, source.variant and that the release is published in this tree', { retryable: true });
      log.error({ event: 'source.release.failed', release: release.codename, err: describeError(error), errCode: error.code }, describeError(error));
      failures.push({ ...where(options, release.codename), error });
      continue;
    }
    for (const m of missing) {
      log.warn({ event: 'source.arch.missing', release: m.release, arch: m.arch, url: tree.documents[1]?.url, reason: m.reason }, `no ${m.arch} image of ${m.release}: ${m.reason}`);
      incomplete.push({ ...where(options, m.release), arch: m.arch, reason: m.reason });
    }
  }
  return { images, failures, incomplete, eol: eols, documents: tree.documents };
}

function where(options: Pick<StreamsDiscoverOptions, 'channel' | 'variant'>, release: string): StreamRelease {
  return { stream: streamId(options), channel: options.channel, variant: options.variant, release };
}
