import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterEach, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { acquireStateLock } from '../../src/state/lock.js';
import { createSyncWorld, type SyncWorld } from '../support/sync-world.js';

const CLI = fileURLToPath(new URL('../../src/cli.ts', import.meta.url));

interface CliResult { code: number | null; stdout: string; stderr: string }

function runCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CLI, ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => { stdout += d.toString(); });
    child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

let world: SyncWorld;
afterEach(async () => { await world?.close(); });

function writeConfig(w: SyncWorld, extra = ''): string {
  const file = path.join(w.dir, 'config.yaml');
  writeFileSync(file, [
    `source: { url: "${w.mirror.url}", keyring: "${w.mirror.keyringPath}", releases: [noble], arches: [amd64] }`,
    `stateDir: "${path.join(w.dir, 'state')}"`,
    `cacheDir: "${path.join(w.dir, 'cache')}"`,
    `targets: [{ name: local, type: directory, path: "${path.join(w.dir, 'images')}" }]`,
    extra,
  ].join('\n'));
  return file;
}

describe('cloudimg-sync CLI', () => {
  test('sync --once exits 0 and status --json reports the published image in the documented shape', async () => {
    world = await createSyncWorld();
    const config = writeConfig(world);
    const sync = await runCli(['--config', config, 'sync', '--once']);
    assert.equal(sync.code, 0, sync.stderr);
    const events = sync.stdout.trim().split('\n').map((l) => JSON.parse(l) as { event?: string });
    assert.equal(events.at(-1)!.event, 'sync.run.finished');
    const status = await runCli(['status', '--json'], { CLOUDIMG_SYNC_CONFIG: config });
    assert.equal(status.code, 0, status.stderr);
    const parsed = JSON.parse(status.stdout) as { images: Array<Record<string, unknown>> };
    const image = world.mirror.published()[0]!;
    assert.equal(parsed.images.length, 1);
    const first = parsed.images[0]!;
    assert.deepEqual(
      { release: first.release, version: first.version, arch: first.arch, serial: first.serial, state: first.state, sha256: first.sha256 },
      { release: 'noble', version: '24.04', arch: 'amd64', serial: image.serial, state: 'verified', sha256: image.sha256 },
    );
    const local = (first.targets as Record<string, { state: string; imageId: string }>).local!;
    assert.equal(local.state, 'published');
    assert.ok(local.imageId.endsWith(image.fileName));
  });

  test('plan lists the download and publish without doing them', async () => {
    world = await createSyncWorld();
    const plan = await runCli(['--config', writeConfig(world), 'plan']);
    assert.equal(plan.code, 0, plan.stderr);
    assert.match(plan.stdout, /^download {2}release\/server\/noble\/amd64\/\d+ {2}http:/m);
    assert.match(plan.stdout, /^publish {3}release\/server\/noble\/amd64\/\d+ {2}-> local$/m);
    assert.equal(world.mirror.requests.filter((r) => r.path.endsWith('.img')).length, 0);
  });

  test('a failing cycle exits 1 with a one-line cause and its fix on stderr', async () => {
    world = await createSyncWorld();
    world.mirror.inject({ path: /SHA256SUMS\.gpg$/, fault: 'bad-signature' });
    const res = await runCli(['--config', writeConfig(world), 'sync', '--once']);
    assert.equal(res.code, 1);
    const lines = res.stderr.trim().split('\n');
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /^cloudimg-sync: sync failed: noble \(release\/server\): SIGNATURE_INVALID: .*\(fix: /);
  });

  test('a configured arch missing upstream exits 4 (incomplete) naming it, and status shows it', async () => {
    world = await createSyncWorld();
    const config = writeConfig(world);
    writeFileSync(config, readFileSync(config, 'utf8').replace('arches: [amd64]', 'arches: [amd64, riscv64]'));
    const res = await runCli(['--config', config, 'sync', '--once']);
    assert.equal(res.code, 4, res.stderr);
    assert.equal(res.stderr, 'cloudimg-sync: sync incomplete: no image upstream for noble/riscv64 (release/server)\n');
    const status = await runCli(['--config', config, 'status']);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /^incomplete {2}release\/server noble riscv64: no riscv64 image in serials \d+ \(run 1, incomplete\)$/m);
  });

  test('bad configuration exits 2 naming the key and the allowed values', async () => {
    world = await createSyncWorld();
    const res = await runCli(['--config', writeConfig(world, 'keep: many')]);
    const res2 = await runCli(['--config', writeConfig(world, 'keep: many'), 'sync', '--once']);
    assert.notEqual(res.code, 0);
    assert.equal(res2.code, 2);
    assert.match(res2.stderr, /^cloudimg-sync: CONFIG_INVALID: .*config\.yaml: keep: "many": /);
  });

  test('a second instance on the same state directory is refused with exit code 3', async () => {
    world = await createSyncWorld();
    const config = writeConfig(world);
    const lock = acquireStateLock(path.join(world.dir, 'state'));
    try {
      const res = await runCli(['--config', config, 'sync', '--once']);
      assert.equal(res.code, 3);
      assert.match(res.stderr, /ALREADY_RUNNING: another cloudimg-sync \(\d+@.*\) holds .*cloudimg-sync\.lock \(fix: /);
      assert.equal(world.mirror.requests.length, 0);
    } finally {
      lock.release();
    }
  });
});
