/**
 * How a root daemon touches files where operators point it: files are created exclusively and never through
 * a symlink (O_CREAT|O_EXCL|O_NOFOLLOW), with their mode set explicitly whatever the umask; directories it
 * creates are 0700; a path is used only if its parent resolves inside the directory it belongs to; a removal
 * happens only inside that directory. A planted symlink is refused with UNSAFE_PATH, never followed.
 */
import { chmodSync, closeSync, constants, fchmodSync, lstatSync, mkdirSync, openSync, rmSync, writeSync, type Stats } from 'node:fs';
import { chmod, lstat, mkdir, open, realpath, rm, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { SyncError, errorCode } from './errors.js';

export class UnsafePathError extends SyncError {
  constructor(readonly file: string, detail: string) {
    super('UNSAFE_PATH', `refusing ${file}: ${detail}`,
      'something other than cloudimg-sync put it there (a symlink or a foreign file); remove it and check who can write to that directory');
  }
}

const CREATE_EXCLUSIVE = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/**
 * Creates `file` for writing, exclusively and without following a symlink, with exactly `mode`. What is at
 * the path already is removed first only if it is a regular file (an earlier attempt's leftover); a symlink
 * or anything else there is refused.
 */
export async function createExclusive(file: string, mode: number): Promise<FileHandle> {
  await removeRegularFile(file);
  let fh: FileHandle;
  try {
    fh = await open(file, CREATE_EXCLUSIVE, mode);
  } catch (err) {
    if (errorCode(err) === 'EEXIST' || errorCode(err) === 'ELOOP') throw new UnsafePathError(file, 'something appeared at the path while it was being created');
    throw err;
  }
  await fh.chmod(mode); // the umask took bits away; the mode is what we say
  return fh;
}

/** createExclusive for a whole small file. */
export async function writeFileExclusive(file: string, data: string | Buffer, mode: number): Promise<void> {
  const fh = await createExclusive(file, mode);
  try {
    await fh.writeFile(data);
  } finally {
    await fh.close();
  }
}

/** Opens an existing regular file for reading and writing without following a symlink (a `.part` to resume). */
export async function openExistingForUpdate(file: string): Promise<FileHandle> {
  try {
    const fh = await open(file, constants.O_RDWR | constants.O_NOFOLLOW);
    if (!(await fh.stat()).isFile()) {
      await fh.close();
      throw new UnsafePathError(file, 'not a regular file');
    }
    return fh;
  } catch (err) {
    if (errorCode(err) === 'ELOOP') throw new UnsafePathError(file, 'it is a symlink');
    throw err;
  }
}

/** Removes `file` if it is a regular file; nothing there is fine; a symlink or a directory is refused. */
export async function removeRegularFile(file: string): Promise<void> {
  const st = await lstatIfPresent(file);
  if (!st) return;
  if (!st.isFile()) throw new UnsafePathError(file, st.isSymbolicLink() ? 'it is a symlink' : 'not a regular file');
  await rm(file, { force: true });
}

/** Whether `child` is `root` or below it (both absolute, real paths). */
function inside(root: string, child: string): boolean {
  const rel = path.relative(root, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Throws UnsafePathError unless the directory `dir` (existing) resolves inside `root`: a parent that is a
 * symlink leading out of the configured directory is refused.
 */
export async function assertInside(root: string, dir: string): Promise<void> {
  const [realRoot, realDir] = await Promise.all([realpath(root), realpath(dir)]);
  if (!inside(realRoot, realDir)) throw new UnsafePathError(dir, `it resolves to ${realDir}, outside ${realRoot} (a symlink in the path?)`);
}

/** mkdir -p of `dir` below `root`; directories created get `mode` exactly; the result must resolve inside `root`. */
export async function makeDirInside(root: string, dir: string, mode: number): Promise<void> {
  await makeDir(root, mode);
  // Parents that exist are checked before anything is created through them.
  let existing = dir;
  while (!(await lstat(existing).then(() => true, () => false))) existing = path.dirname(existing);
  await assertInside(root, existing);
  await makeDir(dir, mode);
  await assertInside(root, dir);
}

/** mkdir -p; every directory it creates gets `mode` exactly (an existing one is left as the operator made it). */
export async function makeDir(dir: string, mode: number): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode });
  if (first !== undefined) await chmodCreated(first, dir, mode);
}

/** makeDir, synchronously (state directory at start-up). */
export function makeDirSync(dir: string, mode: number): void {
  const first = mkdirSync(dir, { recursive: true, mode });
  if (first === undefined) return;
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    chmodSync(d, mode);
    if (d === path.resolve(first) || d === path.dirname(d)) break;
  }
}

async function chmodCreated(first: string, dir: string, mode: number): Promise<void> {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    await chmod(d, mode);
    if (d === path.resolve(first) || d === path.dirname(d)) break;
  }
}

/**
 * Creates `file` empty with exactly `mode`, or gives an existing one that mode (a database SQLite then opens:
 * it gives its -wal and -shm files the database's mode). A symlink there is refused.
 */
export function ensurePrivateFileSync(file: string, mode: number): void {
  try {
    const fd = openSync(file, CREATE_EXCLUSIVE, mode);
    try {
      fchmodSync(fd, mode);
    } finally {
      closeSync(fd);
    }
  } catch (err) {
    if (errorCode(err) !== 'EEXIST') throw err;
    const st = lstatSync(file);
    if (!st.isFile()) throw new UnsafePathError(file, st.isSymbolicLink() ? 'it is a symlink' : 'not a regular file');
    // Tightened when it is ours; another user's file (root reading the daemon's state) is left as it is.
    if ((st.mode & 0o777) !== mode && st.uid === process.getuid?.()) chmodSync(file, mode);
  }
}

/** writeFileExclusive, synchronously: a leftover regular file is replaced, a symlink refused. */
export function writeFileExclusiveSync(file: string, data: string, mode: number): void {
  try {
    const st = lstatSync(file);
    if (!st.isFile()) throw new UnsafePathError(file, st.isSymbolicLink() ? 'it is a symlink' : 'not a regular file');
    rmSync(file, { force: true });
  } catch (err) {
    if (errorCode(err) !== 'ENOENT') throw err;
  }
  const fd = openSync(file, CREATE_EXCLUSIVE, mode);
  try {
    fchmodSync(fd, mode);
    writeSync(fd, data);
  } finally {
    closeSync(fd);
  }
}

/**
 * Removes `file` (a regular file or a symlink itself, never what it points to) only if its directory
 * resolves inside `root`; refuses anything else.
 */
export async function removeInside(root: string, file: string): Promise<void> {
  const dir = path.dirname(file);
  try {
    await assertInside(root, dir);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return; // its directory is gone: so is the file
    throw err;
  }
  const st = await lstatIfPresent(file);
  if (!st) return;
  if (st.isDirectory()) throw new UnsafePathError(file, 'a directory where a file was expected');
  await rm(file, { force: true });
}

/** `lstat(file)`, or undefined when nothing is there. */
async function lstatIfPresent(file: string): Promise<Stats | undefined> {
  try {
    return await lstat(file);
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}
