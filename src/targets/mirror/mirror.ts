/**
 * An internal mirror for sites without internet, served by any static web server with autoindex on. Each
 * image lands at the path it has upstream below the source root (`releases/noble/release-<serial>/<file>`,
 * daily `noble/<serial>/<file>`, minimal `minimal/...`) beside the signed documents it was verified with
 * (`SHA256SUMS`, `SHA256SUMS.gpg`) copied byte for byte, so a downstream cloudimg-sync or sstream-mirror
 * verifies Ubuntu's own signature end to end.
 *
 * What a downstream reading the listings at any moment sees:
 * - a serial folder appears whole: built under a hidden name with its first image and its signed
 *   documents, then renamed into place; later images of the same serial are renamed in one by one;
 * - a serial folder goes whole: renamed to a hidden name, then deleted, when its last image is retired;
 * - SHA256SUMS is upstream's and never edited (that would void the signature), so it names every file of
 *   the upstream serial, also those this mirror does not carry (other arches, manifests, tarballs). A
 *   downstream takes the files it needs by name, as cloudimg-sync does (or `sha256sum -c --ignore-missing`).
 * Hidden names (a leading dot) are never listed by nginx or Apache autoindex: work in progress and the
 * `.<file>.cloudimg-sync.json` bookkeeping beside each image (what retention may remove) use them.
 */
import { constants } from 'node:fs';
import { access, chmod, copyFile, link, lstat, mkdir, readdir, readFile, realpath, rename, rm, utimes } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { SyncError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { fsyncPath } from '../../fsync.js';
import type { UpstreamImage } from '../../image.js';
import { parseSha256Sums } from '../../source/listing/sha256sums.js';
import { UnsafePathError, writeFileExclusive } from '../../local-files.js';
import { checkInside, checkVisibleSegments, directoryInside, ensureRoot, removeTreeInside, workName } from '../contained-fs.js';
import { directoryError, manifestSchema as directoryManifestSchema } from '../directory/target.js';
import type { PublishContext, PublishedImage, PublishResult, SignedDocumentBytes, Target, VerifiedFile } from '../target.js';

const MANIFEST_SUFFIX = '.cloudimg-sync.json';
/** Serial folders sit 2 (daily) to 4 (minimal release) levels down; a little slack for other layouts. */
const MAX_DEPTH = 6;

/** The directory target's manifest, without the source URL (the signed documents beside it say where it came from). */
const manifestSchema = directoryManifestSchema.omit({ sourceUrl: true });
type MirrorManifest = z.infer<typeof manifestSchema>;

const manifestName = (fileName: string) => `.${fileName}${MANIFEST_SUFFIX}`;

/** Where an image and its signed documents go, below the mirror's root. Pure. */
export interface MirrorPlacement {
  /** The serial folder's segments: `['releases', 'noble', 'release-20240605']`. */
  folder: string[];
  fileName: string;
  /** Documents inside the serial folder (SHA256SUMS, its signature): created with it, kept beside the image. */
  folderDocuments: Array<{ url: string; name: string }>;
  /** Documents elsewhere (simplestreams `.sjson` indexes): written after the image. */
  otherDocuments: Array<{ url: string; segments: string[] }>;
}

export function mirrorPlacement(image: UpstreamImage): MirrorPlacement {
  if (!image.upstreamPath || !image.signedBy?.length) {
    throw new SyncError('MIRROR_LAYOUT_UNKNOWN', `the source gave no upstream path or signed documents for ${image.fileName}`,
      'a mirror target needs a source that reports where images and their SHA256SUMS sit (the listing source does)');
  }
  const imageSegments = checkVisibleSegments(image.upstreamPath);
  const folder = imageSegments.slice(0, -1);
  const fileName = imageSegments[imageSegments.length - 1]!;
  if (folder.length === 0) throw new UnsafePathError(image.upstreamPath, 'an image must sit in a serial folder');
  const placement: MirrorPlacement = { folder, fileName, folderDocuments: [], otherDocuments: [] };
  for (const doc of image.signedBy) {
    const segments = checkVisibleSegments(doc.path);
    const inFolder = segments.length === folder.length + 1 && folder.every((s, i) => segments[i] === s);
    if (inFolder) placement.folderDocuments.push({ url: doc.url, name: segments[segments.length - 1]! });
    else placement.otherDocuments.push({ url: doc.url, segments });
  }
  return placement;
}

export class MirrorTarget implements Target {
  readonly type = 'mirror';
  readonly hidesBeforeDelete = false;
  readonly hideGraceMs = 0;
  /**
   * One publication at a time: the arches of a serial share its folder, which the first one builds under a
   * hidden name and renames into place; a second one building the same folder at once would lose that rename.
   */
  readonly concurrency = 1;

  constructor(readonly name: string, readonly root: string) {}

  async publish(image: UpstreamImage, file: VerifiedFile, ctx: PublishContext): Promise<PublishResult> {
    const placement = mirrorPlacement(image);
    const documents = new Map<string, SignedDocumentBytes>();
    for (const { url } of [...placement.folderDocuments, ...placement.otherDocuments]) documents.set(url, signedDocument(url, ctx));
    checkListedInSums(placement, documents, file);
    try {
      const root = await ensureRoot(this.root);
      const parent = await directoryInside(root, placement.folder.slice(0, -1));
      const folderName = placement.folder[placement.folder.length - 1]!;
      const folder = path.join(parent, folderName);
      const dest = path.join(folder, placement.fileName);
      ctx.onRef?.(dest);
      const manifest: MirrorManifest = {
        channel: image.channel, variant: image.variant, release: image.release, version: image.version, arch: image.arch,
        serial: image.serial, fileName: placement.fileName, sha256: file.sha256, sizeBytes: file.sizeBytes, publishedAt: new Date().toISOString(),
      };
      let adopted = false;
      if (!(await existingDirectory(folder))) {
        await createSerialFolder(parent, folderName, placement, documents, file, manifest);
      } else {
        adopted = (await readManifest(path.join(folder, manifestName(placement.fileName))))?.sha256 === file.sha256
          && (await lstat(dest).catch(() => undefined))?.size === file.sizeBytes;
        for (const doc of placement.folderDocuments) await replaceFile(folder, doc.name, documents.get(doc.url)!);
        if (!adopted) {
          await placeImage(folder, placement.fileName, file);
          await replaceFile(folder, manifestName(placement.fileName), manifestText(manifest));
        }
      }
      await fsyncPath(folder);
      await fsyncPath(parent);
      // After the image, and each before the one naming it (signedBy lists namers first): an index never names
      // what is not there yet.
      for (const doc of [...placement.otherDocuments].reverse()) {
        const dir = await directoryInside(root, doc.segments.slice(0, -1));
        await replaceFile(dir, doc.segments[doc.segments.length - 1]!, documents.get(doc.url)!);
      }
      return { ref: dest, adopted };
    } catch (err) {
      throw directoryError(err, this.root);
    }
  }

  async listPublished(_ctx: { log: Logger }): Promise<PublishedImage[]> {
    const found: PublishedImage[] = [];
    let root: string;
    try {
      root = await ensureRoot(this.root);
    } catch (err) {
      throw directoryError(err, this.root);
    }
    const walk = async (dir: string, depth: number): Promise<void> => {
      for (const entry of await readdir(dir, { withFileTypes: true })) {
        const at = path.join(dir, entry.name);
        if (entry.isDirectory() && !entry.name.startsWith('.')) {
          if (depth < MAX_DEPTH) await walk(at, depth + 1);
        } else if (entry.isDirectory() && isWorkName(entry.name)) {
          // A serial folder a crash left half built or half removed: never listed, so nothing refers to it.
          await removeTreeInside(root, at);
        } else if (entry.isFile() && entry.name.startsWith('.') && entry.name.endsWith(MANIFEST_SUFFIX)) {
          const manifest = await readManifest(at);
          if (!manifest || manifestName(manifest.fileName) !== entry.name) continue;
          found.push({
            ref: path.join(dir, manifest.fileName), release: manifest.release, arch: manifest.arch, variant: manifest.variant,
            channel: manifest.channel, serial: manifest.serial, pinned: manifest.pinned === true,
          });
        } else if (entry.isFile() && isWorkName(entry.name)) {
          await rm(at, { force: true });
        }
      }
    };
    await walk(root, 0);
    return found;
  }

  async hide(): Promise<void> {
    // A mirror has no hidden state; retention deletes directly (hidesBeforeDelete = false).
  }

  async remove(image: PublishedImage, _ctx: { log: Logger }): Promise<void> {
    try {
      const root = await ensureRoot(this.root);
      const folder = path.dirname(image.ref);
      const fileName = path.basename(image.ref);
      if (!(await checkInside(root, image.ref))) return; // already gone with its folder
      const names = await readdir(folder).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return undefined; throw err; });
      if (!names) return; // already gone with its folder
      const others = names.filter((n) => n.endsWith(MANIFEST_SUFFIX) && n !== manifestName(fileName) && n.startsWith('.'));
      if (others.length === 0) {
        // The last image of its serial: the folder leaves the listing in one rename, SHA256SUMS with it.
        const doomed = path.join(path.dirname(folder), workName(path.basename(folder), 'removing'));
        await rename(folder, doomed);
        await fsyncPath(path.dirname(folder));
        await removeTreeInside(root, doomed);
      } else {
        // Bookkeeping first: a half-removed image is never listed as published.
        await rm(path.join(folder, manifestName(fileName)), { force: true });
        await rm(image.ref, { force: true });
      }
    } catch (err) {
      throw directoryError(err, this.root);
    }
  }

  /** Writable, without changing anything: a missing root needs a writable nearest ancestor. */
  async check(): Promise<string> {
    try {
      if (!(await lstat(this.root).catch(() => undefined))) {
        let ancestor = path.dirname(this.root);
        while (!(await lstat(ancestor).catch(() => undefined))) ancestor = path.dirname(ancestor);
        await access(ancestor, constants.W_OK);
        return `${this.root} does not exist yet; it is created under ${ancestor} on the first publish`;
      }
      const root = await realpath(this.root);
      const probe = path.join(root, workName('check', 'tmp'));
      await writeFileExclusive(probe, '', 0o644);
      await rm(probe, { force: true });
      return `${root} writable`;
    } catch (err) {
      throw directoryError(err, this.root);
    }
  }
}

function signedDocument(url: string, ctx: PublishContext): SignedDocumentBytes {
  const document = ctx.signedDocument?.(url);
  if (!document) {
    throw new SyncError('MIRROR_DOCUMENT_MISSING', `the signed document ${url} is not in the state's response cache`,
      'it is fetched again by the next cycle\'s discovery; retried then', { retryable: true });
  }
  return document;
}

/** The SHA256SUMS copied beside the image must list it with the checksum it verified with (same cycle, same bytes). */
function checkListedInSums(placement: MirrorPlacement, documents: Map<string, SignedDocumentBytes>, file: VerifiedFile): void {
  const sums = placement.folderDocuments.find((d) => d.name === 'SHA256SUMS');
  if (!sums) return;
  const listed = parseSha256Sums(documents.get(sums.url)!.body.toString('utf8'), sums.url).get(placement.fileName);
  if (listed !== file.sha256) {
    throw new SyncError('MIRROR_SUMS_MISMATCH', `${sums.url} lists ${placement.fileName} as ${listed ?? 'absent'}, the image verified as ${file.sha256}`,
      'upstream changed the serial while this cycle ran; it is published from the new list next cycle', { retryable: true });
  }
}

const isWorkName = (name: string) => /^\..+\.(partial|removing|tmp)-\d+-[0-9a-f]{8}$/.test(name);

async function existingDirectory(dir: string): Promise<boolean> {
  const stats = await lstat(dir).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return undefined; throw err; });
  if (!stats) return false;
  if (stats.isSymbolicLink() || !stats.isDirectory()) throw new UnsafePathError(dir, 'it is a symlink or not a directory');
  return true;
}

/** Build the serial folder under a hidden name with the image, its signed documents and bookkeeping; rename it into place. */
async function createSerialFolder(
  parent: string, folderName: string, placement: MirrorPlacement, documents: Map<string, SignedDocumentBytes>, file: VerifiedFile, manifest: MirrorManifest,
): Promise<void> {
  const staging = path.join(parent, workName(folderName, 'partial'));
  try {
    await mkdir(staging);
    await chmod(staging, 0o755);
    await placeImage(staging, placement.fileName, file);
    for (const doc of placement.folderDocuments) await writeDocument(staging, doc.name, documents.get(doc.url)!);
    await writeFileExclusive(path.join(staging, manifestName(placement.fileName)), manifestText(manifest), 0o644);
    await fsyncPath(staging);
    await rename(staging, path.join(parent, folderName));
  } catch (err) {
    await rm(staging, { recursive: true, force: true });
    throw err;
  }
}

/** The verified file as `<folder>/<fileName>`: a hard link (free on the same filesystem) or a copy, renamed into place. */
async function placeImage(folder: string, fileName: string, file: VerifiedFile): Promise<void> {
  const tmp = path.join(folder, workName(fileName, 'tmp'));
  try {
    try {
      await link(file.path, tmp);
    } catch {
      await copyFile(file.path, tmp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
      await fsyncPath(tmp);
    }
    await chmod(tmp, 0o644);
    await rename(tmp, path.join(folder, fileName));
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

/** A new file holding a signed document, dated as upstream served it (a downstream's freshness starts there). */
async function writeDocument(dir: string, name: string, document: SignedDocumentBytes): Promise<void> {
  const file = path.join(dir, name);
  await writeFileExclusive(file, document.body, 0o644);
  const served = document.lastModified ? new Date(document.lastModified) : undefined;
  if (served && !Number.isNaN(served.getTime())) await utimes(file, served, served);
}

/**
 * Replace `<dir>/<name>` with `data` (a signed document or our bookkeeping) through a new temp file, unless
 * it already holds exactly these bytes (its date and ETag then stay as they were).
 */
async function replaceFile(dir: string, name: string, data: SignedDocumentBytes | string): Promise<void> {
  const dest = path.join(dir, name);
  const bytes = typeof data === 'string' ? Buffer.from(data) : data.body;
  // Compared only when it is a regular file of ours; anything else is replaced (a rename never follows a symlink).
  if ((await lstat(dest).catch(() => undefined))?.isFile() && (await readFile(dest)).equals(bytes)) return;
  const tmp = path.join(dir, workName(name, 'tmp'));
  try {
    if (typeof data === 'string') await writeFileExclusive(tmp, data, 0o644);
    else await writeDocument(dir, path.basename(tmp), data);
    await fsyncPath(tmp);
    await rename(tmp, dest);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

function manifestText(manifest: MirrorManifest): string {
  return `${JSON.stringify(manifest, null, 2)}\n`;
}

async function readManifest(file: string): Promise<MirrorManifest | undefined> {
  try {
    const parsed = manifestSchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}
