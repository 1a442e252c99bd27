/**
 * One sync cycle: source -> plan -> image jobs (fetch -> verify -> publish) -> retire, each step recorded in
 * state. The cycle knows sources and targets only by their interfaces.
 */
import { existsSync } from 'node:fs';
import type { Dispatcher } from 'undici';
import type { LoadedConfig } from '../config/load.js';
import { describeError, errorCode } from '../errors.js';
import { describeProxySettings, resolveProxySettings, type ProxySettings } from '../fetch/proxy.js';
import type { UpstreamImage } from '../image.js';
import type { Logger } from '../log.js';
import { createSource } from '../source/registry.js';
import type { DiscoveryResult, Source } from '../source/source.js';
import { releaseSupport } from '../source/releases.js';
import type { ImageRecord, RunCounts, RunFindings, StateStore } from '../state/store.js';
import { publishedImageKey, type PublishedImage, type Target } from '../targets/target.js';
import { Slots, runLanes, seriesLanes } from './concurrency.js';
import { ImageJob, imageFields, type JobContext } from './image-job.js';
import { planSync, refuseRollbacks, type SyncAction } from './plan.js';
import { decideRetention, type RetentionPolicy } from './retention.js';
import { reconcileWithTargets } from './reconcile.js';
import { sweepAtCycleStart } from './sweep.js';

export { cachePath } from './image-job.js';

export interface SyncDeps {
  config: LoadedConfig;
  store: StateStore;
  targets: readonly Target[];
  log: Logger;
  /** Default: the source `config.source` describes. */
  source?: Source;
  client?: Dispatcher;
  signal?: AbortSignal;
  /** Throttle of image.download.progress events. */
  progressIntervalMs?: number;
  now?: () => number;
}

export interface RunSummary extends RunCounts, RunFindings {
  runId: number;
  /** `incomplete`: nothing failed, but a configured arch has no image in any recent serial upstream. `interrupted`: stopped by a signal (a shutdown, not a failure); what was in flight resumes next run. */
  result: 'ok' | 'incomplete' | 'failed' | 'interrupted';
  /** One line per failure, for the CLI's exit message. */
  errors: string[];
}

/**
 * Discover what upstream has now: signed checksums of the newest `keep` serials of each wanted stream/release/arch.
 * A series whose newest serial is older than one already published of it is left out (a rollback) and logged.
 */
export async function discover(deps: SyncDeps, onBytes?: (n: number) => void): Promise<DiscoveryResult> {
  const source = deps.source ?? createSource(deps.config);
  const discovery = await source.discover({
    cache: deps.store, client: deps.client, http: deps.config.http, log: deps.log, signal: deps.signal, onBytes, nowMs: (deps.now ?? Date.now)(),
  });
  const { accepted, refused } = refuseRollbacks(discovery.images, deps.store.listImages());
  for (const { image, publishedSerial } of refused) {
    deps.log.warn({ event: 'source.rollback.refused', ...imageFields(image), publishedSerial, url: image.url },
      `upstream offers ${image.release}/${image.arch} ${image.serial} as newest, older than the published ${publishedSerial}: refused (a replayed or stale list); nothing is replaced`);
  }
  return { ...discovery, images: accepted };
}

/**
 * The plan of a cycle given what was discovered and what state records; with the targets' `listings` of the
 * cycle, a complete copy a target holds (and can adopt) is adopted instead of downloaded.
 */
export function planCycle(
  deps: Pick<SyncDeps, 'config' | 'store' | 'targets'>, upstream: readonly UpstreamImage[], eolReleases: ReadonlySet<string> = new Set(),
  images: readonly ImageRecord[] = deps.store.listImages(), listings?: ReadonlyMap<string, readonly PublishedImage[]>,
): SyncAction[] {
  const cachedKeys = new Set(images.filter((r) => r.state === 'verified' && r.localPath && existsSync(r.localPath)).map((r) => r.key));
  const targets = deps.targets.map((t) => {
    const config = deps.config.targets.find((c) => c.name === t.name);
    // A target that hides or deletes the images of end-of-life releases does not get new ones.
    const excludeReleases = config?.eol && config.eol !== 'keep' ? eolReleases : undefined;
    return { name: t.name, streams: config?.streams, excludeReleases };
  });
  const held = new Map([...listings ?? []].filter(([name]) => deps.targets.some((t) => t.name === name && t.adoptHeld)));
  return planSync({ upstream, images, targets, cachedKeys, held });
}

/**
 * Before a target is listed or anything is downloaded, it gets ready for the cycle (`Target.prepare`: a Glance
 * authenticates): a wrong password fails now, not after the download. One that fails is logged and counted once
 * and left out of the cycle (not listed, nothing planned or downloaded for it, no retention on it); the others
 * go on. Returns the targets that are ready.
 */
async function prepareTargets(deps: SyncDeps, fail: (message: string, target?: string) => void): Promise<Target[]> {
  const ready: Target[] = [];
  for (const target of deps.targets) {
    const log = deps.log.child({ target: target.name });
    try {
      await target.prepare?.({ log, signal: deps.signal });
      ready.push(target);
    } catch (err) {
      if (deps.signal?.aborted) break; // a shutdown, not a failure of the target
      fail(`${target.name}: ${describeError(err)}`, target.name);
      log.error({ event: 'sync.preflight.failed', err: describeError(err), errCode: errorCode(err) },
        `${target.name} is left out of this cycle (nothing downloaded for it, no retention on it): ${describeError(err)}`);
    }
  }
  return ready;
}

/** The findings of a discovery worth keeping with the run (status, metrics). */
export function findingsOf(discovery: DiscoveryResult): RunFindings {
  return {
    incomplete: discovery.incomplete.map(({ stream, release, arch, reason }) => ({ stream, release, arch, reason })),
    eol: discovery.eol.map(({ stream, release, eol, gone, imported }) => ({ stream, release, ...(eol ? { eol } : {}), gone, imported })),
  };
}

/** Codenames past end of life: those discovery reported, and those the release table says are, of the releases given. */
export function endOfLifeReleases(nowMs: number, reported: RunFindings['eol'], releases: Iterable<string>): Set<string> {
  const eol = new Set(reported.map((e) => e.release));
  for (const release of releases) if (releaseSupport(release, nowMs).pastEol) eol.add(release);
  return eol;
}

/** One sync cycle: source -> plan -> fetch -> verify -> publish -> retire, each step recorded in state. */
export async function runSyncCycle(deps: SyncDeps): Promise<RunSummary> {
  const { store, log, config } = deps;
  const source = deps.source ?? createSource(config);
  const runId = store.startRun();
  const startedMs = Date.now();
  const counts: RunCounts = { discovered: 0, downloaded: 0, published: 0, retired: 0, failed: 0, bytesDown: 0 };
  const errors: string[] = [];
  // Targets that failed a publish (or to get ready) this run are left out of retention: nothing is retired on a
  // target that did not get the new image (and a broken login is reported once, not again by retention).
  const failedTargets = new Set<string>();
  const fail = (message: string, target?: string) => {
    counts.failed++;
    errors.push(message);
    if (target) failedTargets.add(target);
  };
  const cycleError = (err: unknown) => {
    fail(describeError(err));
    log.error({ event: 'sync.run.error', runId, err: describeError(err), errCode: errorCode(err) }, describeError(err));
  };
  log.info({ event: 'sync.run.started', runId, source: deps.config.sourceUrlShown, targets: deps.targets.map((t) => t.name) }, 'sync run started');
  logProxies(deps, log);

  /** Cached copies being removed, each settling to undefined or its error; awaited before the run is recorded as finished. */
  const removals: Promise<unknown>[] = [];
  const slots = new Map(deps.targets.filter((t) => t.concurrency !== undefined).map((t) => [t.name, new Slots(t.concurrency!)]));
  const jobs: JobContext = {
    store, targets: deps.targets, log, client: deps.client, signal: deps.signal, http: config.http, cacheDir: config.cacheDir, maxImageBytes: config.source.maxImageBytes,
    keepCache: config.keepCache, progressIntervalMs: deps.progressIntervalMs, now: deps.now, counts, fail, removals, touchedTargets: new Set(),
    slots: (target) => slots.get(target.name),
  };
  let findings: RunFindings = { incomplete: [], eol: [] };
  try {
    await sweepAtCycleStart({ store, targets: deps.targets, log, cacheDir: config.cacheDir, keepCache: config.keepCache });
    const ready = await prepareTargets(deps, fail);
    // One listing per target serves the reconcile, the plan (copies a target holds are adopted, not downloaded)
    // and, where nothing was published since, retention too.
    const listings = await reconcileWithTargets({ store, targets: ready, log });
    const discovery = await discover({ ...deps, source }, (n) => { counts.bytesDown += n; });
    for (const f of discovery.failures) fail(`${f.release} (${f.stream}): ${describeError(f.error)}`);
    findings = findingsOf(discovery);
    const eolReleases = endOfLifeReleases((deps.now ?? Date.now)(), findings.eol, discovery.images.map((i) => i.release));
    for (const image of discovery.images) {
      if (store.recordDiscovered(image)) {
        counts.discovered++;
        log.info({ event: 'image.discovered', ...imageFields(image), url: image.url, sha256: image.sha256 }, `new image ${image.fileName} ${image.serial}`);
      }
    }
    // Up to `concurrency` images at once; those of one release/arch one after another, in plan order.
    const actions = planCycle({ ...deps, targets: ready }, discovery.images, eolReleases, undefined, listings);
    await runLanes(seriesLanes(actions), config.concurrency, async (action) => {
      try {
        await new ImageJob(jobs, action).run();
      } catch (err) {
        // One image's failure never ends the cycle: the others and retention still run.
        fail(`${action.key}: ${describeError(err)}`);
        log.error({ event: 'image.job.failed', ...imageFields(action.image), err: describeError(err), errCode: errorCode(err) },
          `${action.key} failed unexpectedly: ${describeError(err)}`);
      }
    }, () => !deps.signal?.aborted);
    if (!deps.signal?.aborted) {
      for (const target of deps.targets) {
        if (failedTargets.has(target.name)) {
          log.warn({ event: 'image.retire.skipped', target: target.name }, `retention skipped on ${target.name}: it failed this run`);
          continue;
        }
        try {
          await retire(deps, target, counts, fail, findings.eol, jobs.touchedTargets.has(target.name) ? undefined : listings.get(target.name));
        } catch (err) {
          fail(`${target.name}: retention failed: ${describeError(err)}`);
          log.error({ event: 'image.retire.failed', target: target.name, err: describeError(err), errCode: errorCode(err) }, `retention on ${target.name} failed: ${describeError(err)}`);
        }
      }
    }
  } catch (err) {
    cycleError(err);
  }
  for (const err of await Promise.all(removals)) if (err !== undefined) cycleError(err);
  const result: RunSummary['result'] = deps.signal?.aborted ? 'interrupted' : counts.failed > 0 ? 'failed' : findings.incomplete.length > 0 ? 'incomplete' : 'ok';
  store.finishRun(runId, result, counts, errors[0] ?? null, new Date(), findings);
  try {
    const { prunedRuns } = store.compact(config.history.keepRuns);
    if (prunedRuns > 0) log.debug({ event: 'sync.history.pruned', runs: prunedRuns, keepRuns: config.history.keepRuns }, `pruned ${prunedRuns} old run(s) from history`);
  } catch (err) {
    log.warn({ event: 'sync.history.failed', err: describeError(err), errCode: errorCode(err) }, `state housekeeping failed: ${describeError(err)}; retried next cycle`);
  }
  const level = result === 'failed' ? 'error' : result === 'incomplete' ? 'warn' : 'info';
  const missing = findings.incomplete.map((i) => `${i.release}/${i.arch} (${i.stream})`);
  log[level]({ event: 'sync.run.finished', runId, result, durationMs: Date.now() - startedMs, ...counts, errors, ...findings },
    `sync run ${result}: ${counts.discovered} new, ${counts.downloaded} downloaded, ${counts.published} published, ${counts.retired} retired, ${counts.failed} failed${missing.length > 0 ? `; missing upstream: ${missing.join(', ')}` : ''}`);
  return { runId, result, errors, ...counts, ...findings };
}

async function retire(
  deps: SyncDeps, target: Target, counts: RunCounts, fail: (message: string) => void, eolFound: RunFindings['eol'], listed?: PublishedImage[],
): Promise<void> {
  const log = deps.log.child({ target: target.name });
  let published: PublishedImage[];
  try {
    published = listed ?? await target.listPublished({ log });
  } catch (err) {
    fail(`${target.name}: listing for retention failed: ${describeError(err)}`);
    log.error({ event: 'image.retire.failed', err: describeError(err), errCode: errorCode(err) }, `cannot list ${target.name} for retention`);
    return;
  }
  const decision = decideRetention(published, retentionPolicy(deps, target, published, eolFound));
  for (const [step, images] of [['hide', decision.hide], ['remove', decision.remove]] as const) {
    for (const image of images) {
      const key = publishedImageKey(image);
      const fields = { release: image.release, arch: image.arch, serial: image.serial, imageId: image.ref };
      try {
        if (step === 'hide') await target.hide(image, { log });
        else await target.remove(image, { log });
        if (deps.store.getImage(key)?.publications[target.name]) {
          deps.store.setPublication(key, target.name, step === 'hide' ? 'hidden' : 'removed');
        }
        counts.retired += step === 'remove' ? 1 : 0;
        const endOfLife = decision.endOfLife.has(image);
        log.info({ event: step === 'hide' ? 'image.retire.hidden' : 'image.retire.removed', ...fields, reason: endOfLife ? 'eol' : 'keep' },
          `${step === 'hide' ? 'hid' : 'removed'} ${image.ref} (${endOfLife ? `${image.release} is past its end of life` : `older than the newest ${deps.config.keep}`})`);
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
  return {
    keep: deps.config.keep, hidesBeforeDelete: target.hidesBeforeDelete, hideGraceMs: target.hideGraceMs, nowMs,
    eol: { policy: config?.eol ?? 'keep', releases: endOfLifeReleases(nowMs, eolFound, published.map((i) => i.release)) },
  };
}

/**
 * Once per cycle, the proxies requests go through (credentials masked): for the source (and clouds without
 * their own), and for each target reached otherwise. Nothing when everything goes direct.
 */
function logProxies(deps: SyncDeps, log: Logger): void {
  try {
    const source = resolveProxySettings(process.env, deps.config.http);
    const targets: Record<string, ReturnType<typeof describeProxySettings>> = {};
    for (const target of deps.targets as Array<Target & { proxySettings?: () => ProxySettings }>) {
      const own = target.proxySettings?.();
      if (own && JSON.stringify(own) !== JSON.stringify(source)) targets[target.name] = describeProxySettings(own);
    }
    if (source.origin === 'none' && Object.keys(targets).length === 0) return;
    const shown = describeProxySettings(source);
    log.info({ event: 'http.proxy', ...shown, targets },
      `requests go through ${shown.httpsProxy ?? shown.httpProxy ?? 'no proxy'} (${shown.origin})${shown.noProxy.length ? `, direct to ${shown.noProxy.join(',')}` : ''}${Object.keys(targets).length ? `; own settings for ${Object.keys(targets).join(', ')}` : ''}`);
  } catch {
    // An invalid proxy setting fails where the client is built, with the error that names it.
  }
}
