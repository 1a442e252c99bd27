import path from 'node:path';
import type { LoadedConfig } from '../config/load.js';
import { ConfigError } from '../errors.js';
import { DirectoryTarget } from './directory.js';
import type { Target } from './target.js';

/** Build the configured targets. The sync loop only ever sees the Target interface. */
export function createTargets(config: LoadedConfig): Target[] {
  return config.targets.map((t) => {
    switch (t.type) {
      case 'directory':
        return new DirectoryTarget(t.name, path.resolve(t.path));
      case 'glance':
        throw new ConfigError(`target ${t.name}: type glance is not available in this build`, 'use a directory target');
    }
  });
}
