import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test } from 'node:test';
import { validateConfig } from '../../src/config/load.js';

const UNIT_FILE = fileURLToPath(new URL('../../config/cloudimg-sync.service', import.meta.url));
const ENV_FILE = fileURLToPath(new URL('../../config/cloudimg-sync.env.example', import.meta.url));
const unit = readFileSync(UNIT_FILE, 'utf8');

function directives(name: string): string[] {
  return [...unit.matchAll(new RegExp(`^${name}=(.*)$`, 'gm'))].map((m) => m[1]!);
}

describe('systemd unit config/cloudimg-sync.service', () => {
  const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
  test('passes systemd-analyze verify', { skip: analyze.error ? 'systemd-analyze is not installed (apt package systemd)' : false }, () => {
    // The verified copy runs this test's node: /usr/bin/node is where distribution packages put it, not every CI's.
    const dir = mkdtempSync(path.join(tmpdir(), 'cloudimg-sync-unit-'));
    try {
      const copy = path.join(dir, 'cloudimg-sync.service');
      writeFileSync(copy, unit.replace('ExecStart=/usr/bin/node ', `ExecStart=${process.execPath} `));
      const res = spawnSync('systemd-analyze', ['verify', '--man=no', copy], { encoding: 'utf8' });
      const complaints = `${res.stdout}${res.stderr}`.split('\n').filter((l) => l.includes('cloudimg-sync'));
      assert.equal(res.status, 0, res.stderr);
      // verify exits 0 even for unknown keys and bad values; its complaints name the file.
      assert.deepEqual(complaints, []);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('runs the daemon as a dedicated user with state and cache directories, restarting on failure only', () => {
    assert.deepEqual(directives('User'), ['cloudimg-sync']);
    assert.deepEqual(directives('StateDirectory'), ['cloudimg-sync']);
    assert.deepEqual(directives('CacheDirectory'), ['cloudimg-sync']);
    assert.deepEqual(directives('Restart'), ['on-failure']);
    assert.deepEqual(directives('RestartPreventExitStatus'), ['2 3'], 'bad config and a held lock are not fixed by restarting');
    assert.match(directives('ExecStart')[0]!, /dist\/cli\.js daemon/);
    assert.match(directives('ExecReload')[0]!, /kill -HUP \$MAINPID/);
    const stopSeconds = Number(/^(\d+)s$/.exec(directives('TimeoutStopSec')[0] ?? '')?.[1]);
    assert.ok(stopSeconds * 1000 > validateConfig({}, 'defaults').shutdownGraceMs, 'systemd waits longer than the daemon\'s own grace');
  });

  test('is hardened, without what would break Node (MemoryDenyWriteExecute)', () => {
    for (const [key, value] of [
      ['ProtectSystem', 'strict'], ['ProtectHome', 'yes'], ['PrivateTmp', 'yes'], ['NoNewPrivileges', 'yes'],
      ['PrivateDevices', 'yes'], ['RestrictNamespaces', 'yes'], ['CapabilityBoundingSet', ''],
    ]) {
      assert.deepEqual(directives(key!), [value], key);
    }
    assert.deepEqual(directives('RestrictAddressFamilies'), ['AF_INET AF_INET6 AF_UNIX']);
    assert.deepEqual(directives('MemoryDenyWriteExecute'), []);
  });

  test('the environment file example only sets OS_* credentials and cloudimg-sync variables', () => {
    const keys = readFileSync(ENV_FILE, 'utf8').split('\n').map((l) => /^#?([A-Z_]+)=/.exec(l)?.[1]).filter((k): k is string => k !== undefined);
    assert.ok(keys.includes('OS_AUTH_URL') && keys.includes('OS_APPLICATION_CREDENTIAL_SECRET'));
    assert.deepEqual(keys.filter((k) => !k.startsWith('OS_') && !k.startsWith('CLOUDIMG_SYNC_')), []);
  });
});
