import path from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import type { Logger } from '../log.js';
import { DirectoryTarget } from './directory.js';
import { GlanceTarget } from './glance.js';
import type { Target } from './target.js';

export interface CreateTargetsOptions {
  /** Where glance targets read OS_* variables and look for clouds.yaml; default this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Logger of the OpenStack clients (Keystone authentication, Glance uploads). */
  log?: Logger;
}

/** Build the configured targets. The sync loop only ever sees the Target interface. */
export function createTargets(config: LoadedConfig, options: CreateTargetsOptions = {}): Target[] {
  return config.targets.map((t) => {
    switch (t.type) {
      case 'directory':
        return new DirectoryTarget(t.name, path.resolve(t.path));
      case 'glance':
        return new GlanceTarget(t, { env: options.env, log: options.log, keep: config.keep });
    }
  });
}
