/**
 * What a start loads is what a no-op `sync --once` costs (bench D): the commands' module graph must not pull
 * in what no command runs. undici's index loads fetch, WebSocket, mocks and caches, and its cookies module
 * makes node load its own bundled undici as well (`globalThis.Headers`); src/fetch/undici.ts takes only the
 * client's parts.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

test("the commands load undici's client parts only: neither its index nor node's own undici", async () => {
  const script = `
    for (const command of ['sync', 'daemon', 'plan', 'check', 'status', 'history']) await import(${JSON.stringify(SRC)} + 'commands/' + command + '.ts');
    const { createRequire } = await import('node:module');
    const cache = Object.keys(createRequire(import.meta.url).cache);
    console.log(JSON.stringify({
      nodeUndici: process.moduleLoadList.includes('NativeModule internal/deps/undici/undici'),
      undiciIndex: cache.filter((f) => /[\\\\/]undici[\\\\/]index\\.js$/.test(f)),
      undiciAgent: cache.some((f) => /[\\\\/]undici[\\\\/]lib[\\\\/]dispatcher[\\\\/]agent\\.js$/.test(f)),
    }));`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]);
  const loaded = JSON.parse(stdout.trim().split('\n').at(-1)!) as { nodeUndici: boolean; undiciIndex: string[]; undiciAgent: boolean };
  assert.equal(loaded.undiciAgent, true, 'the probe sees undici at all');
  assert.deepEqual(loaded.undiciIndex, []);
  assert.equal(loaded.nodeUndici, false);
});

test("the dispatchers taken from undici's files have the methods its index gives them, which undici's own code calls", async () => {
  const { Agent, Pool, ProxyAgent } = await import('../../src/fetch/undici.js');
  const proxy = new ProxyAgent('http://127.0.0.1:9');
  const pool = new Pool('http://127.0.0.1:9');
  const agent = new Agent();
  try {
    for (const dispatcher of [agent, pool, proxy]) {
      // ProxyAgent's CONNECT tunnel is `client.connect()`: without it every https origin through a proxy failed.
      for (const method of ['request', 'stream', 'pipeline', 'connect', 'upgrade'] as const) {
        assert.equal(typeof dispatcher[method], 'function', `${dispatcher.constructor.name}.${method}`);
      }
    }
  } finally {
    await Promise.all([agent.close(), pool.close(), proxy.close()]);
  }
});

test("the state database opens with better-sqlite3's addon named by path: its `bindings` finder (a stack trace, a dozen folders) is never loaded", async () => {
  const script = `
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const path = await import('node:path');
    const { StateStore } = await import(${JSON.stringify(SRC)} + 'state/store.ts');
    const { acquireStateLock } = await import(${JSON.stringify(SRC)} + 'state/lock.ts');
    const dir = mkdtempSync(path.join(tmpdir(), 'cloudimg-startup-'));
    try {
      const lock = acquireStateLock(dir);
      const store = StateStore.open(dir);
      const images = store.listImages().length;
      store.close();
      lock.release();
      const { createRequire } = await import('node:module');
      const cache = Object.keys(createRequire(import.meta.url).cache);
      console.log(JSON.stringify({
        images,
        addon: cache.some((f) => f.endsWith('better_sqlite3.node')),
        bindings: cache.filter((f) => /[\\\\/]bindings[\\\\/]bindings\\.js$/.test(f)),
      }));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }`;
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script]);
  assert.deepEqual(JSON.parse(stdout.trim().split('\n').at(-1)!), { images: 0, addon: true, bindings: [] });
});
