/**
 * The long-running service: sync cycles on a cron schedule, one at a time, under the state lock; a
 * health/metrics listener fed by the log; SIGTERM/SIGINT stop within a grace time; SIGHUP reloads config.
 * Upstream and cloud errors fail a cycle, never the daemon.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import path from 'node:path';
import type { Dispatcher } from 'undici';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import { describeError, errorCode } from '../errors.js';
import { createHttpClient, httpClientOptionsFor } from '../fetch/http-client.js';
import { createLogHandle, type LogHandle, type Logger } from '../log.js';
import { acquireStateLock, type StateLock } from '../state/lock.js';
import { StateStore } from '../state/store.js';
import { runSyncCycle, type RunSummary } from '../sync/run.js';
import { createTargets, loadTargetSettings } from '../targets/create.js';
import type { Target } from '../targets/target.js';
import { HealthTracker } from './health.js';
import { startStatusServer, type StatusServer } from './http-server.js';
import { SyncMetrics } from './metrics.js';
import { failureRetryDelayMs, resolveSchedule, startSchedule, type CycleSchedule } from './schedule.js';

export interface DaemonOptions {
  /** --config, as for every command (else $CLOUDIMG_SYNC_CONFIG, the system file, or defaults). */
  config?: string;
  /** --log-level: overrides log.level, also after a reload. */
  logLevel?: string;
}

/** What a cycle runs with; replaced as a whole on reload, so a cycle in flight keeps the one it started with. */
interface Runtime {
  config: LoadedConfig;
  targets: Target[];
  client: Dispatcher;
  cyclesUsing: number;
  retired: boolean;
}

type Trigger = 'start' | 'schedule' | 'retry';

export class Daemon {
  private runtime: Runtime;
  private schedule: CycleSchedule | undefined;
  private server: StatusServer | undefined;
  private cycle: { promise: Promise<void>; abort: AbortController; startedMs: number } | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private consecutiveFailures = 0;
  private stopping: Promise<void> | undefined;
  private stopped!: () => void;
  /** Resolves once the daemon has shut down cleanly. */
  readonly done: Promise<void>;

  private constructor(
    private readonly options: DaemonOptions,
    config: LoadedConfig,
    private readonly logs: LogHandle,
    private readonly lock: StateLock,
    private readonly store: StateStore,
    private readonly health: HealthTracker,
    private readonly metrics: SyncMetrics,
  ) {
    this.runtime = buildRuntime(config, logs.log);
    this.done = new Promise((resolve) => { this.stopped = resolve; });
  }

  private get log(): Logger {
    return this.logs.log;
  }

  /** Loads config, takes the state lock (AlreadyRunningError if held), starts the listener and the schedule. */
  static async start(options: DaemonOptions): Promise<Daemon> {
    const config = loadConfig(options.config);
    const health = new HealthTracker(config.health.maxAgeHours, Date.now(), config.health.maxCycleHours);
    let store: StateStore | undefined;
    const metrics = new SyncMetrics(() => store);
    const logs = createLogHandle({ level: options.logLevel ?? config.log.level, taps: [metrics.observe, health.observe] });
    const lock = acquireStateLock(config.stateDir);
    let daemon: Daemon | undefined;
    let schedule: string;
    try {
      schedule = resolveSchedule(config.schedule, config.stateDir);
      store = StateStore.open(config.stateDir);
      const runs = store.listRuns(50);
      health.seedFromRuns(runs);
      metrics.seedFromRuns(runs);
      daemon = new Daemon(options, config, logs, lock, store, health, metrics);
      await loadTargetSettings(daemon.runtime.targets);
      await daemon.startListener(config);
    } catch (err) {
      if (daemon) await closeRuntime(daemon.runtime);
      store?.close();
      lock.release();
      throw err;
    }
    daemon.schedule = startSchedule(schedule, () => daemon.trigger('schedule'), daemon.log);
    daemon.installSignalHandlers();
    daemon.log.info({
      event: 'daemon.started', schedule, scheduleFrom: config.schedule ? 'config' : 'install-id', nextRunAt: daemon.schedule.nextRun()?.toISOString(),
      runOnStart: config.runOnStart, config: config.origin, stateDir: path.resolve(config.stateDir),
      targets: daemon.runtime.targets.map((t) => t.name),
    }, `daemon started; cycles on "${schedule}"${config.schedule ? '' : ' (hourly at this install\'s minute)'}`);
    if (config.runOnStart) daemon.trigger('start');
    return daemon;
  }

  // ---------------------------------------------------------------- cycles

  /** Start a cycle unless one is running (then skip: a cycle catches up on everything anyway). */
  trigger(reason: Trigger): void {
    if (this.stopping) return;
    if (this.cycle) {
      this.log.warn({ event: 'daemon.cycle.skipped', trigger: reason, runningForMs: Date.now() - this.cycle.startedMs },
        `${reason} cycle skipped: the previous cycle is still running`);
      return;
    }
    clearTimeout(this.retryTimer);
    this.retryTimer = undefined;
    const abort = new AbortController();
    const promise = this.runCycle(reason, abort.signal).finally(() => { this.cycle = undefined; });
    this.cycle = { promise, abort, startedMs: Date.now() };
  }

  private async runCycle(reason: Trigger, signal: AbortSignal): Promise<void> {
    const rt = this.runtime;
    rt.cyclesUsing++;
    this.log.debug({ event: 'daemon.cycle.triggered', trigger: reason }, `${reason} cycle`);
    let result: RunSummary['result'];
    try {
      ({ result } = await runSyncCycle({ config: rt.config, store: this.store, targets: rt.targets, client: rt.client, log: this.log, signal }));
    } catch (err) {
      // runSyncCycle records its own failures; this is state itself failing (disk full, database locked).
      result = 'failed';
      this.log.error({ event: 'daemon.cycle.failed', trigger: reason, err: describeError(err), errCode: errorCode(err) }, `cycle failed: ${describeError(err)}`);
    } finally {
      rt.cyclesUsing--;
      if (rt.retired && rt.cyclesUsing === 0) await closeRuntime(rt);
    }
    if (result === 'ok' || result === 'incomplete') this.consecutiveFailures = 0;
    if (result === 'failed') this.scheduleRetry();
  }

  /** After a failure: one extra, earlier cycle with exponential backoff, unless the schedule comes first. */
  private scheduleRetry(): void {
    if (this.stopping) return;
    this.consecutiveFailures++;
    const next = this.schedule?.nextRun();
    const delayMs = failureRetryDelayMs(this.consecutiveFailures, this.runtime.config.failureRetry, next ? next.getTime() - Date.now() : null);
    if (delayMs === undefined) {
      this.log.info({ event: 'daemon.retry.scheduled', consecutiveFailures: this.consecutiveFailures, retryAt: next?.toISOString() }, `retry at the next scheduled cycle`);
      return;
    }
    const retryAt = new Date(Date.now() + delayMs);
    this.retryTimer = setTimeout(() => this.trigger('retry'), delayMs);
    this.log.info({ event: 'daemon.retry.scheduled', consecutiveFailures: this.consecutiveFailures, delayMs, retryAt: retryAt.toISOString() },
      `cycle failed ${this.consecutiveFailures} time(s) in a row; retrying at ${retryAt.toISOString()}`);
  }

  // ---------------------------------------------------------------- signals

  private installSignalHandlers(): void {
    const onStop = (signal: NodeJS.Signals) => void this.stop(signal);
    const onReload = () => void this.reload();
    process.on('SIGTERM', onStop);
    process.on('SIGINT', onStop);
    process.on('SIGHUP', onReload);
    void this.done.then(() => {
      process.off('SIGTERM', onStop);
      process.off('SIGINT', onStop);
      process.off('SIGHUP', onReload);
    });
  }

  /** Stop scheduling, abort the cycle in flight, wait at most shutdownGraceMs, release everything. */
  stop(signal: NodeJS.Signals | 'stop' = 'stop'): Promise<void> {
    if (this.stopping) {
      this.log.warn({ event: 'daemon.stopping', signal, again: true }, `${signal}: already stopping`);
      return this.stopping;
    }
    this.stopping = this.shutdown(signal);
    return this.stopping;
  }

  private async shutdown(signal: string): Promise<void> {
    const graceMs = this.runtime.config.shutdownGraceMs;
    const startedMs = Date.now();
    this.log.info({ event: 'daemon.stopping', signal, graceMs, cycleRunning: this.cycle !== undefined },
      `${signal}: stopping${this.cycle ? `; aborting the cycle in flight (up to ${graceMs} ms)` : ''}`);
    this.schedule?.stop();
    clearTimeout(this.retryTimer);
    let cycleDone = true;
    if (this.cycle) {
      this.cycle.abort.abort(new Error(`stopped by ${signal}`));
      const grace = new AbortController();
      cycleDone = await Promise.race([
        this.cycle.promise.then(() => true),
        sleep(graceMs, false, { signal: grace.signal }).catch(() => false),
      ]);
      grace.abort();
      if (!cycleDone) {
        this.log.error({ event: 'daemon.stop.timeout', graceMs },
          `the cycle did not stop within ${graceMs} ms; exiting anyway (the run is marked interrupted and resumed next start)`);
      }
    }
    await this.server?.close();
    if (cycleDone) {
      await closeRuntime(this.runtime);
      this.store.close();
    }
    this.lock.release();
    this.log.info({ event: 'daemon.stopped', signal, durationMs: Date.now() - startedMs }, 'daemon stopped');
    this.stopped();
  }

  /** SIGHUP: validate the new config (and the targets' credentials) first; keep the running one if it is invalid. */
  async reload(): Promise<void> {
    if (this.stopping) return;
    const old = this.runtime.config;
    let next: Runtime;
    let schedule: string;
    try {
      const config = loadConfig(this.options.config);
      if (path.resolve(config.stateDir) !== path.resolve(old.stateDir)) {
        throw new Error(`stateDir changed (${old.stateDir} -> ${config.stateDir}); that needs a restart, the lock is held on the old one`);
      }
      schedule = resolveSchedule(config.schedule, config.stateDir);
      next = buildRuntime(config, this.log);
      await loadTargetSettings(next.targets).catch(async (err: unknown) => {
        await closeRuntime(next);
        throw err;
      });
    } catch (err) {
      this.log.error({ event: 'daemon.reload.failed', err: describeError(err), errCode: errorCode(err) },
        `config reload failed, keeping the running configuration: ${describeError(err)}`);
      return;
    }
    if (this.stopping) {
      await closeRuntime(next);
      return;
    }
    const changed = Object.keys(next.config).filter((k) => JSON.stringify(next.config[k as keyof LoadedConfig]) !== JSON.stringify(old[k as keyof LoadedConfig]));
    const previous = this.runtime;
    this.runtime = next;
    previous.retired = true;
    if (previous.cyclesUsing === 0) void closeRuntime(previous);
    this.logs.setLevel(this.options.logLevel ?? next.config.log.level);
    this.health.maxAgeHours = next.config.health.maxAgeHours;
    this.health.maxCycleHours = next.config.health.maxCycleHours;
    if (schedule !== this.schedule?.expression) {
      this.schedule?.stop();
      this.schedule = startSchedule(schedule, () => this.trigger('schedule'), this.log);
    }
    this.log.info({ event: 'daemon.reloaded', config: next.config.origin, changed, schedule, nextRunAt: this.schedule?.nextRun()?.toISOString() },
      `configuration reloaded${changed.length ? ` (${changed.join(', ')})` : ' (no changes)'}`);
    if (JSON.stringify(next.config.health) !== JSON.stringify(old.health)) void this.restartListener(next.config);
  }

  // ---------------------------------------------------------------- health/metrics listener

  private async startListener(config: LoadedConfig): Promise<void> {
    if (!config.health.enabled) return;
    this.server = await startStatusServer({
      listen: config.health.listen,
      port: config.health.port,
      health: () => this.health.report(),
      metrics: async () => ({ contentType: this.metrics.registry.contentType, body: await this.metrics.registry.metrics() }),
    });
    this.log.info({ event: 'daemon.health.listening', address: this.server.address, port: this.server.port },
      `health and metrics on http://${this.server.address}:${this.server.port}/healthz and /metrics`);
  }

  private async restartListener(config: LoadedConfig): Promise<void> {
    const old = this.server;
    if (old && config.health.enabled && old.port === config.health.port && old.address === config.health.listen) return;
    this.server = undefined;
    await old?.close();
    try {
      await this.startListener(config);
    } catch (err) {
      this.log.error({ event: 'daemon.health.failed', err: describeError(err), errCode: errorCode(err) }, describeError(err));
    }
  }
}

/** The targets get the daemon's logger: their OpenStack clients' events are the same as under `sync --once`. */
function buildRuntime(config: LoadedConfig, log: Logger): Runtime {
  const targets = createTargets(config, { log });
  const client = createHttpClient(httpClientOptionsFor(config));
  return { config, targets, client, cyclesUsing: 0, retired: false };
}

/** Release a runtime's connections: the HTTP client, and targets that hold their own (Glance sessions). */
async function closeRuntime(rt: Runtime): Promise<void> {
  await rt.client.close();
  for (const target of rt.targets as Array<Target & { close?: () => Promise<void> }>) {
    await target.close?.().catch(() => undefined);
  }
}
