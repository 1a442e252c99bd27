import { constants } from 'node:fs';
import { copyFile, link, mkdir, readdir, readFile, rename, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { probeWritableDirectory } from '../../directory-writable.js';
import { SyncError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { fsyncPath } from '../../fsync.js';
import type { UpstreamImage } from '../../image.js';
import type { PublishContext, PublishedImage, PublishResult, Target, VerifiedFile } from '../target.js';

const MANIFEST_SUFFIX = '.cloudimg-sync.json';

const manifestSchema = z.object({
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

  constructor(readonly name: string, readonly root: string) {}

  private imagePath(image: Pick<UpstreamImage, 'release' | 'serial' | 'fileName'>): string {
    return path.join(this.root, image.release, image.serial, image.fileName);
  }

  async publish(image: UpstreamImage, file: VerifiedFile, ctx: PublishContext): Promise<PublishResult> {
    const dest = this.imagePath(image);
    const manifestPath = dest + MANIFEST_SUFFIX;
    const existing = await readManifest(manifestPath);
    if (existing && existing.sha256 === file.sha256) return { ref: dest, adopted: true };
    ctx.onRef?.(dest);
    const tmp = `${dest}.tmp-${process.pid}`;
    try {
      await mkdir(path.dirname(dest), { recursive: true });
      await rm(tmp, { force: true });
      // A hard link costs no space or time when the cache is on the same filesystem; otherwise copy.
      try {
        await link(file.path, tmp);
      } catch {
        await copyFile(file.path, tmp, constants.COPYFILE_FICLONE);
        await fsyncPath(tmp);
      }
      await rename(tmp, dest);
      const manifest: DirectoryManifest = {
        channel: image.channel, variant: image.variant, release: image.release, version: image.version, arch: image.arch,
        serial: image.serial, fileName: image.fileName, sha256: file.sha256, sizeBytes: file.sizeBytes,
        sourceUrl: image.url, publishedAt: new Date().toISOString(),
      };
      await writeFile(`${manifestPath}.tmp`, `${JSON.stringify(manifest, null, 2)}\n`);
      await fsyncPath(`${manifestPath}.tmp`);
      await rename(`${manifestPath}.tmp`, manifestPath);
      await fsyncPath(path.dirname(dest));
    } catch (err) {
      await rm(tmp, { force: true });
      throw directoryError(err, this.root);
    }
    return { ref: dest, adopted: false };
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
          if (!manifest) continue;
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
      // Manifest first: a half-removed image is never listed as published.
      await rm(image.ref + MANIFEST_SUFFIX, { force: true });
      await rm(image.ref, { force: true });
      await rmdir(path.dirname(image.ref)).catch(() => undefined);
    } catch (err) {
      throw directoryError(err, this.root);
    }
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
    const parsed = manifestSchema.safeParse(JSON.parse(await readFile(file, 'utf8')));
    return parsed.success ? parsed.data : undefined;
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
