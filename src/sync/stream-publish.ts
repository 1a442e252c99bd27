import { PassThrough } from 'node:stream';
import type { DownloadSink } from '../fetch/download.js';
import type { UpstreamImage } from '../image.js';
import type { PublishContext, PublishResult, Target, VerifiedFile } from '../targets/target.js';

export interface StreamOutcome {
  target: Target;
  result?: PublishResult;
  error?: unknown;
  bytes?: number;
  startedMs: number;
}

/**
 * Bytes buffered per streaming target before the download waits for it (backpressure). 1 MiB keeps the upload
 * fed as well as 4 MiB did, and peak RSS of a 1 GiB stream into Glance fell from 128-133 to 98 MiB (bench F,
 * `--cpu-paths stream`, alternating with the 4 MiB build; CPU and wall within the noise).
 */
const BRANCH_HIGH_WATER_BYTES = 1024 * 1024;

/**
 * Fan the bytes of one download out to every target that uploads while downloading. Each target reads its own
 * branch; the download waits for the slowest. `settle` ends the branches with the download's outcome and
 * resolves once every target has finished.
 */
export function startStreamPublications(
  image: UpstreamImage,
  targets: readonly Target[],
  contextFor: (target: Target) => PublishContext,
): { sink: DownloadSink; settle(file: VerifiedFile | undefined): Promise<StreamOutcome[]> } {
  let resolveVerified!: (file: VerifiedFile) => void;
  let rejectVerified!: (err: Error) => void;
  const verified = new Promise<VerifiedFile>((resolve, reject) => { resolveVerified = resolve; rejectVerified = reject; });
  verified.catch(() => undefined); // each target handles it; an unobserved rejection must not crash the process
  let resolveSize!: (bytes: number | undefined) => void;
  const sizeBytes = new Promise<number | undefined>((resolve) => { resolveSize = resolve; });
  let streamedBytes = 0;
  const branches = targets.map((target) => {
    const body = new PassThrough({ highWaterMark: BRANCH_HIGH_WATER_BYTES });
    // The target sees a destroyed branch through its own reading; this only keeps the error from being unhandled.
    body.on('error', () => undefined);
    const startedMs = Date.now();
    const outcome: Promise<StreamOutcome> = target.publishStream!(image, body, { ...contextFor(target), verified, sizeBytes })
      .then((result) => ({ target, result, bytes: streamedBytes, startedMs }), (error: unknown) => ({ target, error, startedMs }))
      .finally(() => { if (!body.writableEnded) body.destroy(); });
    return { body, outcome };
  });

  const sink: DownloadSink = {
    size(totalBytes) {
      resolveSize(totalBytes);
    },
    async write(chunk) {
      streamedBytes += chunk.length;
      await Promise.all(branches.map(({ body }) => writeOrWait(body, chunk)));
    },
    abort(reason) {
      resolveSize(undefined);
      for (const { body } of branches) body.destroy(reason);
    },
  };

  return {
    sink,
    async settle(file) {
      resolveSize(undefined); // a download that failed before its headers: nobody waits for a size any more
      if (file) {
        for (const { body } of branches) if (!body.destroyed) body.end();
        resolveVerified(file);
      } else {
        const reason = new Error('the download failed or did not verify');
        for (const { body } of branches) body.destroy(reason);
        rejectVerified(reason);
      }
      return Promise.all(branches.map((b) => b.outcome));
    },
  };
}

function writeOrWait(body: PassThrough, chunk: Buffer): Promise<void> | void {
  if (body.destroyed || body.writableEnded) return;
  if (body.write(chunk)) return;
  return new Promise((resolve) => {
    const done = () => { body.off('drain', done); body.off('close', done); resolve(); };
    body.on('drain', done);
    body.on('close', done);
  });
}
