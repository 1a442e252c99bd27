/**
 * src/v8-flags.ts, which the launcher imports first: node started with the CLI's flags accepts code caches
 * made without them (node's own, built into the binary, and ours), keeps the small young generation the
 * command line asked for, and compiles WebAssembly with Liftoff only. Each case runs in a node of its own.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { launcherNodeFlags } from '../../scripts/build.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const V8_FLAGS_MODULE = pathToFileURL(path.join(REPO, 'src/v8-flags.ts')).href;
const SOURCE = 'function add(a, b) { return a + b; } add(1, 2);';

let work: string;
before(async () => { work = await mkdtemp(path.join(tmpdir(), 'cloudimg-v8-flags-')); });
after(async () => { await rm(work, { recursive: true, force: true }); });

/** Runs `body` (an ES module) in a fresh node with `flags`, after src/v8-flags.ts when `withModule`; returns its stdout parsed as JSON. */
async function runInNode(name: string, flags: string[], body: string, withModule = true): Promise<Record<string, unknown>> {
  const file = path.join(work, `${name}.mjs`);
  await writeFile(file, `${withModule ? `import ${JSON.stringify(V8_FLAGS_MODULE)};\n` : ''}${body}`);
  const { stdout } = await promisify(execFile)(process.execPath, [...flags, '--import', 'tsx', file], {
    cwd: REPO, env: { ...process.env, CACHE_FILE: path.join(work, 'add.v8cache') }, // cwd: where tsx resolves
  });
  return JSON.parse(stdout) as Record<string, unknown>;
}

const loadWithCache = `
import { readFileSync } from 'node:fs';
import vm from 'node:vm';
const script = new vm.Script(${JSON.stringify(SOURCE)}, { filename: 'add.js', cachedData: readFileSync(process.env.CACHE_FILE) });
console.log(JSON.stringify({ rejected: script.cachedDataRejected }));
`;

test('a node started with the CLI\'s flags accepts a code cache made without flags, as node\'s own built-in one is', async () => {
  const flags = launcherNodeFlags();
  assert.ok(flags.length > 0, 'the launcher passes node flags');
  await runInNode('make-cache', [], `
import { writeFileSync } from 'node:fs';
import vm from 'node:vm';
writeFileSync(process.env.CACHE_FILE, new vm.Script(${JSON.stringify(SOURCE)}, { filename: 'add.js' }).createCachedData());
console.log('{}');
`, false);
  assert.deepEqual(await runInNode('load-cache', flags, loadWithCache), { rejected: false });
  // Without src/v8-flags.ts, V8 refuses it: the flags are in the hash it checks.
  assert.deepEqual(await runInNode('load-cache-plain', flags, loadWithCache, false), { rejected: true });
  // The command line of an earlier version (systemd units, ENTRYPOINTs copied from it) passed --liftoff-only too.
  assert.deepEqual(await runInNode('load-cache-earlier-flags', [...flags, '--liftoff-only'], loadWithCache), { rejected: false });
});

test('the young generation stays as small as --max-semi-space-size=1 made it', async () => {
  const { newSpaceBytes } = await runInNode('young-generation', launcherNodeFlags(), `
import v8 from 'node:v8';
const kept = [];
for (let i = 0; i < 300000; i++) kept.push({ i, s: 'x' + i });
const newSpace = v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space');
console.log(JSON.stringify({ newSpaceBytes: newSpace.space_size, kept: kept.length }));
`);
  assert.ok(typeof newSpaceBytes === 'number' && newSpaceBytes <= 2 * 1024 * 1024, `new space ${String(newSpaceBytes)} bytes (two 1 MiB semi-spaces at most)`);
});

test('WebAssembly is compiled by Liftoff only, even when hot; WebAssembly.Module is node\'s own again after the first compile', async () => {
  // (func (export "f") (param i32) (result i32) (local i32): loop { $1 += 1; $0 -= 1; br_if $0 }; $1)
  const wasm = [0, 97, 115, 109, 1, 0, 0, 0, 1, 6, 1, 96, 1, 127, 1, 127, 3, 2, 1, 0, 7, 5, 1, 1, 102, 0, 0, 10, 27, 1, 25, 1, 1, 127, 3, 64, 32, 1,
    65, 1, 106, 33, 1, 32, 0, 65, 1, 107, 34, 0, 13, 0, 11, 32, 1, 11];
  const probe = (name: string, flags: string[]) => runInNode(name, [...flags, '--allow-natives-syntax'], `
const isLiftoff = new Function('f', 'return %IsLiftoffFunction(f)');
const isTurboFan = new Function('f', 'return %IsTurboFanFunction(f)');
const patched = WebAssembly.Module;
const module = new WebAssembly.Module(new Uint8Array(${JSON.stringify(wasm)}));
const { f } = new WebAssembly.Instance(module).exports;
let sum = 0;
for (let round = 0; round < 2; round++) {
  for (let i = 0; i < 200; i++) sum += f(100000);
  await new Promise((resolve) => setTimeout(resolve, 200)); // time for a background tier-up, if any
}
console.log(JSON.stringify({ sum, liftoff: isLiftoff(f), turbofan: isTurboFan(f), restored: WebAssembly.Module !== patched && module instanceof WebAssembly.Module }));
`);
  const expected = { sum: 40_000_000, liftoff: true, turbofan: false, restored: true };
  assert.deepEqual(await probe('wasm', launcherNodeFlags()), expected);
  // An earlier version's command line, whose --liftoff-only src/v8-flags.ts undoes at start and sets again here.
  assert.deepEqual(await probe('wasm-earlier-flags', [...launcherNodeFlags(), '--liftoff-only']), expected);
});
