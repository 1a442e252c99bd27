/**
 * File operations of a target that writes into a directory an operator configured (and a root daemon may
 * run): every path is checked to resolve inside the target's root without passing a symlink, files are
 * created exclusively (never through a name that already exists), and only what is inside is removed.
 */
import { randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, realpath, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SyncError } from '../errors.js';

export class UnsafeTargetPathError extends SyncError {
  constructor(readonly path: string, detail: string) {
    super('TARGET_PATH_UNSAFE', `refusing ${path}: ${detail}`,
      'something other than cloudimg-sync changed the target directory; remove the offending entry by hand');
  }
}

/** Create `root` (and missing ancestors: the operator's path) and return its real path. */
export async function ensureRoot(root: string): Promise<string> {
  await mkdir(root, { recursive: true, mode: 0o755 });
  return realpath(root);
}

/**
 * Check a relative path's segments: no empty, `.` or `..` segment, none hidden (a leading dot is kept for
 * our own work files and bookkeeping, which static web servers leave out of listings).
 */
export function checkVisibleSegments(relPath: string): string[] {
  const segments = relPath.split('/');
  for (const s of segments) {
    if (s === '' || s.startsWith('.') || s.includes('\0') || s.includes('\\')) {
      throw new UnsafeTargetPathError(relPath, `segment ${JSON.stringify(s)} is empty, hidden or contains a separator`);
    }
  }
  return segments;
}

/**
 * The directory `segments` below `root` (a real path), each level created (mode 0755) when missing and
 * refused when it is a symlink or not a directory.
 */
export async function directoryInside(root: string, segments: readonly string[]): Promise<string> {
  let dir = root;
  for (const segment of segments) {
    dir = path.join(dir, segment);
    const stats = await lstat(dir).catch((err: NodeJS.ErrnoException) => { if (err.code === 'ENOENT') return undefined; throw err; });
    if (!stats) {
      await mkdir(dir).catch((err: NodeJS.ErrnoException) => { if (err.code !== 'EEXIST') throw err; });
      await chmod(dir, 0o755);
      continue;
    }
    if (stats.isSymbolicLink()) throw new UnsafeTargetPathError(dir, 'it is a symlink');
    if (!stats.isDirectory()) throw new UnsafeTargetPathError(dir, 'it is not a directory');
  }
  return dir;
}

/**
 * Check that `target` lies strictly inside `root` (both absolute, `root` a real path) and that no level
 * between them, `target` included, is a symlink. Returns `target`'s segments below `root`.
 */
export async function checkInside(root: string, target: string): Promise<string[]> {
  const rel = path.relative(root, target);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) throw new UnsafeTargetPathError(target, `it is not inside ${root}`);
  const segments = rel.split(path.sep);
  let at = root;
  for (const segment of segments) {
    at = path.join(at, segment);
    const stats = await lstat(at).catch(() => undefined);
    if (stats?.isSymbolicLink()) throw new UnsafeTargetPathError(at, 'it is a symlink');
  }
  return segments;
}

/** A hidden name beside `name` for work in progress: `.name.<what>-<pid>-<random>`. */
export function workName(name: string, what: string): string {
  return `.${name}.${what}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Write a new file (fails if the name exists, symlink or not), world-readable whatever the umask. */
export async function writeNewFile(file: string, data: Uint8Array | string): Promise<void> {
  await writeFile(file, data, { flag: 'wx', mode: 0o644 });
  await chmod(file, 0o644);
}

/** Remove `target` (recursively) after checking it is inside `root` and reached without symlinks. */
export async function removeInside(root: string, target: string): Promise<void> {
  await checkInside(root, target);
  await rm(target, { recursive: true, force: true });
}
