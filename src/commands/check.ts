import path from 'node:path';
import { loadConfig, type LoadedConfig } from '../config/load.js';
import { probeWritableDirectory } from '../directory-writable.js';
import { ConfigError, describeError } from '../errors.js';
import { createHttpClient, httpClientOptionsFor } from '../fetch/http-client.js';
import { createSource } from '../source/registry.js';
import { createLogger, type Logger } from '../log.js';
import { loadKeyring } from '../source/signature.js';
import { describeHolder, probeStateLock } from '../state/lock.js';
import { createTargets } from '../targets/create.js';
import type { Target } from '../targets/target.js';
import type { GlobalOptions } from './context.js';

export interface CheckResult {
  /** `config`, `stateDir`, `cacheDir`, `source`, `keyring`, `target:<name>` */
  name: string;
  ok: boolean;
  detail: string;
  /** The failure is one of configuration (missing credentials, a release the source lacks): exit 2, as every command. */
  configError?: true;
}

export interface CheckReport {
  ok: boolean;
  checks: CheckResult[];
}

/** 0 all passed, 2 a failure is one of configuration, else 1. */
export function checkExitCode(report: CheckReport): number {
  if (report.ok) return 0;
  return report.checks.some((c) => c.configError) ? 2 : 1;
}

function failed(name: string, err: unknown): CheckResult {
  return { name, ok: false, detail: describeError(err), ...(err instanceof ConfigError ? { configError: true as const } : {}) };
}

/**
 * What `check` calls on a target that offers it (authenticate, find the endpoint, ...). Not part of the
 * Target interface: a target without it gets the generic check of its type, if any.
 */
type CheckableTarget = Target & {
  check?: (ctx: { log: Logger; signal?: AbortSignal }) => Promise<string | void>;
  close?: () => Promise<void>;
};

const CHECK_TIMEOUT_MS = 30_000;

/**
 * `check`: validates config (a ConfigError propagates: exit 2), then probes what a cycle needs without
 * changing state: state and cache directories writable, the source reachable, the keyring readable, and
 * every target usable. Takes no lock: safe next to a running daemon.
 */
export async function checkCommand(options: GlobalOptions): Promise<CheckReport> {
  const config = loadConfig(options.config);
  const log = createLogger({ level: options.logLevel ?? 'warn', destination: process.stderr });
  const checks: CheckResult[] = [{
    name: 'config', ok: true,
    detail: `${config.origin}: ${config.streams.map((s) => `${s.id} ${s.releases.map((r) => r.codename).join(',')} (${s.arches.join(',')})`).join('; ')}, ${config.targets.length} target(s), schedule ${config.schedule ? `"${config.schedule}"` : 'hourly at a minute fixed per install (stateDir/install-id)'}`,
  }];
  checks.push(await directoryCheck('stateDir', config.stateDir, lockHolder(config)));
  checks.push(await directoryCheck('cacheDir', config.cacheDir));
  checks.push(await sourceCheck(config, log));
  if (config.source.verifySignature) checks.push(await keyringCheck(config));
  checks.push(...(await targetChecks(config, log)));
  return { ok: checks.every((c) => c.ok), checks };
}

export function formatCheck(report: CheckReport): string {
  const width = Math.max(...report.checks.map((c) => c.name.length));
  return report.checks.map((c) => `${c.ok ? 'ok  ' : 'FAIL'}  ${c.name.padEnd(width)}  ${c.detail}`).join('\n');
}

async function guarded(name: string, probe: () => Promise<string>): Promise<CheckResult> {
  try {
    return { name, ok: true, detail: await probe() };
  } catch (err) {
    return failed(name, err);
  }
}

/** Writable: an existing directory takes a probe file; a missing one needs a writable nearest ancestor. */
function directoryCheck(name: string, dir: string, note = ''): Promise<CheckResult> {
  return guarded(name, async () => `${await probeWritableDirectory(dir)}${note}`);
}

function lockHolder(config: LoadedConfig): string {
  const holder = probeStateLock(config.stateDir);
  return holder ? `; lock held by ${describeHolder(holder)} (a running instance)` : '';
}

function sourceCheck(config: LoadedConfig, log: Logger): Promise<CheckResult> {
  return guarded('source', async () => {
    const client = createHttpClient(httpClientOptionsFor(config));
    try {
      const signal = AbortSignal.timeout(CHECK_TIMEOUT_MS);
      const source = createSource(config);
      return await source.check({ client, log, signal }).catch((err: unknown) => {
        if ((err as Error).name === 'TimeoutError') throw new Error(`${source.url}: no answer within ${CHECK_TIMEOUT_MS / 1000} s; check source.url and network access`);
        throw err;
      });
    } finally {
      await client.close();
    }
  });
}

function keyringCheck(config: LoadedConfig): Promise<CheckResult> {
  return guarded('keyring', async () => {
    const keys = await loadKeyring(config.keyringPath);
    return `${config.keyringPath}: ${keys.map((k) => k.getFingerprint().toUpperCase()).join(', ')}`;
  });
}

async function targetChecks(config: LoadedConfig, log: Logger): Promise<CheckResult[]> {
  let targets: CheckableTarget[];
  try {
    targets = createTargets(config);
  } catch (err) {
    return [failed('targets', err)];
  }
  try {
    return await checkEach(targets, log);
  } finally {
    for (const target of targets) await target.close?.().catch(() => undefined);
  }
}

async function checkEach(targets: CheckableTarget[], log: Logger): Promise<CheckResult[]> {
  const results: CheckResult[] = [];
  for (const target of targets) {
    const name = `target:${target.name}`;
    if (target.check) {
      const check = target.check.bind(target);
      results.push(await guarded(name, async () => {
        const signal = AbortSignal.timeout(CHECK_TIMEOUT_MS);
        const detail = await Promise.race([
          check({ log: log.child({ target: target.name }), signal }),
          new Promise<never>((_, reject) => signal.addEventListener('abort', () => reject(new Error(`no answer within ${CHECK_TIMEOUT_MS / 1000} s`)))),
        ]);
        return `${target.type}: ${detail || 'ok'}`;
      }));
    } else {
      results.push({ name, ok: true, detail: `${target.type}: no check available for this target type` });
    }
  }
  return results;
}
