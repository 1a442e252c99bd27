import { Daemon } from '../daemon/daemon.js';
import type { GlobalOptions } from './context.js';

/**
 * `daemon`: cycles on the configured schedule until SIGTERM/SIGINT. Rejects with AlreadyRunningError
 * (exit 3) when another instance holds the state lock, ConfigError (exit 2) on bad config.
 */
export async function daemonCommand(options: GlobalOptions): Promise<void> {
  const daemon = await Daemon.start(options);
  await daemon.done;
}
