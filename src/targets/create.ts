import type { ProxyConfig } from '../fetch/proxy.js';
import type { Target, CreateTargetOptions } from './target.js';
import { targetTypeOf, type TargetConfig } from './registry.js';

export type CreateTargetsOptions = CreateTargetOptions;

/** Build the configured targets from the registry. The sync loop only ever sees the Target interface. */
export function createTargets(config: { targets: readonly TargetConfig[]; keep?: number; http?: ProxyConfig }, options: CreateTargetsOptions = {}): Target[] {
  return config.targets.map((t) => {
    const type = targetTypeOf(t.type);
    if (!type) throw new Error(`target ${t.name}: unknown type ${t.type}`);
    return type.create(t, { keep: config.keep, http: config.http, ...options });
  });
}

/** Every target's settings beyond config.yaml (credentials), read before any work: ConfigError (exit 2) when missing. */
export async function loadTargetSettings(targets: readonly Target[]): Promise<void> {
  for (const target of targets) await target.loadSettings?.();
}
