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
        for (const target of targets) await target.close?.();
        await client.close();
        store.close();
        stateLock?.release();
      },
    };
  } catch (err) {
    stateLock?.release();
    throw err;
  }
}
