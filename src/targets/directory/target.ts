import { constants } from 'node:fs';
import { copyFile, link, lstat, open, readdir, rename, rmdir } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { probeWritableDirectory } from '../../directory-writable.js';
import { SyncError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { fsyncPath } from '../../fsync.js';
import { makeDirInside, removeInside, removeRegularFile, UnsafePathError, writeFileExclusive } from '../../local-files.js';
import type { UpstreamImage } from '../../image.js';
import type { PublishContext, PublishedImage, PublishResult, Target, VerifiedFile } from '../target.js';

const MANIFEST_SUFFIX = '.cloudimg-sync.json';
export const DEFAULT_IMAGE_MODE = 0o644;
/** Folders under root are read by whatever serves the images. */
const DIR_MODE = 0o755;
/** The image files we publish (see findImageFile): a bare name, nothing else is ever ours to remove. */
const IMAGE_FILE_RE = /^(?:ubuntu-\d{2}\.\d{2}|[a-z][a-z0-9]*)-[a-z]+-cloudimg-[a-z0-9]+(?:-disk1)?\.img$/;

function manifestBelongsHere(m: DirectoryManifest, release: string, serial: string, manifestName: string): boolean {
  return IMAGE_FILE_RE.test(m.fileName) && m.release === release && m.serial === serial && manifestName === m.fileName + MANIFEST_SUFFIX;
}

async function isRegularFile(file: string): Promise<boolean> {
  return (await lstat(file).catch(() => undefined))?.isFile() === true;
}

/** chmod through a handle opened without following symlinks. */
async function setModeOfRegularFile(file: string, mode: number): Promise<void> {
  const fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    if (!(await fh.stat()).isFile()) throw new UnsafePathError(file, 'not a regular file');
    await fh.chmod(mode);
  } finally {
    await fh.close();
  }
}

export const manifestSchema = z.object({
  channel: z.string(),
  variant: z.string(),
  release: z.string(),
  version: z.string(),
  arch: z.string(),
  serial: z.string(),
  fileName: z.string(),
  sha256: z.string(),
  sizeBytes: z.number(),
  sourceUrl: z.string(),
  publishedAt: z.string(),
  pinned: z.boolean().optional(),
});
export type DirectoryManifest = z.infer<typeof manifestSchema>;

/**
 * Publishes into `<path>/<release>/<serial>/<file>` with a JSON manifest beside each image. The manifest is
 * written last: an image without one is incomplete and never listed. Retention deletes without hiding.
 */
export class DirectoryTarget implements Target {
  readonly type = 'directory';
  readonly hidesBeforeDelete = false;
  readonly hideGraceMs = 0;

  /** `mode`: of published images and manifests (default 0644), set exactly whatever the umask. */
  constructor(readonly name: string, readonly root: string, readonly mode = DEFAULT_IMAGE_MODE) {}

  private imagePath(image: Pick<UpstreamImage, 'release' | 'serial' | 'fileName'>): string {
    return path.join(this.root, image.release, image.serial, image.fileName);
  }

  async publish(image: UpstreamImage, file: VerifiedFile, ctx: PublishContext): Promise<PublishResult> {
    const dest = this.imagePath(image);
    const manifestPath = dest + MANIFEST_SUFFIX;
    const existing = await readManifest(manifestPath);
    if (existing && existing.sha256 === file.sha256 && await isRegularFile(dest)) return { ref: dest, adopted: true };
    ctx.onRef?.(dest);
    const tmp = `${dest}.tmp-${process.pid}`;
    try {
      // <root>/<release>/<serial>/ must resolve inside root: a planted symlink on the way is refused, not followed.
      await makeDirInside(this.root, path.dirname(dest), DIR_MODE);
      const source = await lstat(file.path);
      if (!source.isFile()) throw new UnsafePathError(file.path, 'the verified file is not a regular file');
      await removeRegularFile(tmp);
      // A hard link costs no space or time when the cache is on the same filesystem; otherwise an exclusive copy.
      try {
        await link(file.path, tmp);
      } catch {
        await copyFile(file.path, tmp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
        await fsyncPath(tmp);
      }
      await setModeOfRegularFile(tmp, this.mode);
      await rename(tmp, dest); // rename replaces whatever is at dest, a symlink included, and never follows it
      const manifest: DirectoryManifest = {
        channel: image.channel, variant: image.variant, release: image.release, version: image.version, arch: image.arch,
        serial: image.serial, fileName: image.fileName, sha256: file.sha256, sizeBytes: file.sizeBytes,
        sourceUrl: image.url, publishedAt: new Date().toISOString(),
      };
      await writeFileExclusive(`${manifestPath}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`, this.mode);
      await fsyncPath(`${manifestPath}.tmp`);
      await rename(`${manifestPath}.tmp`, manifestPath);
      await fsyncPath(path.dirname(dest));
    } catch (err) {
      await removeRegularFile(tmp).catch(() => undefined);
      throw directoryError(err, this.root);
    }
    return { ref: dest, adopted: false };
  }

  /** `<image>.tmp-<pid>` files whose process is gone (a kill mid-publish); they would also block the serial's rmdir. */
  async sweep(): Promise<string[]> {
    const removed: string[] = [];
    for (const release of await listDirs(this.root)) {
      for (const serial of await listDirs(path.join(this.root, release))) {
        const dir = path.join(this.root, release, serial);
        for (const name of await readdir(dir)) {
          const pid = /\.tmp-(\d+)$/.exec(name)?.[1];
          if (pid === undefined || processAlive(Number(pid))) continue;
          await removeInside(this.root, path.join(dir, name));
          removed.push(path.join(dir, name));
        }
      }
    }
    return removed;
  }

  /** The directory is writable (or can be created). */
  async check(): Promise<string> {
    return probeWritableDirectory(this.root);
  }

  async listPublished(_ctx: { log: Logger }): Promise<PublishedImage[]> {
    const found: PublishedImage[] = [];
    for (const release of await listDirs(this.root)) {
      for (const serial of await listDirs(path.join(this.root, release))) {
        const dir = path.join(this.root, release, serial);
        for (const name of await readdir(dir)) {
          if (!name.endsWith(MANIFEST_SUFFIX)) continue;
          const manifest = await readManifest(path.join(dir, name));
          // A manifest names its own image only: a bare image file name, in the folder of its release and serial.
          if (!manifest || !manifestBelongsHere(manifest, release, serial, name)) continue;
          found.push({
            ref: path.join(dir, manifest.fileName), release: manifest.release, arch: manifest.arch, variant: manifest.variant,
            channel: manifest.channel, serial: manifest.serial, pinned: manifest.pinned === true,
          });
        }
      }
    }
    return found;
  }

  async hide(): Promise<void> {
    // A directory has no hidden state; retention deletes directly (hidesBeforeDelete = false).
  }

  async remove(image: PublishedImage): Promise<void> {
    try {
      // Only what lies inside root is ever removed, whatever a ref says (realpath containment).
      if (!IMAGE_FILE_RE.test(path.basename(image.ref))) throw new UnsafePathError(image.ref, 'not an image file name');
      // Manifest first: a half-removed image is never listed as published.
      await removeInside(this.root, image.ref + MANIFEST_SUFFIX);
      await removeInside(this.root, image.ref);
      const dir = path.dirname(image.ref);
      if (path.dirname(path.dirname(dir)) === this.root) await rmdir(dir).catch(() => undefined);
    } catch (err) {
      throw directoryError(err, this.root);
    }
  }
}

/** Whether a process with this pid exists (ours at the start of a cycle counts as gone: no publish is running yet). */
function processAlive(pid: number): boolean {
  if (pid === process.pid) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function listDirs(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

async function readManifest(file: string): Promise<DirectoryManifest | undefined> {
  try {
    const fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    try {
      if (!(await fh.stat()).isFile()) return undefined;
      const parsed = manifestSchema.safeParse(JSON.parse(await fh.readFile('utf8')));
      return parsed.success ? parsed.data : undefined;
    } finally {
      await fh.close();
    }
  } catch {
    return undefined;
  }
}


/** A filesystem failure under a target directory, as an error that says what to do. */
export function directoryError(err: unknown, root: string): SyncError {
  if (err instanceof SyncError) return err;
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOSPC') {
    return new SyncError('DISK_FULL', `no space left under ${root}`, 'free space on the target directory filesystem; the image is published next cycle', { cause: err });
  }
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    return new SyncError('TARGET_NOT_WRITABLE', `cannot write under ${root}: ${(err as Error).message}`, 'make the target path writable by this user', { cause: err });
  }
  return new SyncError('TARGET_WRITE_FAILED', `writing under ${root} failed: ${(err as Error).message}`, 'check the target directory; retried next cycle', { cause: err, retryable: true });
}
