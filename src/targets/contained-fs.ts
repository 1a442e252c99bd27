/**
 * What a target that rebuilds a tree (the mirror target) needs beyond src/local-files.ts: paths checked
 * segment by segment, hidden work names, and whole work folders removed only inside the target's root.
 * Files are still created and directories made through local-files (exclusive, no symlink followed).
 */
import { randomBytes } from 'node:crypto';
import { lstat, realpath, rm } from 'node:fs/promises';
import path from 'node:path';
import { errorCode } from '../errors.js';
import { assertInside, makeDir, makeDirInside, UnsafePathError } from '../local-files.js';

/** Create `root` (and missing ancestors: the operator's path; created ones 0755) and return its real path. */
export async function ensureRoot(root: string): Promise<string> {
  await makeDir(root, 0o755);
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
      throw new UnsafePathError(relPath, `segment ${JSON.stringify(s)} is empty, hidden or contains a separator`);
    }
  }
  return segments;
}

/** The directory `segments` below `root` (a real path), made (0755) where missing; it must resolve inside `root`. */
export async function directoryInside(root: string, segments: readonly string[]): Promise<string> {
  const dir = path.join(root, ...segments);
  await makeDirInside(root, dir, 0o755);
  return dir;
}

/**
 * Check that `target` lies strictly inside `root` (a real path), that its directory resolves inside `root`, and
 * that `target` itself is not a symlink. Returns false when its directory is gone (so is `target`).
 */
export async function checkInside(root: string, target: string): Promise<boolean> {
  const rel = path.relative(root, target);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) throw new UnsafePathError(target, `it is not inside ${root}`);
  try {
    await assertInside(root, path.dirname(target));
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return false;
    throw err;
  }
  if ((await lstat(target).catch(() => undefined))?.isSymbolicLink()) throw new UnsafePathError(target, 'it is a symlink');
  return true;
}

/** A hidden name beside `name` for work in progress: `.name.<what>-<pid>-<random>`. */
export function workName(name: string, what: string): string {
  return `.${name}.${what}-${process.pid}-${randomBytes(4).toString('hex')}`;
}

/** Remove `target` and everything below it (symlinks inside are removed, never followed) after checkInside. */
export async function removeTreeInside(root: string, target: string): Promise<void> {
  if (await checkInside(root, target)) await rm(target, { recursive: true, force: true });
}
