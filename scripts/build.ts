/**
 * `npm run build`: dist/ as it is installed and run (the Dockerfile, the systemd unit, `npm start`).
 *
 *   dist/cli.js                    the entry point (src/launcher.ts, src/v8-flags.ts): node flags in its
 *                                  shebang; CommonJS, as dist/package.json says
 *   dist/cloudimg-sync.cjs         src/cli.ts and every dependency in one CommonJS file, except
 *                                  better-sqlite3's compiled addon (src/state/database.ts names it) and
 *                                  what is loaded by createRequire at run time (pino-pretty, node-cron):
 *                                  those stay in node_modules
 *   dist/cloudimg-sync.cjs.v8cache V8's code cache for it, made by a training run with the CLI's node flags
 *
 * One file instead of ~150 modules, read through a code cache, is what makes start-up cheap: a no-op
 * `sync --once` is mostly start-up (bench D). The cache is tied to the node binary that made it; another
 * node rejects it and compiles the bundle (slower, same behaviour): rebuild after upgrading node.
 *
 *   node --import tsx scripts/build.ts [--out DIR]      (DIR: default dist/; must sit in this package,
 *                                                      whose package.json and keys/ the CLI finds above it)
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build } from 'esbuild';

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const LAUNCHER = path.join(REPO_ROOT, 'src/launcher.ts');

export const BUNDLE_NAME = 'cloudimg-sync.cjs';
export const CODE_CACHE_NAME = `${BUNDLE_NAME}.v8cache`;

/** The node flags of the launcher's shebang: the ones every start uses, so the ones the cache is made with. */
export function launcherNodeFlags(): string[] {
  const shebang = /^#!\/usr\/bin\/env -S node(.*)$/m.exec(readFileSync(LAUNCHER, 'utf8'))?.[1] ?? '';
  return shebang.trim().split(/\s+/).filter(Boolean);
}

async function bundleCli(outDir: string): Promise<void> {
  await build({
    entryPoints: [path.join(REPO_ROOT, 'src/cli.ts')], outfile: path.join(outDir, BUNDLE_NAME),
    bundle: true, platform: 'node', format: 'cjs', target: 'node20',
    // In the bundle import.meta.url is the bundle's own URL, for every module: createRequire() and the package
    // root (src/package-root.ts) need no more. First in the file, "use strict" stays the directive it was.
    banner: { js: '"use strict";var importMetaUrl=require("node:url").pathToFileURL(__filename).href;' },
    define: { 'import.meta.url': 'importMetaUrl' },
    legalComments: 'none', logLevel: 'warning', sourcemap: false, minifyWhitespace: true,
  });
  // The launcher and src/v8-flags.ts, which it imports first, in one CommonJS file: node runs it without
  // loading its ES module loader (~20 of its own modules) before the flags are set.
  await build({
    entryPoints: [LAUNCHER], outfile: path.join(outDir, 'cli.js'),
    bundle: true, platform: 'node', format: 'cjs', target: 'node20', logLevel: 'warning',
  });
  writeFileSync(path.join(outDir, 'package.json'), `${JSON.stringify({ type: 'commonjs' })}\n`);
  chmodSync(path.join(outDir, 'cli.js'), 0o755);
}

/**
 * Runs the built CLI once with the launcher writing the code cache on exit: `sync --once` against a source
 * that refuses connections. It loads and runs what a cycle's start does (config, schema, state, logging,
 * HTTP client, the cycle up to the first request), so those functions are compiled into the cache too.
 */
function trainCodeCache(outDir: string): void {
  const work = mkdtempSync(path.join(tmpdir(), 'cloudimg-build-train-'));
  try {
    const config = path.join(work, 'config.yaml');
    writeFileSync(config, JSON.stringify({
      source: { url: 'http://127.0.0.1:9', channel: 'release', releases: ['noble'] },
      stateDir: path.join(work, 'state'), cacheDir: path.join(work, 'cache'), http: { retries: 0 },
      targets: [{ name: 'local', type: 'directory', path: path.join(work, 'images') }],
    }));
    const run = spawnSync(process.execPath, [...launcherNodeFlags(), path.join(outDir, 'cli.js'), '--config', config, 'sync', '--once'], {
      cwd: work, env: { ...process.env, CLOUDIMG_SYNC_WRITE_CODE_CACHE: '1', NODE_ENV: 'production' }, encoding: 'utf8', timeout: 60_000,
    });
    if (!existsSync(path.join(outDir, CODE_CACHE_NAME))) {
      throw new Error(`the training run wrote no code cache (exit ${run.status}): ${(run.stderr || run.stdout || String(run.error)).trim().split('\n').slice(-3).join('\n')}`);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/**
 * A start as installed must use the cache. V8 rejects one made under other flags than a start runs with:
 * the training run must not have changed any (src/v8-flags.ts sets `--liftoff-only` at the first
 * WebAssembly compile, which a run against a refusing source never reaches).
 */
function checkCodeCacheAccepted(outDir: string): void {
  const run = spawnSync(process.execPath, [...launcherNodeFlags(), path.join(outDir, 'cli.js'), '--version'], {
    env: { ...process.env, NODE_DEBUG: 'cloudimg-sync' }, encoding: 'utf8', timeout: 60_000,
  });
  if (!/code cache \S+: accepted/.test(run.stderr)) {
    throw new Error(`the CLI does not start from the code cache the build made: ${(run.stderr || String(run.error)).trim()}`);
  }
}

export async function buildDist(outDir: string): Promise<void> {
  rmSync(outDir, { recursive: true, force: true });
  await bundleCli(outDir);
  trainCodeCache(outDir);
  checkCodeCacheAccepted(outDir);
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({ options: { out: { type: 'string' } } });
  const outDir = path.resolve(values.out ?? path.join(REPO_ROOT, 'dist'));
  await buildDist(outDir);
  console.log(`built ${path.relative(process.cwd(), outDir) || '.'}/: cli.js, ${BUNDLE_NAME}, ${CODE_CACHE_NAME}`);
}
