/** When the daemon runs: the cron schedule, and the extra earlier retry after failed cycles. */
import { createTask, type ScheduledTask } from 'node-cron';
import type { Logger } from '../log.js';

export { cronExpressionValid } from '../config/cron.js';

/**
 * Delay of the extra retry after `consecutiveFailures` failed cycles in a row (1 = the first failure):
 * min(base * 2^(n-1), max). Undefined when the next scheduled cycle comes first anyway.
 */
export function failureRetryDelayMs(
  consecutiveFailures: number,
  policy: { baseDelayMs: number; maxDelayMs: number },
  msToNextScheduled: number | null,
): number | undefined {
  if (consecutiveFailures < 1) return undefined;
  const delay = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(consecutiveFailures - 1, 30));
  if (msToNextScheduled !== null && msToNextScheduled <= delay) return undefined;
  return delay;
}

export interface CycleSchedule {
  readonly expression: string;
  /** When the next scheduled cycle starts, or null. */
  nextRun(): Date | null;
  stop(): void;
}

/** Calls `onTick` on the cron schedule. node-cron's own messages go to our log, not to the console. */
export function startSchedule(expression: string, onTick: () => void, log: Logger): CycleSchedule {
  const task: ScheduledTask = createTask(expression, () => onTick(), {
    name: 'sync-cycle',
    logger: {
      info: (m) => log.debug({ event: 'daemon.cron' }, m),
      debug: (m) => log.debug({ event: 'daemon.cron' }, String(m)),
      warn: (m) => log.warn({ event: 'daemon.cron' }, m),
      error: (m) => log.warn({ event: 'daemon.cron' }, String(m)),
    },
  });
  void task.start();
  return {
    expression,
    nextRun: () => task.getNextRun(),
    stop: () => void task.destroy(),
  };
}
