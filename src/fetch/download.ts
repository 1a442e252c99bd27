/**
 * Streaming, resumable, verified download of one large file.
 *
 * Bytes go to `<dest>.part` while being hashed in the same pass; the validator needed to resume safely
 * (ETag / Last-Modified, size, URL) sits next to it in `<dest>.part.json`. A later attempt, in this
 * process or after a crash, re-hashes the prefix on disk and asks for the rest with `Range` + `If-Range`.
 * Only a file whose sha256 matches is renamed to `dest` (fsync'ed first unless `durable: false`): a file at
 * `dest` is always complete and verified, a `.part` never is.
 */
import { createHash, type Hash } from 'node:crypto';
import { lstat, readFile, rename, rm, statfs, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { Dispatcher } from 'undici';
import { ChecksumMismatchError, HttpStatusError, SyncError, errorCode } from '../errors.js';
import type { Logger } from '../log.js';
import { fsyncPath } from '../fsync.js';
import { createExclusive, openExistingForUpdate, removeRegularFile, writeFileExclusive } from '../local-files.js';
import { pageAlignedBuffer } from '../direct-io.js';
import { PartWriter } from './part-writer.js';
import { abandonBody, getFollowingRedirects, headerValue, policyOf, watchBodySpeed, retryOptionsFor, withRetries } from './http-client.js';

export interface FreeSpace {
  bavail: number | bigint;
  bsize: number | bigint;
}

export interface DownloadOptions {
  client?: Dispatcher;
  /** Hex sha256 the finished file must have; without it the file is renamed into place unchecked. */
  expectedSha256?: string;
  /**
   * Size the file must have (from signed metadata). A response announcing another size fails before its body
   * is read, and one sending more bytes is cut off at the first byte too many; either discards the `.part`.
   */
  expectedSizeBytes?: number;
  /** Largest file accepted: a bigger Content-Length, or a body that passes it, fails with IMAGE_TOO_LARGE. */
  maxBytes?: number;
  /** Further digests computed in the same pass (any `crypto.createHash` name), e.g. `['sha512']`. */
  extraHashAlgorithms?: string[];
  retries?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Aborting leaves a `.part` that a later call resumes. */
  signal?: AbortSignal;
  log?: Logger;
  /** Called for every chunk received; throttle on the caller's side. `totalBytes` is undefined when unknown. */
  onProgress?: (bytesDone: number, totalBytes: number | undefined) => void;
  /** Free-space probe of a directory; injectable for tests. */
  statfs?: (dir: string) => Promise<FreeSpace>;
  /** Size of the write buffer: the file is written in pieces of this size. */
  writeBufferBytes?: number;
  /**
   * false: nothing is forced to disk (no fsync), for a copy that is deleted again within the cycle. Its pieces
   * go around the page cache like a durable file's (it is read back only when a stream publication failed),
   * but the disk's own cache is not flushed and the pieces that went through the page cache are not written
   * back: after a power loss its bytes may be gone, so the caller must not record it as a cached copy before
   * `makeDurable`. A `.part` resumed after such a loss fails the sha256 check and is redone. Default true.
   */
  durable?: boolean;
  /**
   * Receives every byte of the file once, in order from byte 0 (bytes already on disk from an earlier attempt
   * first), while the download runs; its promise applies backpressure. If the download has to start over after
   * bytes were handed out (the server ignored Range, the file changed upstream), `abort` is called instead and
   * the sink gets nothing more: what it received is void.
   */
  sink?: DownloadSink;
}

export interface DownloadSink {
  /** The file's total size (undefined when the server does not say), once, before the first write. */
  size?(totalBytes: number | undefined): void;
  write(chunk: Buffer): void | Promise<void>;
  abort(reason: Error): void;
}

/** Hands bytes to a sink exactly once, in order, whatever resumes and restarts the download goes through. */
class SinkFeeder {
  private fedBytes = 0;
  private aborted = false;
  private announced = false;
  private announcedBytes: number | undefined;

  constructor(private readonly sink: DownloadSink | undefined) {}

  /** The total size as an attempt learns it; a later attempt that sees another size voids the stream. */
  announce(totalBytes: number | undefined): void {
    if (!this.sink || this.aborted) return;
    if (!this.announced) {
      this.announced = true;
      this.announcedBytes = totalBytes;
      this.sink.size?.(totalBytes);
    } else if (totalBytes !== undefined && this.announcedBytes !== undefined && totalBytes !== this.announcedBytes) {
      this.abort(new Error(`the file's size changed from ${this.announcedBytes} to ${totalBytes} bytes mid-download`));
    }
  }

  /** `chunk` holds the file's bytes from `position`. */
  async feed(chunk: Buffer, position: number): Promise<void> {
    if (!this.sink || this.aborted) return;
    if (position > this.fedBytes) {
      this.abort(new Error(`download skipped bytes ${this.fedBytes}-${position}`));
      return;
    }
    const fresh = chunk.subarray(this.fedBytes - position);
    if (fresh.length === 0) return;
    this.fedBytes += fresh.length;
    await this.sink.write(fresh);
  }

  /** The download restarts at `position`: bytes already handed out beyond it are void. */
  restartAt(position: number): void {
    if (position < this.fedBytes) this.abort(new Error(`download restarted at byte ${position} after ${this.fedBytes} bytes were streamed`));
  }

  private abort(reason: Error): void {
    if (this.aborted) return;
    this.aborted = true;
    this.sink?.abort(reason);
  }
}

export interface DownloadResult {
  path: string;
  sizeBytes: number;
  sha256: string;
  /** Hex digest per algorithm, sha256 included. */
  hashes: Record<string, string>;
  /** Offset the successful attempt continued from: bytes that were already on disk. */
  resumedFromBytes: number;
  /** HTTP requests made, 1 when nothing failed. */
  attempts: number;
  etag?: string;
}

export class DiskFullError extends SyncError {
  constructor(readonly dir: string, readonly neededBytes?: number, readonly freeBytes?: number, cause?: unknown) {
    const amounts = neededBytes === undefined
      ? 'the disk filled up while writing'
      : `need ${neededBytes} bytes (${mib(neededBytes)}), ${freeBytes ?? 0} free (${mib(freeBytes ?? 0)})`;
    super(
      'DISK_FULL',
      `not enough space in ${dir}: ${amounts}`,
      `free space in ${dir} or point the download directory at a larger filesystem; the partial download is kept and resumes`,
      { cause },
    );
  }
}

export class TruncatedBodyError extends SyncError {
  constructor(readonly url: string, readonly receivedBytes: number, readonly expectedBytes: number) {
    super(
      'TRUNCATED_BODY',
      `GET ${url} ended after ${receivedBytes} of ${expectedBytes} bytes`,
      'the connection dropped mid-file; it resumes from the bytes on disk',
      { retryable: true },
    );
  }
}

export class ImageTooLargeError extends SyncError {
  constructor(readonly url: string, readonly maxBytes: number, readonly declaredBytes?: number) {
    super(
      'IMAGE_TOO_LARGE',
      declaredBytes === undefined
        ? `GET ${url} sent more than ${maxBytes} bytes; abandoned and deleted`
        : `GET ${url} announces ${declaredBytes} bytes, more than the ${maxBytes} allowed; not downloaded`,
      'a cloud image is far smaller: check source.url; raise source.maxImageBytes only if images really are this large',
    );
  }
}

/** The file upstream is not the size its signed metadata gives: not worth another attempt this cycle. */
export class SizeMismatchError extends SyncError {
  constructor(readonly url: string, readonly expectedBytes: number, readonly actualBytes: number, announced: boolean) {
    super(
      'SIZE_MISMATCH',
      announced
        ? `GET ${url} announces ${actualBytes} bytes, the signed metadata says ${expectedBytes}`
        : `GET ${url} sent ${actualBytes > expectedBytes ? 'more than' : 'only'} ${Math.min(actualBytes, expectedBytes)} of the ${expectedBytes} bytes the signed metadata says; download aborted`,
      'upstream is mid-publication or the file is not the one signed for; the partial file was deleted and it is fetched again next cycle',
    );
  }
}

/** Passes the body through, failing at the first chunk that would carry the file past `limitBytes`. */
async function* cappedBody(body: AsyncIterable<Buffer>, url: string, startBytes: number, limitBytes: number | undefined): AsyncIterable<Buffer> {
  let received = startBytes;
  for await (const chunk of body) {
    received += chunk.length;
    if (limitBytes !== undefined && received > limitBytes) throw new SizeMismatchError(url, limitBytes, received, false);
    yield chunk;
  }
}

/** The server's answer does not fit what was on disk (416, or a 206 starting elsewhere): start over. */
class RestartDownloadError extends SyncError {
  constructor(url: string, detail: string) {
    super('DOWNLOAD_RESTART', `GET ${url}: ${detail}; restarting from byte 0`, 'none needed; retried at once', {
      retryable: true,
    });
  }
}

/**
 * The file is written direct in pieces of 4 MiB (two buffers: one being written while the body fills the
 * other). Each direct write is a request the disk completes on its own, with a thread switch and a
 * notification of a virtual disk each: 4 MiB pieces cost ~0.1-0.3 CPU-s per GiB less than 1 MiB ones for
 * 6 MiB more memory (downloadFile alone, 1 GiB, 6 alternating runs: median 2.42 vs 2.74 CPU-s).
 */
const WRITE_BUFFER_BYTES = 4 * 1024 * 1024;

/** Cached downloads are the daemon's own: nobody else reads them. */
const PART_MODE = 0o600;

function mib(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MiB`;
}

/** What makes a `.part` safe to continue: the same URL and an unchanged representation. */
interface ResumeValidator {
  url: string;
  etag?: string;
  lastModified?: string;
  totalBytes?: number;
}

function parseValidator(raw: string): ResumeValidator | undefined {
  try {
    const v = JSON.parse(raw) as Record<string, unknown>;
    if (typeof v.url !== 'string') return undefined;
    return {
      url: v.url,
      etag: typeof v.etag === 'string' ? v.etag : undefined,
      lastModified: typeof v.lastModified === 'string' ? v.lastModified : undefined,
      totalBytes: typeof v.totalBytes === 'number' ? v.totalBytes : undefined,
    };
  } catch {
    return undefined;
  }
}

/** If-Range wants a strong validator; a weak ETag only ever earns a full 200, which is still correct. */
function ifRangeValue(v: ResumeValidator): string | undefined {
  if (v.etag && !v.etag.startsWith('W/')) return v.etag;
  return v.lastModified ?? v.etag;
}

function header(response: Dispatcher.ResponseData, name: string): string | undefined {
  return headerValue(response.headers[name]);
}

function parseContentRange(value: string | undefined): { start: number; totalBytes?: number } | undefined {
  const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(value?.trim() ?? '');
  if (!m) return undefined;
  return { start: Number(m[1]), totalBytes: m[3] === '*' ? undefined : Number(m[3]) };
}

interface Paths {
  dest: string;
  part: string;
  sidecar: string;
  dir: string;
}

async function fileSize(path: string): Promise<number | undefined> {
  try {
    return (await lstat(path)).size;
  } catch (err) {
    if (errorCode(err) === 'ENOENT') return undefined;
    throw err;
  }
}

async function discardPartial(paths: Paths): Promise<void> {
  await rm(paths.part, { force: true });
  await rm(paths.sidecar, { force: true });
}

/** How many bytes of an existing `.part` can be kept, and the validator to ask for the rest with. */
async function resumePoint(url: string, paths: Paths): Promise<{ offset: number; validator?: ResumeValidator }> {
  const partBytes = await fileSize(paths.part);
  if (!partBytes) return { offset: 0 };
  const validator = await readFile(paths.sidecar, 'utf8').then(parseValidator, () => undefined);
  if (!validator || validator.url !== url || !ifRangeValue(validator)) return { offset: 0 };
  const total = validator.totalBytes;
  if (total !== undefined && partBytes > total) return { offset: 0 };
  // A complete .part still needs its representation revalidated: ask again for the last byte.
  return { offset: total !== undefined && partBytes === total ? total - 1 : partBytes, validator };
}

async function ensureFreeSpace(paths: Paths, neededBytes: number, probe: (dir: string) => Promise<FreeSpace>): Promise<void> {
  const fs = await probe(paths.dir);
  const freeBytes = Number(fs.bavail) * Number(fs.bsize);
  if (freeBytes < neededBytes) throw new DiskFullError(paths.dir, neededBytes, freeBytes);
}

async function hashPrefix(url: string, fh: FileHandle, lengthBytes: number, hashers: Hash[], buffer: Buffer, feeder: SinkFeeder): Promise<void> {
  let position = 0;
  while (position < lengthBytes) {
    const { bytesRead } = await fh.read(buffer, 0, Math.min(buffer.length, lengthBytes - position), position);
    if (bytesRead === 0) throw new RestartDownloadError(url, '.part shrank while being re-hashed');
    const view = buffer.subarray(0, bytesRead);
    for (const h of hashers) h.update(view);
    await feeder.feed(Buffer.from(view), position); // a copy: the read buffer is reused
    position += bytesRead;
  }
}

/**
 * Dirty pages are flushed while the download runs (one fdatasync in flight at a time), so that the fsync
 * that makes the finished file durable has little left to write instead of the whole image. Only when the
 * writes go through the page cache: direct writes leave nothing dirty behind.
 */
const SYNC_BEHIND_BYTES = 64 * 1024 * 1024;

/**
 * Writes the body at `position` in pieces of the buffer's size and hashes each chunk as it arrives.
 * Whatever was received is on disk when this returns or throws, unless a write itself failed, so a resume
 * can start right after it.
 */
async function streamToFile(
  body: AsyncIterable<Buffer>,
  fh: FileHandle,
  position: number,
  hashers: Hash[],
  firstBuffer: Buffer,
  onChunk: (chunkBytes: number) => void,
  feeder: SinkFeeder,
  syncBehind: boolean,
): Promise<number> {
  // An image is not read back by this process soon, a scratch copy only when its stream failed: it bypasses
  // the page cache where it can. 1 GiB of scratch copy through the page cache cost a stream into Glance
  // 1.0-2.0 CPU-s more (bench F, --cpu-paths stream, A/B: 6.57 -> 4.58-5.03 CPU-s/GiB).
  const writer = new PartWriter(fh, true, firstBuffer.length);
  // Direct writes go to the thread pool, one at a time, from one buffer while the body fills the other.
  let buffer = firstBuffer;
  let spare = writer.direct ? pageAlignedBuffer(firstBuffer.length) : undefined;
  let inFlight: Promise<void> | undefined;
  const settle = async (): Promise<void> => {
    const write = inFlight;
    inFlight = undefined;
    await write;
  };
  let filled = 0;
  let writePosition = position;
  let pieceBytes = writer.pieceBytes(position, buffer.length);
  let writeFailed = false;
  let syncing: Promise<void> | undefined;
  let syncedPosition = position;
  let received = position;
  let receivedAll = false;
  try {
    for await (const chunk of body) {
      for (const h of hashers) h.update(chunk);
      await feeder.feed(chunk, received);
      received += chunk.length;
      let offset = 0;
      while (offset < chunk.length) {
        const copied = chunk.copy(buffer, filled, offset, offset + Math.min(pieceBytes - filled, chunk.length - offset));
        filled += copied;
        offset += copied;
        if (filled === pieceBytes) {
          if (syncBehind && !writer.direct && writePosition - syncedPosition >= SYNC_BEHIND_BYTES && !syncing) {
            syncedPosition = writePosition;
            syncing = fh.datasync().finally(() => {
              syncing = undefined;
            });
            syncing.catch(() => {}); // a failing disk shows again in the final fsync
          }
          writeFailed = true;
          if (spare !== undefined && writer.direct) {
            await settle(); // its error, if it failed, ends the transfer here
            inFlight = writer.writeAsync(buffer, filled, writePosition);
            inFlight.catch(() => {}); // awaited before the next piece is written or at the end
            [buffer, spare] = [spare, buffer];
          } else {
            await settle();
            writer.write(buffer, filled, writePosition);
          }
          writeFailed = false;
          writePosition += filled;
          filled = 0;
          pieceBytes = writer.pieceBytes(writePosition, buffer.length);
        }
      }
      onChunk(chunk.length);
    }
    receivedAll = true;
  } finally {
    // After a failed write the tail is not written, so the file never has a hole.
    await syncing?.catch(() => {});
    try {
      await settle();
    } catch (err) {
      writeFailed = true;
      // The body's own error, if it ended with one, is what the caller hears; else this write's.
      if (receivedAll) {
        writer.close();
        throw err;
      }
    }
    try {
      if (filled > 0 && !writeFailed) writer.write(buffer, filled, writePosition);
    } finally {
      writer.close();
    }
  }
  return writePosition + filled;
}

function asDiskFull(err: unknown, paths: Paths): unknown {
  return errorCode(err) === 'ENOSPC' || errorCode(err) === 'EDQUOT' ? new DiskFullError(paths.dir, undefined, undefined, err) : err;
}

interface Transfer {
  sizeBytes: number;
  hashers: Hash[];
  resumedFromBytes: number;
  etag?: string;
}

interface TransferContext {
  url: string;
  paths: Paths;
  algorithms: string[];
  buffer: Buffer;
  options: DownloadOptions;
  feeder: SinkFeeder;
  log?: Logger;
}

/** One HTTP request: continue or start the `.part`, return once the body has fully arrived. */
async function transferOnce(ctx: TransferContext): Promise<Transfer> {
  const { url, paths, options } = ctx;
  let { offset, validator } = await resumePoint(url, paths);
  if (offset === 0) await removeRegularFile(paths.sidecar);
  ctx.feeder.restartAt(offset);
  // Never through a symlink planted at the path: the image would be written wherever it points.
  const fh = offset > 0 ? await openExistingForUpdate(paths.part) : await createExclusive(paths.part, PART_MODE);
  try {
    if (offset > 0) await fh.truncate(offset);
    let hashers = ctx.algorithms.map((a) => createHash(a));
    // A resumed file's size is known from the earlier attempt: say it before streaming the bytes on disk.
    if (offset > 0) ctx.feeder.announce(validator?.totalBytes);
    if (offset > 0) await hashPrefix(url, fh, offset, hashers, ctx.buffer, ctx.feeder);

    const headers: Record<string, string> = { 'accept-encoding': 'identity' };
    const ifRange = validator && ifRangeValue(validator);
    if (offset > 0 && ifRange) {
      headers.range = `bytes=${offset}-`;
      headers['if-range'] = ifRange;
    }
    const { url: finalUrl, response } = await getFollowingRedirects(url, {
      client: options.client,
      headers,
      signal: options.signal,
    });
    const { statusCode, body } = response;
    let totalBytes: number | undefined;
    if (statusCode === 206 && offset > 0) {
      const range = parseContentRange(header(response, 'content-range'));
      if (range?.start !== offset) {
        abandonBody(body);
        await discardPartial(paths);
        throw new RestartDownloadError(finalUrl, `asked for bytes from ${offset}, got ${header(response, 'content-range')}`);
      }
      totalBytes = range.totalBytes;
      ctx.log?.info({ event: 'http.download.resume', url, fromBytes: offset, totalBytes }, 'resuming download');
    } else if (statusCode === 200) {
      if (offset > 0) {
        ctx.log?.info({ event: 'http.download.restart', url, discardedBytes: offset }, 'server sent the whole file; restarting');
        offset = 0;
        ctx.feeder.restartAt(0);
        hashers = ctx.algorithms.map((a) => createHash(a));
        await fh.truncate(0);
      }
      const length = Number(header(response, 'content-length'));
      totalBytes = Number.isFinite(length) && header(response, 'content-length') !== undefined ? length : undefined;
    } else if (statusCode === 416) {
      await body.dump();
      await discardPartial(paths);
      throw new RestartDownloadError(finalUrl, `range from byte ${offset} not satisfiable`);
    } else {
      await body.dump();
      throw new HttpStatusError(finalUrl, statusCode);
    }

    const expected = options.expectedSizeBytes;
    if (expected !== undefined && totalBytes !== undefined && totalBytes !== expected) {
      abandonBody(body);
      await discardPartial(paths);
      throw new SizeMismatchError(finalUrl, expected, totalBytes, true);
    }
    const maxBytes = options.maxBytes;
    if (maxBytes !== undefined && totalBytes !== undefined && totalBytes > maxBytes) {
      abandonBody(body);
      await discardPartial(paths);
      throw new ImageTooLargeError(finalUrl, maxBytes, totalBytes);
    }
    ctx.feeder.announce(totalBytes);
    const etag = header(response, 'etag') ?? (statusCode === 206 ? validator?.etag : undefined);
    const lastModified = header(response, 'last-modified') ?? (statusCode === 206 ? validator?.lastModified : undefined);
    try {
      if (totalBytes !== undefined) await ensureFreeSpace(paths, totalBytes - offset, options.statfs ?? statfs);
      const next: ResumeValidator = { url, etag, lastModified, totalBytes };
      await writeFileExclusive(paths.sidecar, JSON.stringify(next), PART_MODE);
    } catch (err) {
      abandonBody(body);
      throw asDiskFull(err, paths);
    }

    let bytesDone = offset;
    let endBytes: number;
    const speed = watchBodySpeed(body, finalUrl, policyOf(options.client));
    try {
      const capped = cappedBody(body as AsyncIterable<Buffer>, finalUrl, offset, expected);
      endBytes = await streamToFile(capped, fh, offset, hashers, ctx.buffer, (chunkBytes) => {
        bytesDone += chunkBytes;
        speed.received(chunkBytes);
        // An endless body would fill the disk: stop at the limit whatever the headers said.
        if (maxBytes !== undefined && bytesDone > maxBytes) throw new ImageTooLargeError(finalUrl, maxBytes);
        options.onProgress?.(bytesDone, totalBytes);
      }, ctx.feeder, options.durable !== false);
    } catch (err) {
      abandonBody(body);
      if (err instanceof SizeMismatchError || err instanceof ImageTooLargeError) await discardPartial(paths);
      throw asDiskFull(err, paths);
    } finally {
      speed.stop();
    }
    if (totalBytes !== undefined && endBytes !== totalBytes) throw new TruncatedBodyError(finalUrl, endBytes, totalBytes);
    if (expected !== undefined && endBytes !== expected) {
      // No Content-Length and the body ended short: the file is not the one signed for.
      await discardPartial(paths);
      throw new SizeMismatchError(finalUrl, expected, endBytes, false);
    }
    return { sizeBytes: endBytes, hashers, resumedFromBytes: offset, etag };
  } finally {
    await fh.close();
  }
}


/** Download `url` to `destPath`, resuming any `.part` left by an earlier attempt. */
export async function downloadFile(url: string, destPath: string, options: DownloadOptions = {}): Promise<DownloadResult> {
  const paths: Paths = { dest: destPath, part: `${destPath}.part`, sidecar: `${destPath}.part.json`, dir: dirname(destPath) };
  const algorithms = ['sha256', ...new Set((options.extraHashAlgorithms ?? []).filter((a) => a !== 'sha256'))];
  for (const a of algorithms) createHash(a); // an unknown algorithm fails before any network traffic
  const buffer = pageAlignedBuffer(options.writeBufferBytes ?? WRITE_BUFFER_BYTES);
  const log = options.log?.child({ url });
  const startedAt = performance.now();

  let attempts = 0;
  const feeder = new SinkFeeder(options.sink);
  const transfer = await withRetries(
    () => {
      attempts++;
      return transferOnce({ url, paths, algorithms, buffer, options, feeder, log });
    },
    retryOptionsFor(url, options),
  );

  const hashes: Record<string, string> = {};
  transfer.hashers.forEach((h, i) => (hashes[algorithms[i] as string] = h.digest('hex')));
  const sha256 = hashes.sha256 as string;
  if (options.expectedSha256 && options.expectedSha256.toLowerCase() !== sha256) {
    await discardPartial(paths);
    throw new ChecksumMismatchError(url, options.expectedSha256.toLowerCase(), sha256);
  }
  const durable = options.durable !== false;
  if (durable) await fsyncPath(paths.part);
  await rename(paths.part, paths.dest);
  await rm(paths.sidecar, { force: true });
  if (durable) await fsyncPath(paths.dir);
  log?.debug(
    { event: 'http.download.done', bytes: transfer.sizeBytes, attempts, durationMs: Math.round(performance.now() - startedAt) },
    'download complete',
  );
  return {
    path: destPath,
    sizeBytes: transfer.sizeBytes,
    sha256,
    hashes,
    resumedFromBytes: transfer.resumedFromBytes,
    attempts,
    etag: transfer.etag,
  };
}
