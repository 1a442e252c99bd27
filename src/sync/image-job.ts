/**
 * The work on one image in a cycle:
 *
 *   reuse the verified cached copy | re-verify a copy a crash left | download + verify (streaming to targets
 *   that take the bytes as they arrive) -> publish to each remaining target -> release the cached copy
 *
 * Every step is journalled through `ImageJournal`: one call writes state (one transaction), counts and logs,
 * so the three never disagree. A failure of one step is recorded and the job goes on where it can; the cycle
 * catches anything unexpected so that one image never ends the cycle for the others.
 */
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import { ChecksumMismatchError, describeError, errorCode } from '../errors.js';
import { downloadFile, type DownloadResult, type DownloadSink } from '../fetch/download.js';
import { hashFile } from '../fetch/hash-file.js';
import { makeDurable } from '../fsync.js';
import { makeDirInside } from '../local-files.js';
import type { UpstreamImage } from '../image.js';
import type { Logger } from '../log.js';
import type { RunCounts, StateStore } from '../state/store.js';
import type { DigestAlgorithm, FileDigests, PublishContext, PublishResult, Target, VerifiedFile } from '../targets/target.js';
import type { Slots } from './concurrency.js';
import type { SyncAction } from './plan.js';
import { startStreamPublications, type StreamOutcome } from './stream-publish.js';
import { cachedCopyIsScratch, digestsWanted } from './target-needs.js';

/** What a job needs of its cycle. */
export interface JobContext {
  store: StateStore;
  targets: readonly Target[];
  log: Logger;
  client?: Dispatcher;
  signal?: AbortSignal;
  http: { retries: number; retryBaseDelayMs: number; retryMaxDelayMs: number };
  cacheDir: string;
  keepCache: boolean;
  /** A download announcing or sending more is abandoned (source.maxImageBytes). */
  maxImageBytes?: number;
  /** Throttle of progress events (default 5 s). */
  progressIntervalMs?: number;
  now?: () => number;
  counts: RunCounts;
  /** Record a failure of the cycle; `target` when a publish to it failed (retention then skips it). */
  fail(message: string, target?: string): void;
  /** Removals of cached copies still running; awaited before the cycle is recorded as finished. */
  removals: Promise<unknown>[];
  /** Targets a publication was started on this cycle (their listing from before is stale). */
  touchedTargets: Set<string>;
  /** A target's publications at once, shared by the images in flight (undefined: no limit). */
  slots?: (target: Target) => Slots | undefined;
}

/** Where the verified copy of an image is kept until every target has it. */
export function cachePath(config: { cacheDir: string }, image: UpstreamImage): string {
  return path.resolve(config.cacheDir, image.channel, image.variant, image.release, image.serial, image.fileName);
}

export function imageFields(image: UpstreamImage) {
  return { release: image.release, version: image.version, arch: image.arch, serial: image.serial, channel: image.channel, variant: image.variant };
}

/** State, counts and log of one image: each method is one journal entry. */
export class ImageJournal {
  readonly log: Logger;

  constructor(private readonly ctx: JobContext, readonly action: SyncAction) {
    this.log = ctx.log.child(imageFields(action.image));
  }

  private get key(): string {
    return this.action.key;
  }

  downloadStarted(): void {
    this.ctx.store.setImageState(this.key, 'downloading', { localPath: null });
    this.log.info({ event: 'image.download.started', url: this.action.image.url }, `downloading ${this.action.image.url}`);
  }

  downloadProgress(bytes: number, totalBytes: number | undefined, durationMs: number): void {
    const p = progressFields(bytes, totalBytes, durationMs);
    this.log.info({ event: 'image.download.progress', ...p }, `${this.action.image.fileName}: ${describeProgress(p)}`);
  }

  /** Download and verification are one step: downloadFile returns only a file whose sha256 matched. */
  downloadVerified(res: DownloadResult, digests: FileDigests | undefined, durable: boolean, durationMs: number): void {
    // A scratch copy is not recorded: after a crash it may not hold the bytes, and the next run downloads again.
    this.ctx.store.setImageState(this.key, 'verified', { sizeBytes: res.sizeBytes, localPath: durable ? res.path : null, digests: digests ?? null });
    this.ctx.counts.bytesDown += res.sizeBytes - res.resumedFromBytes;
    this.ctx.counts.downloaded++;
    this.log.info({
      event: 'image.download.done', bytes: res.sizeBytes, resumedFromBytes: res.resumedFromBytes, attempts: res.attempts, durable,
      digests: Object.keys(res.hashes), durationMs,
    },
      `downloaded ${this.action.image.fileName} (${res.sizeBytes} bytes)`);
    this.verifyOk(res.sha256, false);
  }

  /** A cached copy a crash left behind matched the signed sha256 again. */
  reverified(file: VerifiedFile): void {
    this.ctx.store.setImageState(this.key, 'verified', { sizeBytes: file.sizeBytes, localPath: file.path, digests: file.digests ?? null });
    this.verifyOk(file.sha256, true);
  }

  private verifyOk(sha256: string, reverified: boolean): void {
    const { image } = this.action;
    this.log.info({ event: 'image.verify.ok', sha256, signed: image.signed, reverified: reverified || undefined },
      `sha256 of ${reverified ? 'the cached ' : ''}${image.fileName} matches the ${image.signed ? 'signed' : 'UNSIGNED'} SHA256SUMS`);
  }

  cacheInvalid(file: string, sha256: string): void {
    this.log.warn({ event: 'image.cache.invalid', path: file, sha256 }, `cached ${file} does not match the signed sha256; downloading it again`);
  }

  /** A shutdown, not a failure: nothing is counted; the `.part` resumes next run. */
  downloadAborted(err: unknown): void {
    this.log.info({ event: 'image.download.aborted', reason: describeError(err) }, 'download stopped by shutdown; the partial file resumes next run');
  }

  downloadFailed(err: unknown, durationMs: number): void {
    const message = describeError(err);
    this.ctx.store.setImageState(this.key, 'failed', { error: { code: errorCode(err) ?? 'DOWNLOAD_FAILED', message } });
    const event = err instanceof ChecksumMismatchError ? 'image.verify.failed' : 'image.download.failed';
    this.log.error({ event, err: message, errCode: errorCode(err), durationMs }, message);
    this.ctx.fail(`${this.key}: ${message}`);
  }

  /** `method`: `stream` while downloading (the default without `bytes`), `adopt` for a copy the target holds. */
  publishStarted(target: Target, bytes?: number, method: 'stream' | 'adopt' | undefined = bytes === undefined ? 'stream' : undefined): Logger {
    const tlog = this.log.child({ target: target.name });
    this.ctx.touchedTargets.add(target.name);
    this.ctx.store.setPublication(this.key, target.name, 'publishing');
    tlog.info({ event: 'image.publish.started', bytes, method }, `${method === 'adopt' ? 'adopting the copy it holds of' : 'publishing'} ${this.action.image.fileName} to ${target.name}`);
    return tlog;
  }

  /**
   * Every target adopted a copy it holds: nothing is downloaded. What a download interrupted or failed before left
   * recorded is stale now (its `.part` goes with the next sweep); the image stays known, without a local copy.
   */
  downloadNotNeeded(): void {
    const state = this.ctx.store.getImage(this.key)?.state;
    if (state === 'downloading' || state === 'downloaded' || state === 'failed') {
      this.ctx.store.setImageState(this.key, 'discovered', { localPath: null, error: null });
    }
  }

  publishRef(target: Target, ref: string): void {
    this.ctx.store.setPublication(this.key, target.name, 'publishing', { ref });
  }

  publishDone(target: Target, res: PublishResult, bytes: number | undefined, startedMs: number): void {
    this.ctx.store.setPublication(this.key, target.name, 'published', { ref: res.ref });
    this.ctx.counts.published++;
    const { image } = this.action;
    const now = (this.ctx.now ?? Date.now)();
    // Publication lag: from upstream publishing the serial to its reveal here. An adopted copy was revealed earlier.
    const upstreamMs = image.publishedAt ? Date.parse(image.publishedAt) : Number.NaN;
    const lagSeconds = !res.adopted && Number.isFinite(upstreamMs) ? Math.max(0, Math.round((now - upstreamMs) / 1000)) : undefined;
    this.log.child({ target: target.name }).info({
      event: 'image.publish.done', imageId: res.ref, adopted: res.adopted, bytes, durationMs: Date.now() - startedMs, publishedAt: image.publishedAt, lagSeconds,
    },
      `${res.adopted ? 'adopted' : 'published'} ${this.action.image.fileName} on ${target.name} as ${res.ref}`);
  }

  /** `counted: false` for a stream whose download failed: the download's failure already counts. */
  publishFailed(target: Target, err: unknown, startedMs: number, counted = true): void {
    if (this.ctx.signal?.aborted) {
      this.publishAborted(target, err, startedMs);
      return;
    }
    const message = describeError(err);
    this.ctx.store.setPublication(this.key, target.name, 'failed', { error: { code: errorCode(err) ?? 'PUBLISH_FAILED', message } });
    this.log.child({ target: target.name }).error({ event: 'image.publish.failed', err: message, errCode: errorCode(err), durationMs: Date.now() - startedMs }, message);
    if (counted) this.ctx.fail(`${this.key} -> ${target.name}: ${message}`, target.name);
  }

  /**
   * A shutdown while publishing: not a failure (no failure counted, no error logged). The target removes what it
   * had not revealed; the publication stays `publishing` and is done again next run.
   */
  private publishAborted(target: Target, err: unknown, startedMs: number): void {
    this.log.child({ target: target.name }).info({ event: 'image.publish.aborted', reason: describeError(err), durationMs: Date.now() - startedMs },
      `publishing ${this.action.image.fileName} to ${target.name} stopped by shutdown; done again next run`);
  }

  publishFallback(target: Target, err: unknown): void {
    this.log.child({ target: target.name }).warn({ event: 'image.publish.fallback', err: describeError(err), errCode: errorCode(err) },
      `streaming to ${target.name} failed (${describeError(err)}); publishing the verified file instead`);
  }

  /** Every target has the image: the cached copy goes (state stops pointing at it once it is gone). */
  cacheReleased(file: string): void {
    const key = this.key;
    const removal = rm(file, { force: true }).then(() => { this.ctx.store.setLocalPath(key, null); });
    // Settled here, never rejected: a failure waiting unobserved for the cycle's end would crash the process.
    this.ctx.removals.push(removal.then(() => undefined, (err: unknown) => err ?? new Error('removal failed')));
  }

  /** A scratch copy a failed publication keeps for the next run: only now must it survive a crash. */
  async cacheKept(file: string): Promise<void> {
    try {
      await makeDurable(file);
      this.ctx.store.setLocalPath(this.key, file);
    } catch (err) {
      this.log.warn({ event: 'image.cache.unsaved', path: file, err: describeError(err), errCode: errorCode(err) },
        `could not flush the cached copy ${file} to disk (${describeError(err)}); it is downloaded again next run`);
    }
  }
}

/** One image brought to the targets its action names. */
export class ImageJob {
  private readonly journal: ImageJournal;
  /** The targets still to publish to (those that adopted a copy they hold are taken out). */
  private targets: readonly Target[];

  constructor(private readonly ctx: JobContext, readonly action: SyncAction) {
    this.journal = new ImageJournal(ctx, action);
    this.targets = ctx.targets.filter((t) => action.publishTo.includes(t.name));
    this.knownTotalBytes = action.image.sizeBytes;
  }

  async run(): Promise<void> {
    const { ctx, journal } = this;
    /** The file is a scratch copy, not forced to disk, that state does not point at (yet). */
    let scratch = false;
    let allPublished = true;
    const done = new Set<string>();
    if (this.action.adopt.length > 0) {
      const adoption = await this.adoptHeldCopies();
      this.targets = adoption.rest;
      if (adoption.failed) allPublished = false;
      if (ctx.signal?.aborted) return;
      if (this.targets.length === 0) {
        if (allPublished) journal.downloadNotNeeded();
        return;
      }
    }
    let file: VerifiedFile | undefined = this.action.cached ? this.cachedFile() : await this.reverifyInterrupted();
    if (!file) {
      // Targets that upload while downloading get the bytes as they arrive; the rest get the verified file after.
      // A streaming target whose uploads are all taken by other images gets the verified file after too,
      // rather than holding this download back.
      const streamTargets = this.targets.filter((t) => t.publishStream && (ctx.slots?.(t)?.tryTake() ?? true));
      const starts = new Map(streamTargets.map((t) => [t.name, Date.now()]));
      for (const t of streamTargets) journal.publishStarted(t);
      try {
        const streams = streamTargets.length > 0 ? startStreamPublications(this.action.image, streamTargets, (t) => this.publishContext(t)) : undefined;
        scratch = cachedCopyIsScratch(this.targets.map((t) => ({ digests: t.digests, streams: streamTargets.includes(t) })), ctx.keepCache);
        file = await this.fetchAndVerify(streams?.sink, !scratch);
        for (const outcome of streams ? await streams.settle(file) : []) {
          if (this.recordStreamOutcome(outcome, file !== undefined, starts.get(outcome.target.name) ?? outcome.startedMs)) done.add(outcome.target.name);
          else if (!file) allPublished = false;
        }
      } finally {
        for (const t of streamTargets) ctx.slots?.(t)?.give();
      }
      if (!file) return;
    }
    for (const target of this.targets.filter((t) => !done.has(t.name))) {
      if (ctx.signal?.aborted) { allPublished = false; break; }
      const slots = ctx.slots?.(target);
      await slots?.take();
      const started = Date.now();
      journal.publishStarted(target, file.sizeBytes);
      try {
        const res = await target.publish(this.action.image, file, this.publishContext(target, file.sizeBytes));
        journal.publishDone(target, res, file.sizeBytes, started);
      } catch (err) {
        allPublished = false;
        journal.publishFailed(target, err, started);
      } finally {
        slots?.give();
      }
    }
    // Every target has it: the cached copy is no longer needed (a directory target on the same disk holds a hard link).
    // Removing a large file can take a second (a filesystem mounted with `discard`): the cycle goes on meanwhile.
    if (allPublished && !ctx.keepCache) journal.cacheReleased(file.path);
    else if (scratch) await journal.cacheKept(file.path);
  }

  /**
   * Before any download, the targets whose listing showed a verified copy of these bytes adopt it. Returns the
   * targets still to publish to (the rest, and one that holds no copy after all) and whether an adoption failed.
   */
  private async adoptHeldCopies(): Promise<{ rest: Target[]; failed: boolean }> {
    const { ctx, journal } = this;
    const rest: Target[] = [];
    let failed = false;
    for (const target of this.targets) {
      if (!target.adoptHeld || !this.action.adopt.includes(target.name)) {
        rest.push(target);
        continue;
      }
      if (ctx.signal?.aborted) break;
      const started = Date.now();
      journal.publishStarted(target, undefined, 'adopt');
      try {
        const res = await target.adoptHeld(this.action.image, this.publishContext(target));
        if (res) journal.publishDone(target, res, undefined, started);
        else rest.push(target);
      } catch (err) {
        failed = true;
        journal.publishFailed(target, err, started);
      }
    }
    return { rest, failed };
  }

  /** The verified copy state points at (the plan chose it because the file is there). */
  private cachedFile(): VerifiedFile {
    const record = this.ctx.store.getImage(this.action.key)!;
    return { path: record.localPath!, sizeBytes: record.sizeBytes ?? 0, sha256: record.sha256, digests: record.digests ?? undefined };
  }

  private digests(): DigestAlgorithm[] {
    return digestsWanted(this.targets);
  }

  /**
   * An image a crash left `downloaded` (written by versions that recorded download and verification as two steps):
   * its cached file is hashed again and used when it matches the signed sha256; otherwise it is fetched again.
   */
  private async reverifyInterrupted(): Promise<VerifiedFile | undefined> {
    if (this.ctx.store.getImage(this.action.key)?.state !== 'downloaded') return undefined;
    const dest = cachePath(this.ctx, this.action.image);
    let hashed;
    try {
      hashed = await hashFile(dest, ['sha256', ...this.digests()]);
    } catch {
      return undefined; // no file: downloaded again
    }
    if (hashed.hashes.sha256 !== this.action.image.sha256) {
      this.journal.cacheInvalid(dest, hashed.hashes.sha256!);
      await rm(dest, { force: true });
      return undefined;
    }
    await makeDurable(dest);
    const file = { path: dest, sizeBytes: hashed.sizeBytes, sha256: this.action.image.sha256, digests: pickDigests(hashed.hashes, this.digests()) };
    this.journal.reverified(file);
    return file;
  }

  private async fetchAndVerify(sink: DownloadSink | undefined, durable: boolean): Promise<VerifiedFile | undefined> {
    const { ctx, journal, action } = this;
    const dest = cachePath(ctx, action.image);
    const started = Date.now();
    const interval = ctx.progressIntervalMs ?? 5_000;
    let lastProgress = started;
    journal.downloadStarted();
    try {
      // Folders 0700, never through a symlink leading out of cacheDir.
      await makeDirInside(path.resolve(ctx.cacheDir), path.dirname(dest), 0o700);
      const res = await downloadFile(action.image.url, dest, {
        client: ctx.client, expectedSha256: action.image.sha256, expectedSizeBytes: action.image.sizeBytes, retries: ctx.http.retries, maxBytes: ctx.maxImageBytes,
        extraHashAlgorithms: this.digests(),
        baseDelayMs: ctx.http.retryBaseDelayMs, maxDelayMs: ctx.http.retryMaxDelayMs, signal: ctx.signal, log: journal.log, sink, durable,
        onProgress: (bytes, total) => {
          if (total !== undefined) this.knownTotalBytes = total;
          const now = Date.now();
          if (now - lastProgress < interval) return;
          lastProgress = now;
          journal.downloadProgress(bytes, total, now - started);
        },
      });
      const digests = pickDigests(res.hashes, this.digests());
      journal.downloadVerified(res, digests, durable, Date.now() - started);
      return { path: res.path, sizeBytes: res.sizeBytes, sha256: res.sha256, digests };
    } catch (err) {
      if (ctx.signal?.aborted) journal.downloadAborted(err);
      else journal.downloadFailed(err, Date.now() - started);
      return undefined;
    }
  }

  /** The image's size once known (the source's listing, else the download's Content-Length): stream uploads report it too. */
  private knownTotalBytes: number | undefined;

  private publishContext(target: Target, totalBytes?: number): PublishContext {
    const tlog = this.journal.log.child({ target: target.name });
    const started = Date.now();
    let last = started;
    return {
      log: tlog,
      signal: this.ctx.signal,
      onRef: (ref: string) => this.journal.publishRef(target, ref),
      signedDocument: (url: string) => this.ctx.store.getCachedResponse(url),
      onProgress: (bytes: number) => {
        const now = Date.now();
        if (now - last < (this.ctx.progressIntervalMs ?? 5_000)) return;
        last = now;
        const p = progressFields(bytes, totalBytes ?? this.knownTotalBytes, now - started);
        tlog.info({ event: 'image.publish.progress', ...p }, `${this.action.image.fileName} -> ${target.name}: ${describeProgress(p)}`);
      },
    };
  }

  /**
   * Record how a stream-through upload ended. Returns true when the target is done with this image. A stream
   * that failed while the download itself verified falls back to publishing the verified file (returns false).
   */
  private recordStreamOutcome(outcome: StreamOutcome, downloadOk: boolean, startedMs: number): boolean {
    if (outcome.result) {
      this.journal.publishDone(outcome.target, outcome.result, outcome.bytes, startedMs);
      return true;
    }
    if (downloadOk) {
      this.journal.publishFallback(outcome.target, outcome.error);
      return false;
    }
    this.journal.publishFailed(outcome.target, outcome.error, startedMs, false);
    return true;
  }
}

/** The declared digests out of what a hashing pass computed; undefined when none was asked for. */
function pickDigests(hashes: Record<string, string>, wanted: readonly DigestAlgorithm[]): FileDigests | undefined {
  const picked = Object.fromEntries(wanted.filter((a) => hashes[a]).map((a) => [a, hashes[a]!]));
  return Object.keys(picked).length > 0 ? picked : undefined;
}

interface ProgressFields { bytes: number; totalBytes?: number; percent?: number; bytesPerSecond: number; durationMs: number }

/** Bytes so far, the total and percent when known, the mean rate: the keys of every progress event. */
function progressFields(bytes: number, totalBytes: number | undefined, durationMs: number): ProgressFields {
  return {
    bytes,
    ...(totalBytes ? { totalBytes, percent: Math.min(100, Math.floor((bytes * 1000) / totalBytes) / 10) } : {}),
    bytesPerSecond: durationMs > 0 ? Math.round((bytes * 1000) / durationMs) : 0,
    durationMs,
  };
}

function describeProgress(p: ProgressFields): string {
  const mib = (n: number) => `${(n / 1048576).toFixed(1)} MiB`;
  return `${mib(p.bytes)}/${p.totalBytes ? `${mib(p.totalBytes)} (${p.percent}%)` : '?'} at ${mib(p.bytesPerSecond)}/s`;
}
