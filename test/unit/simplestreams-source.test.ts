import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateConfig } from '../../src/config/load.js';
import { createHttpClient } from '../../src/fetch/http-client.js';
import { createLogger } from '../../src/log.js';
import { createSource } from '../../src/source/registry.js';
import { startMirror } from '../fixtures/mirror/index.js';

const log = createLogger({ level: 'silent' });

describe('source: { type: simplestreams } in config', () => {
  test('defaults url to Canonical tree of the channel and variant, with the listing source selection keys', () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{}, 'https://cloud-images.ubuntu.com/releases/'],
      [{ channel: 'daily' }, 'https://cloud-images.ubuntu.com/daily/'],
      [{ variant: 'minimal' }, 'https://cloud-images.ubuntu.com/minimal/releases/'],
      [{ channel: 'daily', variant: 'minimal' }, 'https://cloud-images.ubuntu.com/minimal/daily/'],
      [{ url: 'http://mirror.internal/ubuntu/releases' }, 'http://mirror.internal/ubuntu/releases/'],
    ];
    for (const [more, url] of cases) {
      const config = validateConfig({ source: { type: 'simplestreams', releases: ['24.04'], arches: ['arm64'], ...more } }, 'c.yaml');
      const source = createSource(config);
      assert.equal(source.type, 'simplestreams');
      assert.equal(source.url, url);
      assert.deepEqual(config.streams.map((s) => s.releases.map((r) => r.codename)), [['noble']]);
    }
  });

  test('a bad key names itself, and an unknown type lists simplestreams among the allowed ones', () => {
    assert.throws(() => validateConfig({ source: { type: 'simplestreams', ftype: 'disk 1' } }, 'c.yaml'), /source\.ftype: "disk 1"/);
    assert.throws(() => validateConfig({ source: { type: 'simplestreams', bogus: 1 } }, 'c.yaml'), /unknown key\(s\) bogus/);
    assert.throws(() => validateConfig({ source: { type: 'sstreams' } }, 'c.yaml'), /allowed: listing, simplestreams/);
  });
});

describe('SimplestreamsSource.check', () => {
  test('reads and verifies the index and names the products file; a tampered index fails the check', async () => {
    const mirror = await startMirror();
    const client = createHttpClient({});
    try {
      const config = validateConfig({ source: { type: 'simplestreams', url: mirror.streamsUrl(), keyring: mirror.keyringPath } }, 'c.yaml');
      const ok = await createSource(config).check({ client, log, signal: AbortSignal.timeout(10_000) });
      assert.match(ok, /index\.sjson signed and verified; products in streams\/v1\/com\.ubuntu\.cloud:released:download\.sjson/);
      mirror.inject({ path: /index\.sjson$/, fault: 'bad-signature', how: 'tampered-sums' });
      await assert.rejects(createSource(config).check({ client, log, signal: AbortSignal.timeout(10_000) }), { code: 'SIGNATURE_INVALID' });
    } finally {
      await client.close();
      await mirror.close();
    }
  });
});
