/**
 * better-sqlite3's Database, handed its compiled addon by path.
 *
 * Left to itself better-sqlite3 finds the addon with the `bindings` package, which reads a stack trace
 * for its caller's file and tries a dozen folders from there: from one file per module that works, from
 * the bundle (dist/cloudimg-sync.cjs) it would look in the wrong package. Naming the addon lets the build
 * bundle better-sqlite3's JavaScript too (compiled through the code cache with the rest, instead of a
 * dozen files compiled at every start). Its install script (`prebuild-install || node-gyp rebuild
 * --release`) puts the addon in build/Release/ either way.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import Database from 'better-sqlite3';

const ADDON = path.join(path.dirname(createRequire(import.meta.url).resolve('better-sqlite3/package.json')), 'build', 'Release', 'better_sqlite3.node');

export type { Database };

export function openDatabase(file: string, options: Database.Options = {}): Database.Database {
  return new Database(file, { ...options, nativeBinding: ADDON });
}
