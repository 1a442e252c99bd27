#!/usr/bin/env -S node --max-semi-space-size=1 --liftoff-only
// The installed entry point (dist/cli.js): runs the CLI bundled into one file (dist/cloudimg-sync.cjs) with
// the V8 code cache made for it at build time (dist/cloudimg-sync.cjs.v8cache, scripts/build.ts), so a
// start costs neither resolving ~150 modules nor compiling them: `sync --once` with nothing new is mostly
// start-up. V8 checks the cache against its own version, these flags and the source, and rejects one that
// does not match (another node binary, other flags); the bundle is then compiled as usual, only slower.
// Nothing is written at run time: the install directory may be read-only.
//
// A 1 MiB young generation keeps a transfer's short-lived buffers from growing the heap: peak RSS of a
// download drops by ~30 MiB at the same speed (measured: bench/ and the README). `--liftoff-only` compiles
// undici's llhttp WebAssembly parser with the baseline compiler alone: the optimizing one costs ~35 MiB of
// resident memory for no measurable gain on bulk bodies (the parser only counts body bytes). V8 reads both
// flags only at start, so they are on the command line wherever we start node: this shebang, `npm start`,
// the systemd unit, the Dockerfile; the build makes the code cache with them too.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { debuglog } from 'node:util';
import vm from 'node:vm';

const bundlePath = fileURLToPath(new URL('./cloudimg-sync.cjs', import.meta.url));
const cachePath = `${bundlePath}.v8cache`;

function readCodeCache(): Buffer | undefined {
  try {
    return readFileSync(cachePath);
  } catch {
    return undefined; // not built (yet): compile
  }
}

// The bundle is a CommonJS module: wrapped as node wraps one, on a line of its own so lines keep their numbers.
const wrapped = `(function (exports, require, module, __filename, __dirname) {\n${readFileSync(bundlePath, 'utf8')}\n})`;
function compile(): vm.Script {
  // Scoped: the cache's bytes are garbage once V8 has deserialized them.
  const cachedData = readCodeCache();
  const compiled = new vm.Script(wrapped, {
    filename: bundlePath,
    lineOffset: -1,
    cachedData,
    importModuleDynamically: vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
  // NODE_DEBUG=cloudimg-sync tells whether the start used the cache (a rejected one: rebuild with this node).
  debuglog('cloudimg-sync')('code cache %s: %s', cachePath, cachedData === undefined ? 'absent' : compiled.cachedDataRejected ? 'rejected' : 'accepted');
  return compiled;
}
const script = compile();

// The build's training run (scripts/build.ts): after the run, so that the functions the run compiled
// lazily are in the cache too, not only the top level.
if (process.env.CLOUDIMG_SYNC_WRITE_CODE_CACHE === '1') {
  process.once('exit', () => {
    writeFileSync(`${cachePath}.tmp`, script.createCachedData());
    renameSync(`${cachePath}.tmp`, cachePath);
  });
}

const module = { exports: {} };
const run = script.runInThisContext() as (...args: unknown[]) => void;
run.call(module.exports, module.exports, createRequire(bundlePath), module, bundlePath, path.dirname(bundlePath));
