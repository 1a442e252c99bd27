import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';

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

const READ_CHUNK_BYTES = 1024 * 1024;

/** A pass-through stream that digests every byte going through it. */
export class DigestingStream extends Transform {
  private readonly hashes: Record<'sha256' | 'md5' | 'sha512', Hash> = {
    sha256: createHash('sha256'), md5: createHash('md5'), sha512: createHash('sha512'),
  };
  private bytes = 0;
  private result: ImageDigests | undefined;
  /** Told the running byte count after every chunk (upload progress). */
  onBytes: ((bytes: number) => void) | undefined;

  override _transform(chunk: Buffer, _encoding: BufferEncoding, callback: TransformCallback): void {
    this.bytes += chunk.length;
    this.onBytes?.(this.bytes);
    for (const hash of Object.values(this.hashes)) hash.update(chunk);
    callback(null, chunk);
  }

  override _flush(callback: TransformCallback): void {
    this.result = {
      sizeBytes: this.bytes,
      sha256: this.hashes.sha256.digest('hex'),
      md5: this.hashes.md5.digest('hex'),
      sha512: this.hashes.sha512.digest('hex'),
    };
    callback();
  }

  /** The digests once every byte went through; undefined before the end. */
  digests(): ImageDigests | undefined {
    return this.result;
  }
}

/** Open `filePath` for upload: the bytes as read, digested on the way. */
export function openDigested(filePath: string): DigestingStream {
  const digesting = new DigestingStream({ highWaterMark: READ_CHUNK_BYTES });
  // pipeline() forwards a read error to `digesting` (and so to the upload reading from it).
  pipeline(createReadStream(filePath, { highWaterMark: READ_CHUNK_BYTES }), digesting).catch(() => undefined);
  return digesting;
}

/** Digest a whole file (for imports, where Glance fetches the bytes itself). */
export async function digestFile(filePath: string, signal?: AbortSignal): Promise<ImageDigests> {
  const digesting = new DigestingStream();
  await pipeline(createReadStream(filePath, { highWaterMark: READ_CHUNK_BYTES }), digesting, async (source: AsyncIterable<Buffer>) => {
    for await (const _ of source) { /* drain */ }
  }, { signal });
  return digesting.digests()!;
}
