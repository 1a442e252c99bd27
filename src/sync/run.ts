import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import type { LoadedConfig } from '../config/load.js';
import { ChecksumMismatchError, describeError, errorCode } from '../errors.js';
import { downloadFile, type DownloadSink } from '../fetch/download.js';
import { makeDurable } from '../fsync.js';
import type { Logger } from '../log.js';
import { cachedGetter } from '../source/cached-get.js';
import { discoverImages, type DiscoveryResult, type KeyringSource } from '../source/discover.js';
import { imageKey, type UpstreamImage } from '../source/image.js';
import { loadKeyring, type Keyring } from '../source/signature.js';
import { releaseSupport } from '../source/releases.js';
import type { RunCounts, RunFindings, StateStore } from '../state/store.js';
import type { PublishedImage, PublishResult, Target, VerifiedFile } from '../targets/target.js';
import { startStreamPublications, type StreamOutcome } from './stream-publish.js';
import { planSync, type SyncAction } from './plan.js';
import { decideRetention, type RetentionPolicy } from './retention.js';

export interface SyncDeps {
  config: LoadedConfig;
  store: StateStore;
  targets: readonly Target[];
  log: Logger;
  client?: Dispatcher;
  signal?: AbortSignal;
  /** Throttle of image.download.progress events. */
  progressIntervalMs?: number;
  now?: () => number;
}

export interface RunSummary extends RunCounts, RunFindings {
  runId: number;
  /** `incomplete`: nothing failed, but a configured arch has no image in any recent serial upstream. */
  result: 'ok' | 'incomplete' | 'failed' | 'aborted';
  /** One line per failure, for the CLI's exit message. */
  errors: string[];
}

/** Discover what upstream has now: signed checksums of the newest serial of each wanted release. */
export async function discover(deps: SyncDeps, onBytes?: (n: number) => void): Promise<DiscoveryResult> {
  const { config, log } = deps;
  let keyring: KeyringSource | undefined;
  if (config.source.verifySignature) {
    let loaded: Promise<Keyring> | undefined;
    keyring = {
      // The keyring file's digest: a cached verification counts only for the keyring it was made with.
      id: keyringId(config.keyringPath),
      load: () => (loaded ??= loadKeyring(config.keyringPath)),
      verifiedSums: { get: (url) => deps.store.getCachedVerification(url), set: (url, v) => deps.store.setCachedVerification(url, v) },
    };
  } else {
    log.warn({ event: 'source.signature.disabled' }, 'source.verifySignature is false: SHA256SUMS are NOT signature-checked; images are only as trustworthy as the connection');
  }
  return discoverImages({
    sourceUrl: config.source.url,
    streams: config.streams,
    keep: config.keep,
    nowMs: (deps.now ?? Date.now)(),
    keyring,
    get: cachedGetter({
      store: deps.store, client: deps.client, retries: config.http.retries, baseDelayMs: config.http.retryBaseDelayMs,
      maxDelayMs: config.http.retryMaxDelayMs, signal: deps.signal, log, onBytes,
    }),
    log,
  });
}

/** The keyring file's digest; an unreadable file gets an id that matches no cached verification (load() then says why). */
function keyringId(keyringPath: string): string {
  try {
    return createHash('sha256').update(readFileSync(keyringPath)).digest('hex').slice(0, 16);
  } catch {
    return 'unreadable';
  }
}

/** Where the verified copy of an image is kept until every target has it. */
export function cachePath(config: LoadedConfig, image: UpstreamImage): string {
  return path.resolve(config.cacheDir, image.channel, image.variant, image.release, image.serial, image.fileName);
}

/** The plan of a cycle given what was discovered and what state records. */
export function planCycle(deps: SyncDeps, upstream: readonly UpstreamImage[], eolReleases: ReadonlySet<string> = new Set()): SyncAction[] {
  const images = deps.store.listImages();
  const cachedKeys = new Set(images.filter((r) => r.state === 'verified' && r.localPath && existsSync(r.localPath)).map((r) => r.key));
  const targets = deps.targets.map((t) => {
    const config = deps.config.targets.find((c) => c.name === t.name);
    // A target that hides or deletes the images of end-of-life releases does not get new ones.
    const excludeReleases = config && config.eol !== 'keep' ? eolReleases : undefined;
    return { name: t.name, streams: config?.streams, excludeReleases };
  });
  return planSync({ upstream, images, targets, cachedKeys });
}

/** Codenames past end of life: those discovery reported, and any the release table says are, on the images given. */
function endOfLifeReleases(deps: SyncDeps, reported: RunFindings['eol'], releases: Iterable<string>): Set<string> {
  const nowMs = (deps.now ?? Date.now)();
  const eol = new Set(reported.map((e) => e.release));
  for (const release of releases) if (releaseSupport(release, nowMs).pastEol) eol.add(release);
  return eol;
}

/** One sync cycle: source -> plan -> fetch -> verify -> publish -> retire, each step recorded in state. */
export async function runSyncCycle(deps: SyncDeps): Promise<RunSummary> {
  const { store, log } = deps;
  const runId = store.startRun();
  const startedMs = Date.now();
  const counts: RunCounts = { discovered: 0, downloaded: 0, published: 0, retired: 0, failed: 0, bytesDown: 0 };
  const errors: string[] = [];
  // Targets that failed a publish this run are left out of retention: nothing is retired on a target
  // that did not get the new image (and a broken login is reported once, not again by retention).
  const failedTargets = new Set<string>();
  const fail: Fail = (message, target) => {
    counts.failed++;
    errors.push(message);
    if (target) failedTargets.add(target);
  };
  log.info({ event: 'sync.run.started', runId, source: deps.config.source.url, targets: deps.targets.map((t) => t.name) }, 'sync run started');

  let result: RunSummary['result'] = 'ok';
  const findings: RunFindings = { incomplete: [], eol: [] };
  /** Cached copies being removed, each settling to undefined or its error; awaited before the run is recorded as finished. */
  const removals: Promise<unknown>[] = [];
  try {
    const discovery = await discover(deps, (n) => { counts.bytesDown += n; });
    for (const f of discovery.failures) fail(`${f.release} (${f.stream}): ${describeError(f.error)}`);
    findings.incomplete = discovery.incomplete.map(({ stream, release, arch, reason }) => ({ stream, release, arch, reason }));
    findings.eol = discovery.eol.map(({ stream, release, eol, gone, imported }) => ({ stream, release, ...(eol ? { eol } : {}), gone, imported }));
    const eolReleases = endOfLifeReleases(deps, findings.eol, discovery.images.map((i) => i.release));
    for (const image of discovery.images) {
      if (store.recordDiscovered(image)) {
        counts.discovered++;
        log.info({ event: 'image.discovered', ...imageFields(image), url: image.url, sha256: image.sha256 }, `new image ${image.fileName} ${image.serial}`);
      }
    }
    for (const action of planCycle(deps, discovery.images, eolReleases)) {
      if (deps.signal?.aborted) break;
      await runAction(deps, action, counts, fail, removals);
    }
    if (!deps.signal?.aborted) {
      for (const target of deps.targets) {
        if (failedTargets.has(target.name)) {
          log.warn({ event: 'image.retire.skipped', target: target.name }, `retention skipped on ${target.name}: a publish to it failed this run`);
          continue;
        }
        await retire(deps, target, counts, fail, findings.eol);
      }
    }
  } catch (err) {
    fail(describeError(err));
    log.error({ event: 'sync.run.error', runId, err: describeError(err), errCode: errorCode(err) }, describeError(err));
  }
  for (const err of await Promise.all(removals)) {
    if (err === undefined) continue;
    fail(describeError(err));
    log.error({ event: 'sync.run.error', runId, err: describeError(err), errCode: errorCode(err) }, describeError(err));
  }
  if (deps.signal?.aborted) result = 'aborted';
  else if (counts.failed > 0) result = 'failed';
  else if (findings.incomplete.length > 0) result = 'incomplete';
  store.finishRun(runId, result, counts, errors[0] ?? null, new Date(), findings);
  const level = result === 'ok' ? 'info' : result === 'incomplete' ? 'warn' : 'error';
  const missing = findings.incomplete.map((i) => `${i.release}/${i.arch} (${i.stream})`);
  log[level]({ event: 'sync.run.finished', runId, result, durationMs: Date.now() - startedMs, ...counts, errors, ...findings },
    `sync run ${result}: ${counts.discovered} new, ${counts.downloaded} downloaded, ${counts.published} published, ${counts.retired} retired, ${counts.failed} failed${missing.length > 0 ? `; missing upstream: ${missing.join(', ')}` : ''}`);
  return { runId, result, errors, ...counts, ...findings };
}

type Fail = (message: string, target?: string) => void;

function imageFields(image: UpstreamImage) {
  return { release: image.release, version: image.version, arch: image.arch, serial: image.serial, channel: image.channel, variant: image.variant };
}

async function runAction(deps: SyncDeps, action: SyncAction, counts: RunCounts, fail: Fail, removals: Promise<unknown>[]): Promise<void> {
  const { store, config } = deps;
  const log = deps.log.child(imageFields(action.image));
  let file: VerifiedFile;
  let allPublished = true;
  /** The file is a scratch copy, not forced to disk, that state does not point at (yet). */
  let scratch = false;
  const done = new Set<string>();
  if (action.download) {
    // Targets that upload while downloading get the bytes as they arrive; the rest get the verified file after.
    const streamTargets = deps.targets.filter((t) => t.publishStream && action.publishTo.includes(t.name));
    for (const t of streamTargets) publishStarted(deps, action, t, log);
    const streams = streamTargets.length > 0 ? startStreamPublications(action.image, streamTargets, publishContext(deps, action, log)) : undefined;
    // When every target takes the bytes while they arrive, the cached copy is deleted again in this cycle unless
    // something fails: it is not forced to disk meanwhile, and made durable only if it stays.
    scratch = !config.keepCache && streamTargets.length === action.publishTo.length;
    const downloaded = await fetchAndVerify(deps, action, log, counts, streams?.sink, !scratch);
    const outcomes = streams ? await streams.settle(downloaded) : [];
    for (const outcome of outcomes) {
      if (recordStreamOutcome(deps, action, outcome, log, counts, fail, downloaded !== undefined)) done.add(outcome.target.name);
      else if (!downloaded) allPublished = false;
    }
    if (!downloaded) { fail(`${action.key}: ${store.getImage(action.key)?.error ?? 'download failed'}`); return; }
    file = downloaded;
  } else {
    const record = store.getImage(action.key)!;
    file = { path: record.localPath!, sizeBytes: record.sizeBytes ?? 0, sha256: record.sha256, digests: record.digests ?? undefined };
  }
  for (const target of deps.targets.filter((t) => action.publishTo.includes(t.name) && !done.has(t.name))) {
    if (deps.signal?.aborted) { allPublished = false; break; }
    const started = Date.now();
    const tlog = publishStarted(deps, action, target, log, file.sizeBytes);
    try {
      const res = await target.publish(action.image, file, publishContext(deps, action, log, file.sizeBytes)(target));
      publishDone(deps, action, target, res, file.sizeBytes, started, tlog, counts);
    } catch (err) {
      allPublished = false;
      publishFailed(deps, action, target, err, started, tlog, fail);
    }
  }
  // Every target has it: the cached copy is no longer needed (a directory target on the same disk holds a hard link).
  // Removing a large file can take a second (a filesystem mounted with `discard`): the cycle goes on meanwhile.
  if (allPublished && !config.keepCache) {
    const key = action.key;
    // Settled here, never rejected: a failure waiting unobserved for the cycle's end would crash the process.
    const removal = rm(file.path, { force: true }).then(() => { store.setLocalPath(key, null); });
    removals.push(removal.then(() => undefined, (err: unknown) => err ?? new Error('removal failed')));
  } else if (scratch) {
    // Kept for the next cycle: only now does it have to survive a crash, and only then may state point at it.
    try {
      await makeDurable(file.path);
      store.setLocalPath(action.key, file.path);
    } catch (err) {
      log.warn({ event: 'image.cache.unsaved', path: file.path, err: describeError(err), errCode: errorCode(err) },
        `could not flush the cached copy ${file.path} to disk (${describeError(err)}); it is downloaded again next run`);
    }
  }
}

function publishContext(deps: SyncDeps, action: SyncAction, log: Logger, totalBytes?: number) {
  return (target: Target) => {
    const tlog = log.child({ target: target.name });
    const started = Date.now();
    let last = started;
    return {
      log: tlog,
      signal: deps.signal,
      onRef: (ref: string) => deps.store.setPublication(action.key, target.name, 'publishing', { ref }),
      onProgress: (bytes: number) => {
        const now = Date.now();
        if (now - last < (deps.progressIntervalMs ?? 5_000)) return;
        last = now;
        tlog.info({ event: 'image.publish.progress', bytes, totalBytes, durationMs: now - started }, `${action.image.fileName} -> ${target.name}: ${bytes}/${totalBytes ?? '?'} bytes`);
      },
    };
  };
}

function publishStarted(deps: SyncDeps, action: SyncAction, target: Target, log: Logger, bytes?: number): Logger {
  const tlog = log.child({ target: target.name });
  deps.store.setPublication(action.key, target.name, 'publishing');
  tlog.info({ event: 'image.publish.started', bytes, method: bytes === undefined ? 'stream' : undefined }, `publishing ${action.image.fileName} to ${target.name}`);
  return tlog;
}

function publishDone(deps: SyncDeps, action: SyncAction, target: Target, res: PublishResult, bytes: number | undefined, started: number, tlog: Logger, counts: RunCounts): void {
  deps.store.setPublication(action.key, target.name, 'published', { ref: res.ref });
  counts.published++;
  const now = (deps.now ?? Date.now)();
  // Publication lag: from upstream publishing the serial to its reveal here. An adopted copy was revealed earlier.
  const upstreamMs = action.image.publishedAt ? Date.parse(action.image.publishedAt) : Number.NaN;
  const lagSeconds = !res.adopted && Number.isFinite(upstreamMs) ? Math.max(0, Math.round((now - upstreamMs) / 1000)) : undefined;
  tlog.info({ event: 'image.publish.done', imageId: res.ref, adopted: res.adopted, bytes, durationMs: Date.now() - started, publishedAt: action.image.publishedAt, lagSeconds },
    `${res.adopted ? 'adopted' : 'published'} ${action.image.fileName} on ${target.name} as ${res.ref}`);
}

function publishFailed(deps: SyncDeps, action: SyncAction, target: Target, err: unknown, started: number, tlog: Logger, fail: Fail): void {
  const message = describeError(err);
  deps.store.setPublication(action.key, target.name, 'failed', { error: { code: errorCode(err) ?? 'PUBLISH_FAILED', message } });
  tlog.error({ event: 'image.publish.failed', err: message, errCode: errorCode(err), durationMs: Date.now() - started }, message);
  fail(`${action.key} -> ${target.name}: ${message}`, target.name);
}

/**
 * Record how a stream-through upload ended. Returns true when the target is done with this image. A stream
 * that failed while the download itself verified falls back to publishing the verified file (returns false).
 */
function recordStreamOutcome(
  deps: SyncDeps, action: SyncAction, outcome: StreamOutcome, log: Logger, counts: RunCounts, fail: Fail, downloadOk: boolean,
): boolean {
  const tlog = log.child({ target: outcome.target.name });
  if (outcome.result) {
    publishDone(deps, action, outcome.target, outcome.result, outcome.bytes, outcome.startedMs, tlog, counts);
    return true;
  }
  if (downloadOk) {
    tlog.warn({ event: 'image.publish.fallback', err: describeError(outcome.error), errCode: errorCode(outcome.error) },
      `streaming to ${outcome.target.name} failed (${describeError(outcome.error)}); publishing the verified file instead`);
    return false;
  }
  publishFailed(deps, action, outcome.target, outcome.error, outcome.startedMs, tlog, () => undefined);
  return true;
}

async function fetchAndVerify(
  deps: SyncDeps, action: SyncAction, log: Logger, counts: RunCounts, sink: DownloadSink | undefined, durable: boolean,
): Promise<VerifiedFile | undefined> {
  const { store, config } = deps;
  const record = store.getImage(action.key)!;
  if (record.state === 'verified') store.setImageState(action.key, 'discovered', { localPath: null });
  store.setImageState(action.key, 'downloading');
  const dest = cachePath(config, action.image);
  const started = Date.now();
  const interval = deps.progressIntervalMs ?? 5_000;
  let lastProgress = started;
  log.info({ event: 'image.download.started', url: action.image.url }, `downloading ${action.image.url}`);
  try {
    await mkdir(path.dirname(dest), { recursive: true });
    // md5 and sha512 in the same pass, for targets that compare them afterwards: no upload hashes again.
    const wantsDigests = deps.targets.some((t) => t.wantsDigests && action.publishTo.includes(t.name));
    const res = await downloadFile(action.image.url, dest, {
      client: deps.client, expectedSha256: action.image.sha256, retries: config.http.retries,
      extraHashAlgorithms: wantsDigests ? ['md5', 'sha512'] : [],
      baseDelayMs: config.http.retryBaseDelayMs, maxDelayMs: config.http.retryMaxDelayMs, signal: deps.signal, log, sink, durable,
      onProgress: (bytes, total) => {
        const now = Date.now();
        if (now - lastProgress < interval) return;
        lastProgress = now;
        log.info({ event: 'image.download.progress', bytes, totalBytes: total, durationMs: now - started }, `${action.image.fileName}: ${bytes}/${total ?? '?'} bytes`);
      },
    });
    counts.bytesDown += res.sizeBytes - res.resumedFromBytes;
    counts.downloaded++;
    store.setImageState(action.key, 'downloaded', { sizeBytes: res.sizeBytes });
    log.info({ event: 'image.download.done', bytes: res.sizeBytes, resumedFromBytes: res.resumedFromBytes, attempts: res.attempts, durable, durationMs: Date.now() - started },
      `downloaded ${action.image.fileName} (${res.sizeBytes} bytes)`);
    const { md5, sha512 } = res.hashes;
    const digests = md5 && sha512 ? { md5, sha512 } : undefined;
    // A scratch copy is not recorded: after a crash it may not hold the bytes, and the next run downloads again.
    store.setImageState(action.key, 'verified', { localPath: durable ? res.path : null, digests: digests ?? null });
    log.info({ event: 'image.verify.ok', sha256: res.sha256, signed: action.image.signed }, `sha256 of ${action.image.fileName} matches the ${action.image.signed ? 'signed' : 'UNSIGNED'} SHA256SUMS`);
    return { path: res.path, sizeBytes: res.sizeBytes, sha256: res.sha256, digests };
  } catch (err) {
    const message = describeError(err);
    if (deps.signal?.aborted) {
      log.warn({ event: 'image.download.aborted', err: message }, 'download stopped; the partial file resumes next run');
      return undefined;
    }
    store.setImageState(action.key, 'failed', { error: { code: errorCode(err) ?? 'DOWNLOAD_FAILED', message } });
    const event = err instanceof ChecksumMismatchError ? 'image.verify.failed' : 'image.download.failed';
    log.error({ event, err: message, errCode: errorCode(err), durationMs: Date.now() - started }, message);
    return undefined;
  }
}

async function retire(deps: SyncDeps, target: Target, counts: RunCounts, fail: Fail, eolFound: RunFindings['eol']): Promise<void> {
  const log = deps.log.child({ target: target.name });
  let published: PublishedImage[];
  try {
    published = await target.listPublished({ log });
  } catch (err) {
    fail(`${target.name}: listing for retention failed: ${describeError(err)}`);
    log.error({ event: 'image.retire.failed', err: describeError(err), errCode: errorCode(err) }, `cannot list ${target.name} for retention`);
    return;
  }
  const decision = decideRetention(published, retentionPolicy(deps, target, published, eolFound));
  for (const [step, images] of [['hide', decision.hide], ['remove', decision.remove]] as const) {
    for (const image of images) {
      const key = imageKey({ ...image, channel: image.channel as UpstreamImage['channel'], variant: image.variant as UpstreamImage['variant'], arch: image.arch as UpstreamImage['arch'] });
      const fields = { release: image.release, arch: image.arch, serial: image.serial, imageId: image.ref };
      try {
        if (step === 'hide') await target.hide(image, { log });
        else await target.remove(image, { log });
        if (deps.store.getImage(key)?.publications[target.name]) {
          deps.store.setPublication(key, target.name, step === 'hide' ? 'hidden' : 'removed');
        }
        counts.retired += step === 'remove' ? 1 : 0;
        const why = decision.endOfLife.has(image) ? `${image.release} is past its end of life` : `older than the newest ${deps.config.keep}`;
        log.info({ event: step === 'hide' ? 'image.retire.hidden' : 'image.retire.removed', ...fields, reason: decision.endOfLife.has(image) ? 'eol' : 'keep' },
          `${step === 'hide' ? 'hid' : 'removed'} ${image.ref} (${why})`);
      } catch (err) {
        const message = describeError(err);
        log.warn({ event: 'image.retire.failed', ...fields, err: message, errCode: errorCode(err) }, `cannot ${step} ${image.ref}: ${message}; retried next run`);
      }
    }
  }
  for (const { image, reason } of decision.spared) {
    log.debug({ event: 'image.retire.spared', release: image.release, arch: image.arch, serial: image.serial, imageId: image.ref, reason }, `kept ${image.ref}: ${reason}`);
  }
}

/** The retention policy of one target: `keep`, its hiding, and its `eol:` policy over the releases past end of life. */
export function retentionPolicy(deps: Pick<SyncDeps, 'config' | 'now'>, target: Target, published: readonly PublishedImage[], eolFound: RunFindings['eol']): RetentionPolicy {
  const config = deps.config.targets.find((c) => c.name === target.name);
  const nowMs = (deps.now ?? Date.now)();
  const eolReleases = new Set(eolFound.map((e) => e.release));
  for (const image of published) if (releaseSupport(image.release, nowMs).pastEol) eolReleases.add(image.release);
  return {
    keep: deps.config.keep, hidesBeforeDelete: target.hidesBeforeDelete, hideGraceMs: target.hideGraceMs, nowMs,
    eol: { policy: config?.eol ?? 'keep', releases: eolReleases },
  };
}
