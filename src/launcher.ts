#!/usr/bin/env -S node --max-semi-space-size=1
// The installed entry point (dist/cli.js): runs the CLI bundled into one file (dist/cloudimg-sync.cjs) with
// the V8 code cache made for it at build time (dist/cloudimg-sync.cjs.v8cache, scripts/build.ts), so a
// start costs neither resolving ~150 modules nor compiling them: `sync --once` with nothing new is mostly
// start-up. V8 checks the cache against its own version, its flags and the source, and rejects one that
// does not match (another node binary, other V8 flags); the bundle is then compiled as usual, only slower.
// Nothing is written at run time: the install directory may be read-only. Built as CommonJS (dist/ holds
// a package.json saying so): node runs it without loading its ES module loader first.
//
// A 1 MiB young generation keeps a transfer's short-lived buffers from growing the heap: peak RSS of a
// download drops by ~30 MiB at the same speed (measured: bench/ and the README). V8 reads that flag only at
// start, so it is on the command line wherever we start node: this shebang, `npm start`, the systemd unit,
// the Dockerfile. src/v8-flags.ts, first, then sets V8's flags back to what node's own code cache was made
// with (and sets `--liftoff-only` for WebAssembly when it is first needed).
import './v8-flags.js';
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { debuglog } from 'node:util';
import vm from 'node:vm';

const bundlePath = path.join(__dirname, 'cloudimg-sync.cjs');
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
