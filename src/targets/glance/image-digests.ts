import { createHash, type Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';

/**
 * What we know of the bytes handed to Glance: sha256 ties them to the signed SHA256SUMS, md5 and sha512
 * are what Glance reports back (`checksum`, `os_hash_value`), so the two ends can be compared.
 */
export interface ImageDigests extends GlanceDigests {
  sha256: string;
}

/** What Glance reports of the bytes it holds: size, `checksum` (md5), `os_hash_value` (sha512). */
export interface GlanceDigests {
  sizeBytes: number;
  md5: string;
  sha512: string;
}

/** md5 and sha512 (and sha256 unless told not to) of a byte sequence fed in chunks, with the running byte count. */
class ImageHasher {
  private readonly md5 = createHash('md5');
  private readonly sha512 = createHash('sha512');
  private readonly sha256: Hash | undefined;
  bytes = 0;

  constructor(withSha256: boolean) {
    this.sha256 = withSha256 ? createHash('sha256') : undefined;
  }

  update(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    this.md5.update(chunk);
    this.sha512.update(chunk);
    this.sha256?.update(chunk);
  }

  digest(): GlanceDigests & { sha256?: string } {
    return {
      sizeBytes: this.bytes,
      ...(this.sha256 ? { sha256: this.sha256.digest('hex') } : {}),
      md5: this.md5.digest('hex'),
      sha512: this.sha512.digest('hex'),
    };
  }
}

const READ_CHUNK_BYTES = 1024 * 1024;
/** Chunk n is read into buffer n % RING_BUFFERS: one being sent, one being read ahead, one to spare. */
const RING_BUFFERS = 3;

export interface FileUploadReaderOptions {
  signal?: AbortSignal;
  /**
   * Digest the bytes as they are read, for a file whose md5 and sha512 are not known yet. Default true;
   * `glance`: md5 and sha512 only (a raw conversion, which no signed sha256 describes).
   */
  digest?: boolean | 'glance';
}

/**
 * A file's bytes for upload, through a ring of three reused 1 MiB buffers, digested as they are read
 * unless told not to. A fresh buffer per read (what fs streams do) leaves tens of MiB of spent buffers
 * waiting for the garbage collector at upload speed; reusing them keeps the process's memory flat.
 *
 * The contract that makes reuse safe: a chunk must be finished with (written out, copied) before the
 * consumer asks for the chunk after next. undici's iterable request body is such a consumer: it waits
 * for the socket to drain before pulling again. A consumer that buffers ahead would see later bytes in
 * earlier chunks; Glance's md5 and sha512 would then differ from the verified file's, and the image is
 * deleted. Each iteration reads the file afresh.
 */
export class FileUploadReader implements AsyncIterable<Buffer> {
  private result: (GlanceDigests & { sha256?: string }) | undefined;
  private wholeFileBytes: number | undefined;
  /** Told the running byte count after every chunk (upload progress). */
  onBytes: ((bytes: number) => void) | undefined;

  constructor(readonly filePath: string, private readonly options: FileUploadReaderOptions = {}) {}

  /** The size of the file as last read to its end; undefined before one whole read. */
  bytesRead(): number | undefined {
    return this.wholeFileBytes;
  }

  /** The digests once the whole file was read (when digesting with sha256); undefined before the end. */
  digests(): ImageDigests | undefined {
    const result = this.result;
    return result?.sha256 !== undefined ? { ...result, sha256: result.sha256 } : undefined;
  }

  /** md5 and sha512 once the whole file was read (when digesting); undefined before the end. */
  glanceDigests(): GlanceDigests | undefined {
    const result = this.result;
    return result && { sizeBytes: result.sizeBytes, md5: result.md5, sha512: result.sha512 };
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    this.result = undefined;
    this.wholeFileBytes = undefined;
    const hasher = this.options.digest === false ? undefined : new ImageHasher(this.options.digest !== 'glance');
    const ring = Array.from({ length: RING_BUFFERS }, () => Buffer.allocUnsafe(READ_CHUNK_BYTES));
    const file = await open(this.filePath, 'r');
    let reading: Promise<number> | undefined;
    try {
      let slot = 0;
      let position = 0;
      reading = readAt(file, ring[slot]!, 0);
      for (;;) {
        const bytesRead = await reading;
        if (bytesRead === 0) break;
        this.options.signal?.throwIfAborted();
        const chunk = ring[slot]!.subarray(0, bytesRead);
        position += bytesRead;
        slot = (slot + 1) % RING_BUFFERS;
        reading = readAt(file, ring[slot]!, position);
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

async function readAt(file: FileHandle, buffer: Buffer, position: number): Promise<number> {
  return (await file.read(buffer, 0, buffer.length, position)).bytesRead;
}

/** sha256 of a whole file, and its length: is a cached file still the one verified? */
export async function sha256OfFile(filePath: string, signal?: AbortSignal): Promise<{ sha256: string; sizeBytes: number }> {
  const hash = createHash('sha256');
  // One buffer, reused: the hash has taken the bytes in before the next read overwrites them.
  const buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES);
  const file = await open(filePath, 'r');
  let sizeBytes = 0;
  try {
    for (;;) {
      signal?.throwIfAborted();
      const bytesRead = await readAt(file, buffer, sizeBytes);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      sizeBytes += bytesRead;
    }
  } finally {
    await file.close();
  }
  return { sha256: hash.digest('hex'), sizeBytes };
}

/** md5 and sha512 of a whole file: what Glance must report for it. */
export async function glanceDigestsOfFile(filePath: string, signal?: AbortSignal): Promise<GlanceDigests> {
  const reader = new FileUploadReader(filePath, { signal, digest: 'glance' });
  for await (const _ of reader) { /* digested while read */ }
  return reader.glanceDigests()!;
}

/** Digest a whole file (for imports, where Glance fetches the bytes itself). */
export async function digestFile(filePath: string, signal?: AbortSignal): Promise<ImageDigests> {
  const reader = new FileUploadReader(filePath, { signal });
  for await (const _ of reader) { /* digested while read */ }
  return reader.digests()!;
}
