import { createHash, type Hash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';

/**
 * What we know of the bytes handed to Glance: sha256 ties them to the signed SHA256SUMS, md5 and sha512
 * are what Glance reports back (`checksum`, `os_hash_value`), so the two ends can be compared.
 */
export interface ImageDigests {
  sizeBytes: number;
  sha256: string;
  md5: string;
  sha512: string;
}

/** sha256, md5 and sha512 of a byte sequence fed in chunks, with the running byte count. */
class ImageHasher {
  private readonly hashes: Record<'sha256' | 'md5' | 'sha512', Hash> = {
    sha256: createHash('sha256'), md5: createHash('md5'), sha512: createHash('sha512'),
  };
  bytes = 0;

  update(chunk: Uint8Array): void {
    this.bytes += chunk.length;
    for (const hash of Object.values(this.hashes)) hash.update(chunk);
  }

  digest(): ImageDigests {
    return {
      sizeBytes: this.bytes,
      sha256: this.hashes.sha256.digest('hex'),
      md5: this.hashes.md5.digest('hex'),
      sha512: this.hashes.sha512.digest('hex'),
    };
  }
}

/** A pass-through stream that digests every byte going through it. */
export class DigestingStream extends Transform {
  private readonly hasher = new ImageHasher();
  private result: ImageDigests | undefined;
  /** Told the running byte count after every chunk (upload progress). */
  onBytes: ((bytes: number) => void) | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.hasher.update(chunk);
    this.onBytes?.(this.hasher.bytes);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.result = this.hasher.digest();
    callback();
  }

  /** The digests once every byte went through; undefined before the end. */
  digests(): ImageDigests | undefined {
    return this.result;
  }
}

const READ_CHUNK_BYTES = 1024 * 1024;
/** Chunk n is read into buffer n % RING_BUFFERS: one being sent, one being read ahead, one to spare. */
const RING_BUFFERS = 3;

/**
 * A file's bytes for upload, digested as they are read, through a ring of three reused 1 MiB buffers.
 * A fresh buffer per read (what fs streams do) leaves tens of MiB of spent buffers waiting for the
 * garbage collector at upload speed; reusing them keeps the process's memory flat.
 *
 * The contract that makes reuse safe: a chunk must be finished with (written out, copied) before the
 * consumer asks for the chunk after next. undici's iterable request body is such a consumer: it waits
 * for the socket to drain before pulling again. A consumer that buffers ahead would see later bytes in
 * earlier chunks; Glance's md5 and sha512 would then differ from `digests()`, and the image is deleted.
 * Each iteration reads the file afresh.
 */
export class DigestedFileReader implements AsyncIterable<Buffer> {
  private result: ImageDigests | undefined;
  /** Told the running byte count after every chunk (upload progress). */
  onBytes: ((bytes: number) => void) | undefined;

  constructor(readonly filePath: string, private readonly signal?: AbortSignal) {}

  /** The digests once the whole file was read; undefined before the end. */
  digests(): ImageDigests | undefined {
    return this.result;
  }

  async *[Symbol.asyncIterator](): AsyncIterator<Buffer> {
    this.result = undefined;
    const hasher = new ImageHasher();
    const ring = Array.from({ length: RING_BUFFERS }, () => Buffer.allocUnsafe(READ_CHUNK_BYTES));
    const file = await open(this.filePath, 'r');
    let reading: Promise<number> | undefined;
    try {
      let slot = 0;
      reading = readAt(file, ring[slot]!, 0);
      for (;;) {
        const bytesRead = await reading;
        if (bytesRead === 0) break;
        this.signal?.throwIfAborted();
        const chunk = ring[slot]!.subarray(0, bytesRead);
        slot = (slot + 1) % RING_BUFFERS;
        reading = readAt(file, ring[slot]!, hasher.bytes + bytesRead);
        hasher.update(chunk);
        this.onBytes?.(hasher.bytes);
        yield chunk;
      }
      this.result = hasher.digest();
    } finally {
      await reading?.catch(() => undefined);
      await file.close();
    }
  }
}

async function readAt(file: FileHandle, buffer: Buffer, position: number): Promise<number> {
  return (await file.read(buffer, 0, buffer.length, position)).bytesRead;
}

/** Digest a whole file (for imports, where Glance fetches the bytes itself). */
export async function digestFile(filePath: string, signal?: AbortSignal): Promise<ImageDigests> {
  const reader = new DigestedFileReader(filePath, signal);
  for await (const _ of reader) { /* digested while read */ }
  return reader.digests()!;
}
