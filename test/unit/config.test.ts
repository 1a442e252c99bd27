import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { chooseConfigPath, loadConfig, SHIPPED_KEYRING_PATH, validateConfig } from '../../src/config/load.js';
import { configError } from '../support/config-error.js';


describe('configuration', () => {
  test('built-in defaults: the real site, noble amd64, signature on with the shipped keyring, a local directory target', () => {
    const c = validateConfig({}, 'defaults');
    assert.equal(c.source.url, 'https://cloud-images.ubuntu.com');
    assert.deepEqual(c.streams, [{ id: 'release/server', channel: 'release', variant: 'server', releases: [{ codename: 'noble', version: '24.04' }], arches: ['amd64'] }]);
    assert.equal(c.source.verifySignature, true);
    assert.equal(c.keyringPath, SHIPPED_KEYRING_PATH);
    assert.deepEqual(c.targets, [{ name: 'local', type: 'directory', path: './var/images', mode: '0644' }]);
    assert.equal(c.keep, 2);
  });

  test('a source without `type` is the listing source: configs written before source types keep working', () => {
    assert.equal(validateConfig({}, 'x').source.type, 'listing');
    const c = validateConfig({ source: { channel: 'daily', arches: ['arm64'] } }, 'x');
    assert.deepEqual([c.source.type, c.source.channel, c.source.arches], ['listing', 'daily', ['arm64']]);
    assert.equal(validateConfig({ source: { type: 'listing', variant: 'minimal' } }, 'x').source.variant, 'minimal');
  });

  test('releases may be codenames or versions, YAML numbers included; duplicates collapse', () => {
    const c = validateConfig({ source: { releases: ['jammy', 24.04, '26.04', 'noble', 20.10] } }, 'x');
    assert.deepEqual(c.streams[0]!.releases.map((r) => r.codename), ['jammy', 'noble', 'resolute', 'groovy']);
    assert.match(configError({ source: { releases: [20.10, 99.1] } }), /source\.releases\[1\]: "99\.10" is neither/);
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['an unknown arch names the key, the value and the allowed ones', { source: { arches: ['x86'] } }, /source\.arches\[0\]: "x86" is not allowed; allowed: amd64, arm64/],
    ['an unknown channel', { source: { channel: 'weekly' } }, /source\.channel: "weekly" is not allowed; allowed: release, daily/],
    ['keep below 1', { keep: 0 }, /keep: 0:/],
    ['an unknown top-level key', { kep: 2 }, /unknown key\(s\) kep/],
    ['an unknown source type, naming the registered ones', { source: { type: 'ftp' } }, /source\.type: "ftp" is not allowed; allowed: listing/],
    ['a key of another source type', { source: { type: 'listing', index: 'x' } }, /source: unknown key\(s\) index/],
    ['an unknown target type', { targets: [{ name: 'a', type: 's3' }] }, /targets\[0\]\.type: target type "s3" is not allowed; allowed: directory, glance, mirror/],
    ['a directory target without a path', { targets: [{ name: 'a', type: 'directory' }] }, /targets\[0\]\.path: missing/],
    ['duplicate target names', { targets: [{ name: 'a', type: 'directory', path: 'x' }, { name: 'a', type: 'directory', path: 'y' }] }, /target names must be unique/],
    ['a source URL that is not a URL', { source: { url: 'cloud-images' } }, /source\.url: "cloud-images"/],
    ['a keyring file that does not exist', { source: { keyring: '/nonexistent/key.asc' } }, /source\.keyring: \/nonexistent\/key\.asc does not exist/],
  ];
  for (const [name, raw, re] of bad) {
    test(`rejects ${name}`, () => assert.match(configError(raw), re));
  }

  test('reads --config first, then CLOUDIMG_SYNC_CONFIG', () => {
    assert.equal(chooseConfigPath('/a.yaml', { CLOUDIMG_SYNC_CONFIG: '/b.yaml' }), '/a.yaml');
    assert.equal(chooseConfigPath(undefined, { CLOUDIMG_SYNC_CONFIG: '/b.yaml' }), '/b.yaml');
  });

  test('a YAML syntax error names the file and the fix', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cfg-'));
    const file = path.join(dir, 'c.yaml');
    writeFileSync(file, 'source:\n  arches: [amd64\n');
    assert.throws(() => loadConfig(file, {}), (err: Error & { code?: string }) => err.code === 'CONFIG_INVALID' && err.message.includes(file));
  });

  test('a missing config file is a clear error', () => {
    assert.throws(() => loadConfig('/nonexistent/c.yaml', {}), /cannot read config file \/nonexistent\/c\.yaml/);
  });
});

describe('the shipped config examples', () => {
  for (const name of ['config.example.yaml', 'glance.example.yaml', 'fleet.example.yaml']) {
    test(`config/${name} is valid as shipped`, () => {
      const file = new URL(`../../config/${name}`, import.meta.url).pathname;
      const config = loadConfig(file, {});
      assert.ok(config.targets.length >= 1);
    });
  }
});
