/** A test world for whole sync cycles: a fixture mirror, a temp dir, config, state and captured logs. */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { validateConfig, type LoadedConfig } from '../../src/config/load.js';
import { createHttpClient, httpClientOptionsFor } from '../../src/fetch/http-client.js';
import { createLogger } from '../../src/log.js';
import { StateStore } from '../../src/state/store.js';
import { runSyncCycle, type RunSummary } from '../../src/sync/run.js';
import { createTargets } from '../../src/targets/create.js';
import type { Target } from '../../src/targets/target.js';
import { startMirror, type Mirror, type MirrorOptions } from '../fixtures/mirror/index.js';

export interface LogEvent {
  event?: string;
  level: string;
  msg: string;
  [key: string]: unknown;
}

export interface SyncWorld {
  mirror: Mirror;
  dir: string;
  config: LoadedConfig;
  logs: LogEvent[];
  events(name: string): LogEvent[];
  /** Run one cycle with fresh state/targets objects, as a new process would. */
  sync(overrides?: { targets?: Target[]; signal?: AbortSignal; config?: LoadedConfig }): Promise<RunSummary>;
  /** The world's config with other top-level keys (targets, keep, source...), validated like a file. */
  reconfigure(changes: Record<string, unknown>): LoadedConfig;
  /** The world's config with other settings merged in (e.g. another `source`), same state, cache and targets. */
  configWith(raw: Record<string, unknown>): LoadedConfig;
  store(): StateStore;
  close(): Promise<void>;
}

export interface SyncWorldOptions {
  mirror?: MirrorOptions;
  config?: Record<string, unknown>;
  /** Environment glance targets read OS_* from (e.g. the test OpenStack's openrc); default this process's. */
  targetEnv?: Readonly<Record<string, string>>;
}

export async function createSyncWorld(options: SyncWorldOptions = {}): Promise<SyncWorld> {
  const mirror = await startMirror(options.mirror);
  try {
    return await buildWorld(mirror, options);
  } catch (err) {
    // A config the test meant to be invalid must not leave the mirror listening (the suite would never end).
    await mirror.close();
    throw err;
  }
}

async function buildWorld(mirror: Mirror, options: SyncWorldOptions): Promise<SyncWorld> {
  const dir = mkdtempSync(path.join(tmpdir(), 'cloudimg-sync-test-'));
  const raw = {
    source: { url: mirror.url, keyring: mirror.keyringPath, releases: ['noble'], arches: ['amd64'] },
    stateDir: path.join(dir, 'state'),
    cacheDir: path.join(dir, 'cache'),
    http: { retries: 3, retryBaseDelayMs: 10, retryMaxDelayMs: 50, idleTimeoutMs: 2_000 },
    targets: [{ name: 'local', type: 'directory', path: path.join(dir, 'images') }],
    ...options.config,
  };
  const rawSource = (options.config?.source ?? {}) as Record<string, unknown>;
  const shorthandDefaults = 'streams' in rawSource ? {} : { releases: ['noble'], arches: ['amd64'] };
  (raw as Record<string, unknown>).source = { url: mirror.url, keyring: mirror.keyringPath, ...shorthandDefaults, ...rawSource };
  let config: LoadedConfig;
  try {
    config = validateConfig(raw, 'test config');
  } catch (err) {
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  const reconfigure = (changes: Record<string, unknown>): LoadedConfig => {
    const source: Record<string, unknown> = { url: mirror.url, keyring: mirror.keyringPath, ...((changes.source ?? rawSource) as Record<string, unknown>) };
    if (!('streams' in source) && !('releases' in source)) Object.assign(source, { releases: ['noble'], arches: ['amd64'] });
    return validateConfig({ ...raw, ...changes, source }, 'test config');
  };
  const configWith = (more: Record<string, unknown>): LoadedConfig => validateConfig({ ...raw, ...more }, 'test config');
  const logs: LogEvent[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) logs.push(JSON.parse(line) as LogEvent);
      cb();
    },
  });
  const log = createLogger({ level: 'debug', destination: sink });
  const client = createHttpClient({ ...httpClientOptionsFor(config), connectTimeoutMs: 2_000 });
  const stores: StateStore[] = [];
  return {
    mirror, dir, config, logs, reconfigure, configWith,
    events: (name) => logs.filter((l) => l.event === name),
    store() {
      const s = StateStore.open(config.stateDir);
      stores.push(s);
      return s;
    },
    async sync(overrides = {}) {
      const cycleConfig = overrides.config ?? config;
      const store = StateStore.open(cycleConfig.stateDir);
      const made = overrides.targets ? [] : createTargets(cycleConfig, { env: options.targetEnv, log });
      try {
        return await runSyncCycle({
          config: cycleConfig, store, log, client, targets: overrides.targets ?? made, signal: overrides.signal, progressIntervalMs: 0,
        });
      } finally {
        store.close();
        for (const t of made) await (t as { close?: () => Promise<void> }).close?.();
      }
    },
    async close() {
      for (const s of stores) s.close();
      await client.close();
      await mirror.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
