/**
 * Writes a download into its `.part`, around the page cache (O_DIRECT) where the filesystem allows it.
 *
 * Why: an image is written once and not read again by this process (a directory target links it, a Glance
 * upload reads it once), yet buffered writes copy every byte into page cache that must first be allocated:
 * 1 GiB of fresh pages per image, evicting whatever the host's other services had cached, then written back
 * by the sync-behind fdatasync in this process's time. Measured on the bench machine (a VM whose free memory
 * is handed back to the host): 1 GiB of buffered 1 MiB writes costs 0.25 s of system time into recently used
 * memory and 2.2-2.6 s into memory the host took back; the same writes with O_DIRECT cost 0.12-0.17 s and
 * leave nothing to write back. See src/direct-io.ts.
 *
 * O_DIRECT wants the memory address, the file offset and the length aligned; the buffer is page-aligned, a
 * piece that starts or ends off a block boundary (the tail, the first piece of a resume) goes through the page
 * cache as before, and so does everything when the filesystem refuses O_DIRECT (tmpfs, some FUSE/NFS setups).
 * Durability is unchanged: the caller still fsyncs the finished file (which also flushes the disk's cache).
 */
import { closeSync, constants, openSync, write as writeCallback, writeSync } from 'node:fs';
import { promisify } from 'node:util';
import type { FileHandle } from 'node:fs/promises';
import { DIRECT_ALIGN_BYTES } from '../direct-io.js';
import { errorCode } from '../errors.js';

const writeAt = promisify(writeCallback);

export class PartWriter {
  private directFd: number | undefined;

  /**
   * `direct`: try O_DIRECT for aligned pieces. The second descriptor is opened through /proc/self/fd, so it is
   * the very file `fh` has open, never whatever the path names now.
   */
  constructor(private readonly fh: FileHandle, direct: boolean, bufferBytes: number) {
    if (!direct || bufferBytes % DIRECT_ALIGN_BYTES !== 0 || constants.O_DIRECT === undefined) return;
    try {
      this.directFd = openSync(`/proc/self/fd/${fh.fd}`, constants.O_WRONLY | constants.O_DIRECT);
    } catch {
      this.directFd = undefined; // no /proc, or a filesystem without O_DIRECT: the page cache it is
    }
  }

  /** Whether writes still bypass the page cache (nothing of theirs left to flush behind). */
  get direct(): boolean {
    return this.directFd !== undefined;
  }

  /**
   * How many bytes to gather before writing when the file stands at `position`: a whole buffer, or less so that
   * a piece starting off a block boundary ends on one and the pieces after it can go direct.
   */
  pieceBytes(position: number, bufferBytes: number): number {
    const misalignment = position % DIRECT_ALIGN_BYTES;
    return this.direct && misalignment !== 0 && bufferBytes > DIRECT_ALIGN_BYTES ? bufferBytes - misalignment : bufferBytes;
  }

  /**
   * A blocking write, for the page cache (and the pieces that cannot go direct): copying a MiB into it takes a fraction of
   * a millisecond, and from libuv's thread pool, whose threads take turns, the same writes cost the kernel more.
   */
  write(buffer: Buffer, length: number, position: number): void {
    let written = 0;
    if (this.directFd !== undefined && position % DIRECT_ALIGN_BYTES === 0) {
      const alignedBytes = length - (length % DIRECT_ALIGN_BYTES);
      try {
        while (written < alignedBytes) written += writeSync(this.directFd, buffer, written, alignedBytes - written, position + written);
      } catch (err) {
        // EINVAL: this buffer or filesystem does not do direct I/O after all; the rest goes through the page cache.
        if (errorCode(err) !== 'EINVAL') throw err;
        this.close();
      }
    }
    while (written < length) written += writeSync(this.fh.fd, buffer, written, length - written, position + written);
  }

  /**
   * The same write, with its direct part done by libuv's thread pool: the caller goes on receiving into another
   * buffer meanwhile, so the network and the disk overlap instead of taking turns (a direct write waits for the
   * device: ~0.9 s per GiB here). Only worth it, and only used, while writes go direct: a buffered write is a
   * memory copy, cheaper on this thread than handed to the pool. `buffer` must stay untouched until it settles.
   */
  async writeAsync(buffer: Buffer, length: number, position: number): Promise<void> {
    let written = 0;
    const fd = this.directFd;
    if (fd !== undefined && position % DIRECT_ALIGN_BYTES === 0) {
      const alignedBytes = length - (length % DIRECT_ALIGN_BYTES);
      try {
        while (written < alignedBytes) written += (await writeAt(fd, buffer, written, alignedBytes - written, position + written)).bytesWritten;
      } catch (err) {
        if (errorCode(err) !== 'EINVAL') throw err;
        if (this.directFd === fd) this.close();
      }
    }
    while (written < length) written += writeSync(this.fh.fd, buffer, written, length - written, position + written);
  }

  close(): void {
    if (this.directFd === undefined) return;
    const fd = this.directFd;
    this.directFd = undefined;
    closeSync(fd);
  }
}
