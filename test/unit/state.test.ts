import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, test } from 'node:test';
import Database from 'better-sqlite3';
import type { UpstreamImage } from '../../src/image.js';
import { acquireStateLock, probeStateLock } from '../../src/state/lock.js';
import { MIGRATIONS } from '../../src/state/migrations.js';
import { STATE_FILE_NAME, StateStore } from '../../src/state/store.js';

const image: UpstreamImage = {
  channel: 'release', variant: 'server', release: 'noble', version: '24.04', arch: 'amd64', serial: '20260926',
  fileName: 'ubuntu-24.04-server-cloudimg-amd64.img', url: 'https://x/a.img', sha256: 'a'.repeat(64), signed: true,
};
const key = 'release/server/noble/amd64/20260926';

let dir: string;
beforeEach(() => { dir = mkdtempSync(path.join(tmpdir(), 'state-')); });
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('StateStore', () => {
  test('records a discovered image once and walks it through download and verify', () => {
    const store = StateStore.open(dir);
    assert.equal(store.recordDiscovered(image), true);
    assert.equal(store.recordDiscovered(image), false);
    store.setImageState(key, 'downloading');
    store.setImageState(key, 'verified', { localPath: '/c/a.img', sizeBytes: 42 });
    const rec = store.getImage(key)!;
    assert.equal(rec.state, 'verified');
    assert.equal(rec.sizeBytes, 42);
    assert.equal(rec.attempts, 0);
    store.close();
  });

  test('refuses a transition the life cycle does not allow, leaving state unchanged', () => {
    const store = StateStore.open(dir);
    store.recordDiscovered(image);
    assert.throws(() => store.setImageState(key, 'verified'), (e: Error & { code?: string }) => e.code === 'STATE_TRANSITION');
    assert.equal(store.getImage(key)!.state, 'discovered');
    assert.throws(() => store.setPublication(key, 'local', 'published'), /cannot go from nothing to published/);
    store.close();
  });

  test('every state a crash can leave behind may resume downloading (none blocks later runs)', () => {
    const store = StateStore.open(dir);
    store.recordDiscovered(image);
    const db = new Database(path.join(dir, STATE_FILE_NAME));
    for (const left of ['discovered', 'downloading', 'downloaded', 'verified', 'failed']) {
      db.prepare(`UPDATE images SET state = ? WHERE key = ?`).run(left, key);
      store.setImageState(key, 'downloading');
      assert.equal(store.getImage(key)!.state, 'downloading', `from ${left}`);
    }
    db.close();
    store.close();
  });

  test('survives a reopen: WAL mode, schema version kept, data intact', () => {
    let store = StateStore.open(dir);
    store.recordDiscovered(image);
    store.setImageState(key, 'downloading');
    store.close();
    store = StateStore.open(dir);
    assert.equal(store.getImage(key)!.state, 'downloading');
    store.setImageState(key, 'downloading');
    assert.equal(store.getImage(key)!.attempts, 2);
    store.close();
  });

  test('records publications per target with refs and errors', () => {
    const store = StateStore.open(dir);
    store.recordDiscovered(image);
    store.setPublication(key, 'glance', 'publishing', { ref: 'id-1' });
    store.setPublication(key, 'glance', 'failed', { error: { code: 'IMAGE_TOO_LARGE', message: 'too big' } });
    store.setPublication(key, 'glance', 'publishing');
    store.setPublication(key, 'glance', 'published', { ref: 'id-2' });
    const pub = store.getImage(key)!.publications.glance!;
    assert.deepEqual([pub.state, pub.ref, pub.attempts, pub.errorCode], ['published', 'id-2', 2, null]);
    store.close();
  });

  test('a run left running by a crash is marked interrupted when the next starts', () => {
    const store = StateStore.open(dir);
    const first = store.startRun();
    store.startRun();
    assert.equal(store.listRuns().find((r) => r.id === first)!.result, 'interrupted');
    store.close();
  });

  test('a changed upstream checksum for the same serial resets the image to discovered', () => {
    const store = StateStore.open(dir);
    store.recordDiscovered(image);
    store.setImageState(key, 'downloading');
    store.setImageState(key, 'verified', { localPath: '/x' });
    store.recordDiscovered({ ...image, sha256: 'b'.repeat(64) });
    const rec = store.getImage(key)!;
    assert.deepEqual([rec.state, rec.sha256, rec.localPath], ['discovered', 'b'.repeat(64), null]);
    store.close();
  });

  test('keeps the md5 and sha512 the download computed with the verified image, and forgets them with it', () => {
    const store = StateStore.open(dir);
    store.recordDiscovered(image);
    store.setImageState(key, 'downloading');
    const digests = { md5: 'c'.repeat(32), sha512: 'd'.repeat(128) };
    store.setImageState(key, 'verified', { localPath: '/c/a.img', digests });
    store.close();
    const reopened = StateStore.open(dir);
    assert.deepEqual(reopened.getImage(key)!.digests, digests);
    reopened.recordDiscovered({ ...image, sha256: 'b'.repeat(64) });
    assert.equal(reopened.getImage(key)!.digests, null, 'other upstream bytes: the digests no longer hold');
    reopened.close();
  });

  test('what a cached page was parsed into is kept with it and forgotten when the page is replaced', () => {
    const store = StateStore.open(dir);
    const url = 'https://x/releases/noble/';
    store.putCachedResponse(url, { etag: '"1"', lastModified: null, body: Buffer.from('<html>1</html>') });
    assert.equal(store.getCachedParse(url), undefined);
    store.setCachedParse(url, '{"format":1,"folders":[]}');
    assert.equal(store.getCachedParse(url), '{"format":1,"folders":[]}');
    store.putCachedResponse(url, { etag: '"2"', lastModified: null, body: Buffer.from('<html>2</html>') });
    assert.equal(store.getCachedParse(url), undefined, 'another body: what the old one was read as no longer holds');
    store.close();
  });

  /** A state file as an earlier release left it: the first `version` migrations, one image row. */
  function stateFileAt(version: number, extraColumns: Record<string, string> = {}): void {
    const db = new Database(path.join(dir, STATE_FILE_NAME));
    for (const step of MIGRATIONS.slice(0, version)) db.exec(step);
    db.pragma(`user_version = ${version}`);
    const cols = ['key', 'channel', 'variant', 'release', 'version', 'arch', 'serial', 'file_name', 'url', 'sha256', 'state', 'discovered_at', 'updated_at', ...Object.keys(extraColumns)];
    const values = [key, 'release', 'server', 'noble', '24.04', 'amd64', '20260926', image.fileName, image.url, image.sha256, 'verified', 'x', 'x', ...Object.values(extraColumns)];
    db.prepare(`INSERT INTO images (${cols.join(', ')}) VALUES (${cols.map(() => '?').join(', ')})`).run(...values);
    db.close();
  }

  test('a state database from before the digests columns is migrated in place, its images without digests', () => {
    stateFileAt(2);
    const migrated = StateStore.open(dir);
    assert.equal(migrated.getImage(key)!.digests, null);
    migrated.close();
    const check = new Database(path.join(dir, STATE_FILE_NAME), { readonly: true });
    assert.equal(check.pragma('user_version', { simple: true }), MIGRATIONS.length);
    check.close();
  });

  test('md5 and sha512 columns of schema 3 become entries of the digests map', () => {
    stateFileAt(3, { md5: 'c'.repeat(32), sha512: 'd'.repeat(128) });
    const migrated = StateStore.open(dir);
    assert.deepEqual(migrated.getImage(key)!.digests, { md5: 'c'.repeat(32), sha512: 'd'.repeat(128) });
    migrated.setImageState(key, 'downloading');
    migrated.setImageState(key, 'verified', { digests: { sha1: 'e'.repeat(40) } });
    assert.deepEqual(migrated.getImage(key)!.digests, { sha1: 'e'.repeat(40) }, 'a new verification replaces the whole map');
    migrated.close();
  });
});

describe('state lock', () => {
  test('a second holder is refused with ALREADY_RUNNING naming pid, host and since while the first lives', () => {
    const lock = acquireStateLock(dir);
    assert.throws(() => acquireStateLock(dir), (e: Error & { code?: string }) => e.code === 'ALREADY_RUNNING'
      && new RegExp(`\\(${process.pid}@${hostname()}, since \\d{4}-\\d\\d-\\d\\dT[^)]+\\) holds `).test(e.message));
    const holder = probeStateLock(dir);
    assert.ok(holder && holder !== 'unknown', 'check sees the lock held');
    assert.deepEqual([holder.pid, holder.host], [process.pid, hostname()]);
    lock.release();
    assert.equal(probeStateLock(dir), undefined);
    acquireStateLock(dir).release();
  });

  test('the kernel releases the lock of a process killed with SIGKILL: no pid is compared, nothing is stale', async () => {
    const child = fork('-e', [`
      const { acquireStateLock } = await import(${JSON.stringify(new URL('../../src/state/lock.ts', import.meta.url).href)});
      acquireStateLock(process.argv.at(-1));
      process.send('locked');
      setInterval(() => {}, 1000);
    `, dir], { execArgv: ['--import', 'tsx', '--input-type=module'] });
    await new Promise((resolve) => child.once('message', resolve));
    assert.throws(() => acquireStateLock(dir), (e: Error & { code?: string }) => e.code === 'ALREADY_RUNNING' && e.message.includes(`${child.pid}@`));
    child.kill('SIGKILL');
    await new Promise((resolve) => child.once('exit', resolve));
    acquireStateLock(dir).release();
  });

  test('a pid@host lock file left by an earlier version decides nothing: it is replaced', () => {
    writeFileSync(path.join(dir, 'cloudimg-sync.lock'), '1@oldhost\n');
    const lock = acquireStateLock(dir);
    assert.throws(() => acquireStateLock(dir), (e: Error & { code?: string }) => e.code === 'ALREADY_RUNNING');
    lock.release();
  });
});
