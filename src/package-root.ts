import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The installed package: the nearest directory above this module holding a package.json named
 * cloudimg-sync. It is src/.. in development and dist/.. once built, whether dist/ holds one file per
 * module or a single bundle (whose modules all share the bundle's URL), so paths into the package
 * (keys/) are resolved from here, never as `../..` from a module.
 */
interface PackageRoot {
  dir: string;
  version: string;
}

function findPackageRoot(): PackageRoot | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 6; depth++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'cloudimg-sync' && typeof pkg.version === 'string') return { dir, version: pkg.version };
    } catch {
      // not here: look one level up
    }
    dir = dirname(dir);
  }
  return undefined;
}

const found = findPackageRoot();

/** The package's directory; undefined when no package.json is found (a copied file outside the tree). */
export const PACKAGE_DIR: string | undefined = found?.dir;

/** The package version; `0.0.0` when no package.json is found. */
export const VERSION: string = found?.version ?? '0.0.0';
