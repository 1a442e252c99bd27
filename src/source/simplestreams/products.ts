/**
 * simplestreams metadata (`index:1.0` and `products:1.0`, the format of cloud-images.ubuntu.com's
 * `streams/v1/`) parsed into types at the edge, and the pure choice of images from it: per wanted release
 * and arch, the newest `keep` versions (serials) that have an item of the wanted ftype.
 */
import { z } from 'zod';
import { SyncError } from '../../errors.js';
import { compareSerials, type Arch, type Channel, type UpstreamImage, type Variant } from '../../image.js';
import type { ReleaseName } from '../releases.js';

/** The item that is the bootable qcow2 disk (`ubuntu-24.04-server-cloudimg-amd64.img`, or `-disk1.img` up to 16.04). */
export const DEFAULT_FTYPE = 'disk1.img';

/** The products file of image downloads of a channel, as Canonical names it in every tree. */
export function downloadContentId(channel: Channel): string {
  return channel === 'release' ? 'com.ubuntu.cloud:released:download' : 'com.ubuntu.cloud:daily:download';
}

const indexSchema = z.object({
  format: z.literal('index:1.0'),
  // Entries of other content (image ids of clouds) are not read: only the one wanted needs a path.
  index: z.record(z.string(), z.object({
    path: z.string().optional(),
    format: z.string().optional(),
    datatype: z.string().optional(),
  })),
});

export type StreamsIndex = z.infer<typeof indexSchema>;

const itemSchema = z.object({
  ftype: z.string().optional(),
  path: z.string().optional(),
  sha256: z.string().optional(),
  size: z.number().optional(),
});

const productSchema = z.object({
  arch: z.string().optional(),
  release: z.string().optional(),
  version: z.string().optional(),
  support_eol: z.string().optional(),
  updated: z.string().optional(),
  versions: z.record(z.string(), z.object({ updated: z.string().optional(), items: z.record(z.string(), itemSchema).default({}) })).default({}),
});

const productsSchema = z.object({
  format: z.literal('products:1.0'),
  content_id: z.string(),
  updated: z.string().optional(),
  products: z.record(z.string(), productSchema),
});

export type ProductsDocument = z.infer<typeof productsSchema>;

function parseJson<T>(text: string, url: string, schema: z.ZodType<T>, what: string): T {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (err) {
    throw new SyncError('STREAMS_MALFORMED', `${url} is not JSON: ${(err as Error).message}`,
      'check source.url points at a simplestreams tree (the folder holding streams/v1/)');
  }
  const parsed = schema.safeParse(data);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new SyncError('STREAMS_MALFORMED', `${url} is not a simplestreams ${what}: ${issue?.path.join('.') || '(top)'}: ${issue?.message}`,
      'check source.url points at a simplestreams tree (the folder holding streams/v1/)');
  }
  return parsed.data;
}

/** Parse `streams/v1/index.json` (the signed text of `index.sjson`). */
export function parseStreamsIndex(text: string, url: string): StreamsIndex {
  return parseJson(text, url, indexSchema, 'index (format index:1.0)');
}

/** Parse a products file such as `com.ubuntu.cloud:released:download.json`. */
export function parseProducts(text: string, url: string): ProductsDocument {
  return parseJson(text, url, productsSchema, 'products file (format products:1.0)');
}

/** What to take from a products file. */
export interface StreamsSelection {
  channel: Channel;
  variant: Variant;
  releases: readonly ReleaseName[];
  arches: readonly Arch[];
  ftype: string;
  /** The tree's root URL, with a trailing slash: item paths are relative to it. */
  rootUrl: string;
  /** Whether the products file was signature-verified. */
  signed: boolean;
  /** How many of the newest serials to take per release and arch (default 1). */
  keep?: number;
}

/** A wanted release/arch the products file has no usable item for, and why. */
export interface UnmatchedSelection {
  release: string;
  arch: Arch;
  reason: string;
}

const SERIAL_RE = /^\d{8}(?:\.\d+)?$/;
const SHA256_RE = /^[0-9a-f]{64}$/i;
const SAFE_FILE_NAME_RE = /^[A-Za-z0-9][A-Za-z0-9._+~-]*$/;
const ISO_DATE_RE = /^\d{4}-\d{2}-\d{2}$/;

/**
 * The variant of a product: `com.ubuntu.cloud:minimal:24.04:amd64` (or a minimal file name) is minimal,
 * `com.ubuntu.cloud:server:...` and `com.ubuntu.cloud.daily:server:...` are server.
 */
function variantOf(productId: string, fileName: string): Variant {
  return productId.split(':').slice(1).includes('minimal') || fileName.includes('-minimal-cloudimg-') ? 'minimal' : 'server';
}

/** An item path must stay inside the tree: relative, no `..`, no scheme, no query. */
function itemUrl(path: string, rootUrl: string): string | undefined {
  if (path.startsWith('/') || /^[a-z][a-z0-9+.-]*:/i.test(path) || /[?#\\]/.test(path)) return undefined;
  if (path.split('/').some((s) => s === '..' || s === '.' || s === '')) return undefined;
  return new URL(path, rootUrl).href;
}

/**
 * When upstream published a version, as ISO 8601: its `updated`, else its product's, else the products file's
 * (simplestreams fields apply to everything below them; Canonical's trees set it on the file only, rewritten
 * as each serial is added). Absent when none is set or it is not a date.
 */
function publishedAtOf(...updated: Array<string | undefined>): string | undefined {
  const text = updated.find((u) => u !== undefined);
  const ms = text === undefined ? Number.NaN : Date.parse(text);
  return Number.isFinite(ms) ? new Date(ms).toISOString() : undefined;
}

/**
 * Per wanted release and arch, the newest version(s) that have a valid item of the wanted ftype, as the images
 * the listing source would find for the same serials: same key, file name and sha256. Pure.
 */
export function selectImages(doc: ProductsDocument, selection: StreamsSelection): { images: UpstreamImage[]; unmatched: UnmatchedSelection[] } {
  const images: UpstreamImage[] = [];
  const unmatched: UnmatchedSelection[] = [];
  for (const release of selection.releases) {
    for (const arch of selection.arches) {
      const candidates: Array<UpstreamImage> = [];
      const rejected: string[] = [];
      for (const [productId, product] of Object.entries(doc.products)) {
        if (product.arch !== arch || product.release !== release.codename) continue;
        if (release.version && product.version && product.version !== release.version) continue;
        for (const [serial, version] of Object.entries(product.versions)) {
          const item = Object.values(version.items).find((i) => i.ftype === selection.ftype);
          if (!item) continue;
          const fileName = item.path?.split('/').at(-1) ?? '';
          if (variantOf(productId, fileName) !== selection.variant) continue;
          const problem = !SERIAL_RE.test(serial) ? `version ${JSON.stringify(serial)} is not a serial`
            : !item.path || !SAFE_FILE_NAME_RE.test(fileName) ? `item path ${JSON.stringify(item.path)} names no file`
            : !itemUrl(item.path, selection.rootUrl) ? `item path ${JSON.stringify(item.path)} leaves the tree`
            : !item.sha256 || !SHA256_RE.test(item.sha256) ? 'item has no sha256'
            : item.size === undefined || !Number.isSafeInteger(item.size) || item.size <= 0 ? 'item has no size'
            : undefined;
          if (problem) {
            rejected.push(`${productId} ${serial}: ${problem}`);
            continue;
          }
          const publishedAt = publishedAtOf(version.updated, product.updated, doc.updated);
          candidates.push({
            channel: selection.channel, variant: selection.variant, release: release.codename,
            version: product.version ?? release.version, arch, serial, fileName,
            url: itemUrl(item.path!, selection.rootUrl)!, sha256: item.sha256!.toLowerCase(), signed: selection.signed,
            sizeBytes: item.size,
            supportEol: product.support_eol && ISO_DATE_RE.test(product.support_eol) ? product.support_eol : undefined,
            ...(publishedAt ? { publishedAt } : {}),
          });
        }
      }
      const newest = candidates.sort((a, b) => compareSerials(b.serial, a.serial)).slice(0, selection.keep ?? 1);
      if (newest.length > 0) images.push(...newest);
      else {
        unmatched.push({
          release: release.codename, arch,
          reason: rejected.length > 0 ? rejected.join('; ') : `no ${selection.variant} product of ${release.codename} ${arch} has a ${selection.ftype} item`,
        });
      }
    }
  }
  return { images, unmatched };
}
