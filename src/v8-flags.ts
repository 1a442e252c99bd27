// V8's flags in the installed CLI, so that every code cache is accepted. Imported first by the launcher
// (src/launcher.ts), before any module of node's that is not already loaded.
//
// node loads its own modules (net, http, tls, streams, crypto, ...) through a code cache built into the
// node binary, and our bundle through the one the build made (scripts/build.ts). V8 accepts a code cache
// only under the flags it was made with: it hashes every flag that is not at its default value, and node's
// built-in cache is made with none. With `--max-semi-space-size=1 --liftoff-only` on the command line,
// every start compiled ~100 of node's modules from source: ~150 M of the ~700 M instructions a no-op
// `sync --once` runs besides node's own start-up (callgrind).
//
// - `--max-semi-space-size=1` stays on the command line: V8 sizes the young generation once, when it makes
//   the heap, and never reads the flag again. Setting it back to its default here keeps the 1 MiB
//   semi-spaces (test/unit/v8-flags.test.ts checks both) and brings the flag hash back to node's.
// - `--liftoff-only` (undici's llhttp WebAssembly parser compiled by the baseline compiler only: the
//   optimizing one costs ~35 MiB of resident memory and ~500 M instructions for no measurable gain) is set
//   here, when the first WebAssembly module is compiled: undici compiles llhttp at its first connection,
//   by `new WebAssembly.Module`. node's modules loaded after that compile from source, as all did before.
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--max-semi-space-size=0'); // V8's default: "not set"
// A command line written for an earlier version (a systemd unit or an ENTRYPOINT copied from it) still passes
// --liftoff-only: it and the two flags it turns off go back to their defaults too, and it is set again below.
if (process.execArgv.includes('--liftoff-only')) setFlagsFromString('--no-liftoff-only --wasm-tier-up --wasm-dynamic-tiering');

// Typed here: the DOM library, which types WebAssembly, is not in the compile.
interface WebAssemblyGlobal { Module: new (bytes: ArrayBufferView | ArrayBuffer) => object }
const wasm = (globalThis as unknown as { WebAssembly: WebAssemblyGlobal }).WebAssembly;
const { Module } = wasm;
function compileWithLiftoffOnly(bytes: ArrayBufferView | ArrayBuffer): object {
  wasm.Module = Module; // once: the flag stays set for every later module
  setFlagsFromString('--liftoff-only');
  return new Module(bytes);
}
wasm.Module = compileWithLiftoffOnly as unknown as WebAssemblyGlobal['Module'];
