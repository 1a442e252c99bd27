import type { Dispatcher } from 'undici';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import { createHttpClient, httpClientOptionsFor } from '../fetch/http-client.js';
import type { DestinationStream } from 'pino';
import { createLogger, type Logger } from '../log.js';
import { acquireStateLock, type StateLock } from '../state/lock.js';
import { StateStore } from '../state/store.js';
import { createTargets } from '../targets/create.js';
import type { Target } from '../targets/target.js';

export interface GlobalOptions {
  config?: string;
  logLevel?: string;
}

export interface CommandContext {
  config: LoadedConfig;
  log: Logger;
  store: StateStore;
  targets: Target[];
  client: Dispatcher;
  close(): Promise<void>;
}

export interface ContextOptions {
  /** Take the state lock (commands that change state). */
  lock?: boolean;
  /** Open state for reading only (`plan`): no lock needed, nothing written. */
  readOnlyState?: boolean;
  logLevel?: string;
  /** Where logs go; stderr for a command whose stdout carries a document. Default stdout. */
  destination?: DestinationStream;
}

/**
 * What every command that touches state needs: validated config, logger, the state lock (one instance per
 * stateDir), the state database, the HTTP client and the targets. `close()` releases them in reverse order.
 */
export function openContext(options: GlobalOptions, { lock = true, readOnlyState = false, logLevel, destination }: ContextOptions = {}): CommandContext {
  const config = loadConfig(options.config);
  const log = createLogger({ level: options.logLevel ?? logLevel ?? config.log.level, destination });
  let stateLock: StateLock | undefined;
  if (lock) stateLock = acquireStateLock(config.stateDir);
  try {
    const store = readOnlyState ? StateStore.openReadOnly(config.stateDir) : StateStore.open(config.stateDir);
    const targets = createTargets(config, { log });
    const client = createHttpClient(httpClientOptionsFor(config));
    return {
      config, log, store, targets, client,
      async close() {
        await withoutStackTraces(async () => {
          for (const target of targets) await target.close?.();
          await client.close();
        });
        store.close();
        stateLock?.release();
      },
    };
  } catch (err) {
    stateLock?.release();
    throw err;
  }
}

/**
 * Runs `closeConnections` with errors made without stack traces. undici closes every idle keep-alive socket
 * by destroying it with a ClientDestroyedError, and node formats that error's stack (its streams read
 * `err.stack` on destroy): in the bundle (dist/cloudimg-sync.cjs) the first stack formatted makes V8 index
 * the lines of all 2.5 MB of it, 28 M instructions, 4% of a no-op `sync --once` (callgrind). Those errors are
 * never shown (a close that fails still says why, only without a stack); a command closes its context last,
 * with nothing else running.
 */
async function withoutStackTraces(closeConnections: () => Promise<void>): Promise<void> {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    await closeConnections();
  } finally {
    Error.stackTraceLimit = limit;
  }
}
