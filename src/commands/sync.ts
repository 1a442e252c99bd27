import { runSyncCycle, type RunSummary } from '../sync/run.js';
import { loadTargetSettings } from '../targets/create.js';
import { openContext, type GlobalOptions } from './context.js';

/** `sync --once`: one cycle. Resolves to the run summary; SIGINT/SIGTERM stop it cleanly (resumable). */
export async function syncOnce(options: GlobalOptions): Promise<RunSummary> {
  const ctx = openContext(options);
  try {
    await loadTargetSettings(ctx.targets);
  } catch (err) {
    await ctx.close();
    throw err;
  }
  const abort = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    ctx.log.warn({ event: 'sync.signal', signal }, `${signal}: stopping after the current step; partial downloads resume next run`);
    abort.abort(new Error(`stopped by ${signal}`));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await runSyncCycle({ ...ctx, signal: abort.signal });
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    await ctx.close();
  }
}
