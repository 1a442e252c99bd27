import { createHash, type Hash } from 'node:crypto';
import { constants } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { pageAlignedBuffer } from '../../direct-io.js';
import { errorCode } from '../../errors.js';

/**
 * What we know of the bytes handed to Glance: sha256 ties them to the signed SHA256SUMS; `digests` holds the
 * ones Glance reports back (`os_hash_value` in its `os_hash_algo`, or the md5 `checksum` of a Glance without
 * multihash), so the two ends can be compared.
 */
export interface ImageDigests {
  sizeBytes: number;
  sha256: string;
  /** Hex digest by node crypto algorithm name (sha256 included). */
  digests: Record<string, string>;
}

/** sha256 and the given digests of a byte sequence fed in chunks, with the running byte count. */
class ImageHasher {
  private readonly hashes: Map<string, Hash>;
  bytes = 0;

  constructor(algorithms: readonly string[]) {
    this.hashes = new Map([...new Set(['sha256', ...algorithms])].map((a) => [a, createHash(a)]));
  }

  update(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    for (const hash of this.hashes.values()) hash.update(chunk);
  }

  digest(): ImageDigests {
    const digests = Object.fromEntries([...this.hashes].map(([a, h]) => [a, h.digest('hex')]));
    return { sizeBytes: this.bytes, sha256: digests.sha256!, digests };
  }
}

const READ_CHUNK_BYTES = 1024 * 1024;
/** Chunk n is read into buffer n % RING_BUFFERS: one being sent, one being read ahead, one to spare. */
const RING_BUFFERS = 3;

export interface FileUploadReaderOptions {
  signal?: AbortSignal;
  /**
   * Digests to compute as the bytes are read (sha256 always among them), for a file whose digests are not
   * known yet; false: none. Default: sha256 alone.
   */
  digest?: false | readonly string[];
}

/**
 * A file's bytes for upload, through a ring of three reused 1 MiB buffers, digested as they are read
 * unless told not to. A fresh buffer per read (what fs streams do) leaves tens of MiB of spent buffers
 * waiting for the garbage collector at upload speed; reusing them keeps the process's memory flat.
 * The file is read around the page cache (O_DIRECT) where the filesystem allows it: the download wrote it
 * that way, and reading 1 GiB through the page cache from disk cost 1.9 s of system time here against
 * 0.06-0.1 s direct (see src/direct-io.ts).
 *
 * The contract that makes reuse safe: a chunk must be finished with (written out, copied) before the
 * consumer asks for the chunk after next. undici's iterable request body is such a consumer: it waits
 * for the socket to drain before pulling again. A consumer that buffers ahead would see later bytes in
 * earlier chunks; Glance's md5 and sha512 would then differ from the verified file's, and the image is
 * deleted. Each iteration reads the file afresh.
 */
export class FileUploadReader implements AsyncIterable<Buffer> {
  private result: ImageDigests | undefined;
  private wholeFileBytes: number | undefined;
  /** Told the running byte count after every chunk (upload progress). */
  onBytes: ((bytes: number) => void) | undefined;

  constructor(readonly filePath: string, private readonly options: FileUploadReaderOptions = {}) {}

  /** The size of the file as last read to its end; undefined before one whole read. */
  bytesRead(): number | undefined {
    return this.wholeFileBytes;
  }

  /** The digests once the whole file was read (when digesting); undefined before the end. */
  digests(): ImageDigests | undefined {
    return this.result;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    this.result = undefined;
    this.wholeFileBytes = undefined;
    const hasher = this.options.digest === false ? undefined : new ImageHasher(this.options.digest ?? []);
    const ring = Array.from({ length: RING_BUFFERS }, () => pageAlignedBuffer(READ_CHUNK_BYTES));
    const file = await UploadFile.open(this.filePath);
    let reading: Promise<number> | undefined;
    try {
      let slot = 0;
      let position = 0;
      reading = file.readAt(ring[slot]!, 0);
      for (;;) {
        const bytesRead = await reading;
        if (bytesRead === 0) break;
        this.options.signal?.throwIfAborted();
        const chunk = ring[slot]!.subarray(0, bytesRead);
        position += bytesRead;
        slot = (slot + 1) % RING_BUFFERS;
        reading = file.readAt(ring[slot]!, position);
        hasher?.update(chunk);
        this.onBytes?.(position);
        yield chunk;
      }
      this.wholeFileBytes = position;
      this.result = hasher?.digest();
    } finally {
      await reading?.catch(() => undefined);
      await file.close();
    }
  }
}

/** A file opened O_DIRECT where that works, else through the page cache; one read at a time. */
class UploadFile {
  private constructor(private readonly path: string, private handle: FileHandle, private direct: boolean) {}

  static async open(path: string): Promise<UploadFile> {
    if (constants.O_DIRECT !== undefined) {
      try {
        return new UploadFile(path, await open(path, constants.O_RDONLY | constants.O_DIRECT), true);
      } catch (err) {
        if (errorCode(err) !== 'EINVAL') throw err; // a filesystem without O_DIRECT: read through the page cache
      }
    }
    return new UploadFile(path, await open(path, 'r'), false);
  }

  async readAt(buffer: Buffer, position: number): Promise<number> {
    try {
      return (await this.handle.read(buffer, 0, buffer.length, position)).bytesRead;
    } catch (err) {
      // A buffer or an offset O_DIRECT does not take: the rest is read through the page cache.
      if (!this.direct || errorCode(err) !== 'EINVAL') throw err;
      const direct = this.handle;
      // The very file open now (not whatever the path names since), where /proc is mounted.
      this.handle = await open(`/proc/self/fd/${direct.fd}`, 'r').catch(() => open(this.path, 'r'));
      this.direct = false;
      await direct.close();
      return (await this.handle.read(buffer, 0, buffer.length, position)).bytesRead;
    }
  }

  close(): Promise<void> {
    return this.handle.close();
  }
}

/** sha256 and the given digests of a whole file (for imports, where Glance fetches the bytes itself). */
export async function digestFile(filePath: string, algorithms: readonly string[], signal?: AbortSignal): Promise<ImageDigests> {
  const reader = new FileUploadReader(filePath, { signal, digest: algorithms });
  for await (const _ of reader) { /* digested while read */ }
  return reader.digests()!;
}
