/**
 * qcow2 -> raw with `qemu-img convert`, for stores that want raw (Ceph RBD behind Glance).
 *
 * The contract: `convertToRaw` writes the guest disk of a verified qcow2 into a new file beside it, sparse
 * (zeros stay holes), exactly `virtualSizeBytes` long and byte for byte what `qemu-img convert -O raw` makes,
 * so its digests are those Glance's own image_conversion plugin reports. The output file is created by us,
 * exclusively and without following a symlink, and qemu-img only writes into it (`-n`); on any failure it
 * is removed. qemu-img cannot write to a pipe (its `file` driver needs a regular file to resize and seek),
 * so the raw copy lands on disk: about the image's allocated guest data, not its virtual size.
 */
import { execFile, spawn } from 'node:child_process';
import { constants } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { SyncError } from '../../errors.js';
import { readDiskImageInfo } from './qcow2-info.js';

/** The program converting; QEMU_IMG overrides it (a test points it at a missing one). */
const QEMU_IMG = process.env.QEMU_IMG || 'qemu-img';
/** Of qemu-img's stderr, this much is kept for the error message. */
const STDERR_KEEP_BYTES = 4096;

export class QemuImgMissingError extends SyncError {
  constructor(program: string) {
    super(
      'QEMU_IMG_MISSING',
      `${program} is not installed (diskFormat: raw converts with it)`,
      'install qemu-utils (apt-get install qemu-utils; the container image has it), or set diskFormat: qcow2',
    );
  }
}

export class RawConversionError extends SyncError {
  constructor(readonly source: string, detail: string, options: { retryable?: boolean; cause?: unknown } = {}) {
    super(
      'RAW_CONVERSION_FAILED',
      `converting ${source} to raw failed: ${detail}`,
      'see the message (a full disk under cacheDir is the usual cause); the image is not published as raw until it succeeds, retried next cycle',
      { retryable: options.retryable ?? true, cause: options.cause },
    );
  }
}

export interface RawCopy {
  path: string;
  /** The guest disk's size: the length of the raw file and the size Glance reports for it. */
  sizeBytes: number;
}

/**
 * Convert the qcow2 at `source` into a raw file at `dest` (replacing a leftover of an interrupted run).
 * Refuses a qcow2 that refers to other files (backing or external data file).
 */
export async function convertToRaw(source: string, dest: string, options: { signal?: AbortSignal } = {}): Promise<RawCopy> {
  const info = await readDiskImageInfo(source);
  if (info.format !== 'qcow2') throw new RawConversionError(source, 'it is not a qcow2 image', { retryable: false });
  if (info.refersToOtherFiles) {
    throw new RawConversionError(source, 'the qcow2 refers to a backing or external data file; cloud images never do, so it is refused', { retryable: false });
  }
  await rm(dest, { force: true });
  // Ours, new, never through a symlink; sized to the guest disk so qemu-img can fill it in place (-n).
  const handle = await open(dest, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
  try {
    await handle.truncate(info.virtualSizeBytes);
  } finally {
    await handle.close();
  }
  try {
    // -n: write into our file; --target-is-zero: it is all holes, skip writing zeros. -f: never guess the format.
    await runQemuImg(['convert', '-q', '-n', '--target-is-zero', '-f', 'qcow2', '-O', 'raw', source, dest], source, options.signal);
  } catch (err) {
    await rm(dest, { force: true });
    throw err;
  }
  return { path: dest, sizeBytes: info.virtualSizeBytes };
}

/** `qemu-img version ...` (for `cloudimg-sync check`); QEMU_IMG_MISSING when it is not installed. */
export async function qemuImgVersion(): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(QEMU_IMG, ['--version'], (err, stdout) => {
      if ((err as NodeJS.ErrnoException | null)?.code === 'ENOENT') reject(new QemuImgMissingError(QEMU_IMG));
      else if (err) reject(new RawConversionError('(none)', `${QEMU_IMG} --version failed: ${err.message}`));
      else resolve(stdout.split('\n')[0]?.trim() ?? 'qemu-img');
    });
  });
}

function runQemuImg(args: readonly string[], source: string, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(QEMU_IMG, args, { stdio: ['ignore', 'ignore', 'pipe'], signal });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (text: string) => {
      if (stderr.length < STDERR_KEEP_BYTES) stderr += text.slice(0, STDERR_KEEP_BYTES - stderr.length);
    });
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') reject(new QemuImgMissingError(QEMU_IMG));
      else if (err.name === 'AbortError') reject(err);
      else reject(new RawConversionError(source, err.message, { cause: err }));
    });
    child.once('close', (code, killedBy) => {
      if (code === 0) return resolve();
      if (signal?.aborted) return; // the 'error' event carried the AbortError
      const detail = stderr.trim().split('\n').at(-1) || (killedBy ? `qemu-img killed by ${killedBy}` : `qemu-img exited with ${code}`);
      reject(new RawConversionError(source, detail));
    });
  });
}
