/** When the daemon runs: the cron schedule, and the extra earlier retry after failed cycles. */
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, mkdirSync, openSync, readSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import type * as NodeCron from 'node-cron';
import { cron } from '../config/cron.js';
import { SyncError } from '../errors.js';
import type { Logger } from '../log.js';

export { cronExpressionValid } from '../config/cron.js';

/**
 * The schedule when the config sets none: hourly, at a minute and second fixed for this install and
 * different from most others', so that installs do not all poll the mirror at the same moment.
 */
export function installSchedule(installId: string): string {
  const digest = createHash('sha256').update(installId).digest();
  const minute = digest.readUInt16BE(0) % 60;
  const second = digest.readUInt16BE(2) % 60;
  return `${second} ${minute} * * * *`;
}

/** The file in stateDir holding a random value made on first use: what installSchedule() derives from. */
export const INSTALL_ID_FILE = 'install-id';
const INSTALL_ID_RE = /^[0-9a-f]{32}$/;

export class InstallIdError extends SyncError {
  constructor(file: string, problem: string) {
    super('INSTALL_ID_INVALID', `${file} ${problem}`,
      `delete ${file} (a new one is made, moving the default schedule to another minute) or set schedule: in the config`);
  }
}

/**
 * This install's random id, read from stateDir, or made and stored there (exclusively, never through a
 * symlink) on first use. Two daemons racing to make it read the one that won.
 */
export function readInstallId(stateDir: string): string {
  mkdirSync(stateDir, { recursive: true });
  const file = path.join(stateDir, INSTALL_ID_FILE);
  for (let attempt = 0; attempt < 2; attempt++) {
    let fd: number;
    try {
      fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ELOOP') throw new InstallIdError(file, 'is a symlink');
      if (code !== 'ENOENT') throw err;
      try {
        const id = randomBytes(16).toString('hex');
        const out = openSync(file, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o644);
        try {
          writeSync(out, `${id}\n`);
        } finally {
          closeSync(out);
        }
        return id;
      } catch (createErr) {
        if ((createErr as NodeJS.ErrnoException).code === 'EEXIST') continue;
        throw createErr;
      }
    }
    try {
      const buf = Buffer.alloc(64);
      const text = buf.subarray(0, readSync(fd, buf, 0, buf.length, 0)).toString('utf8').trim();
      if (!INSTALL_ID_RE.test(text)) throw new InstallIdError(file, 'does not hold 32 hex digits');
      return text;
    } finally {
      closeSync(fd);
    }
  }
  throw new InstallIdError(file, 'keeps appearing and vanishing');
}

/** The configured schedule, or this install's hourly one. */
export function resolveSchedule(configured: string | undefined, stateDir: string): string {
  return configured ?? installSchedule(readInstallId(stateDir));
}

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
  const task: NodeCron.ScheduledTask = cron().createTask(expression, () => onTick(), {
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
