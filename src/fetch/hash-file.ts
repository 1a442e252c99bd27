import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

export interface FileHashes {
  sizeBytes: number;
  /** Hex digest per algorithm asked for. */
  hashes: Record<string, string>;
}

/** Hash a file on disk in one streamed pass (memory flat), e.g. to re-verify a cached copy after a crash. */
export async function hashFile(path: string, algorithms: readonly string[]): Promise<FileHashes> {
  const hashers = algorithms.map((a) => [a, createHash(a)] as const);
  let sizeBytes = 0;
  for await (const chunk of createReadStream(path, { highWaterMark: 1024 * 1024 }) as AsyncIterable<Buffer>) {
    sizeBytes += chunk.length;
    for (const [, h] of hashers) h.update(chunk);
  }
  return { sizeBytes, hashes: Object.fromEntries(hashers.map(([a, h]) => [a, h.digest('hex')])) };
}
