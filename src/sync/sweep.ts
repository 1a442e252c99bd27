/**
 * What kills leave behind, removed at the start of a cycle: temporary files of dead processes on the targets
 * (each target's optional `sweep`), and cached copies of images every target already has (a kill between the
 * last publication and the cache removal). Failures are logged and left for the next cycle.
 */
import { rm } from 'node:fs/promises';
import { describeError, errorCode } from '../errors.js';
import type { UpstreamImage } from '../image.js';
import type { Logger } from '../log.js';
import type { ImageRecord, StateStore } from '../state/store.js';
import type { Target } from '../targets/target.js';
import { cachePath } from './image-job.js';

export interface SweepDeps {
  store: StateStore;
  targets: readonly Target[];
  log: Logger;
  cacheDir: string;
  keepCache: boolean;
}

/** Every configured target holds the image (published, or hidden by retention). Pure. */
export function publishedEverywhere(record: ImageRecord, targets: readonly string[]): boolean {
  return targets.length > 0 && targets.every((t) => {
    const state = record.publications[t]?.state;
    return state === 'published' || state === 'hidden';
  });
}

export async function sweepAtCycleStart(deps: SweepDeps): Promise<void> {
  const { log } = deps;
  for (const target of deps.targets) {
    if (!target.sweep) continue;
    try {
      for (const file of await target.sweep({ log })) {
        log.info({ event: 'sync.sweep.removed', target: target.name, path: file, reason: 'temporary file of a dead process' }, `removed ${file}`);
      }
    } catch (err) {
      log.warn({ event: 'sync.sweep.failed', target: target.name, err: describeError(err), errCode: errorCode(err) }, `sweeping ${target.name} failed: ${describeError(err)}`);
    }
  }
  if (deps.keepCache) return;
  const names = deps.targets.map((t) => t.name);
  for (const record of deps.store.listImages()) {
    if (!publishedEverywhere(record, names)) continue;
    const cached = cachePath(deps, record as unknown as UpstreamImage);
    try {
      const removed: string[] = [];
      for (const file of [cached, `${cached}.part`, `${cached}.part.json`, ...(record.localPath && record.localPath !== cached ? [record.localPath] : [])]) {
        if (await rm(file).then(() => true, (err: unknown) => { if (errorCode(err) === 'ENOENT') return false; throw err; })) removed.push(file);
      }
      if (record.localPath) deps.store.setLocalPath(record.key, null);
      for (const file of removed) {
        log.info({ event: 'sync.sweep.removed', path: file, reason: 'cached copy of an image every target has' }, `removed ${file}`);
      }
    } catch (err) {
      log.warn({ event: 'sync.sweep.failed', path: cached, err: describeError(err), errCode: errorCode(err) }, `removing ${cached} failed: ${describeError(err)}`);
    }
  }
}
