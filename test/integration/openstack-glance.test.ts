import assert from 'node:assert/strict';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { resolveAuthSettings } from '../../src/openstack/auth-config.js';
import { OpenStackError } from '../../src/openstack/errors.js';
import { GlanceClient } from '../../src/openstack/glance.js';
import { KeystoneSession } from '../../src/openstack/keystone.js';
import { describeWithOpenStack, loadOpenStackEnv, startExtraOpenStack, type ExtraOpenStack } from './openstack-env.js';
import { isOpenStackError } from '../support/openstack-errors.js';

const openstack = await loadOpenStackEnv();

function sessionFor(env: Readonly<Record<string, string>>): KeystoneSession {
  return new KeystoneSession(resolveAuthSettings({ env, files: new Map(), cwd: '/', homeDir: '/nonexistent' }));
}


/** Bytes whose digests we know, served as a stream in 64 KiB pieces. */
function payload(sizeBytes: number) {
  const data = randomBytes(sizeBytes);
  return {
    data,
    md5: createHash('md5').update(data).digest('hex'),
    sha512: createHash('sha512').update(data).digest('hex'),
    stream: () => Readable.from((function* () {
      for (let i = 0; i < data.length; i += 65536) yield data.subarray(i, i + 65536);
    })()),
  };
}

/** Revoke a token the way an operator (or expiry) would: Glance then answers 401 to it. */
async function revoke(authUrl: string, token: string): Promise<void> {
  const res = await request(`${authUrl}/auth/tokens`, { method: 'DELETE', headers: { 'x-auth-token': token, 'x-subject-token': token } });
  await res.body.dump();
  assert.equal(res.statusCode, 204);
}

describeWithOpenStack('GlanceClient against the real Keystone+Glance', openstack, (os) => {
  const run = randomUUID();
  let session: KeystoneSession;
  let glance: GlanceClient;
  const created: string[] = [];

  before(() => {
    session = sessionFor(os.env);
    glance = new GlanceClient(session);
  });
  after(async () => {
    for (const id of created) await glance.deleteImage(id).catch(() => undefined);
    await session.close();
  });

  async function newImage(name: string, extra: Record<string, string> = {}) {
    const image = await glance.createImage({ name, disk_format: 'raw', container_format: 'bare', cis_test_run: run, ...extra });
    created.push(image.id);
    return image;
  }

  test('create, upload, verify checksum and os_hash_value, tag, patch, find, delete', async () => {
    const p = payload(3 * 1024 * 1024 + 17);
    const image = await newImage('upload-test', { cis_case: 'upload' });
    assert.equal(image.status, 'queued');
    assert.equal(image.cis_case, 'upload');

    await glance.uploadImageData(image.id, p.stream(), p.data.length);
    const active = await glance.getImage(image.id);
    assert.equal(active.status, 'active');
    assert.equal(active.size, p.data.length);
    assert.equal(active.checksum, p.md5);
    assert.equal(active.os_hash_algo, 'sha512');
    assert.equal(active.os_hash_value, p.sha512);

    await glance.addTag(image.id, 'cloudimg-sync');
    const patched = await glance.patchImage(image.id, [
      { op: 'add', path: '/cis_sha256', value: 'abc' },
      { op: 'replace', path: '/name', value: 'renamed' },
    ]);
    assert.equal(patched.name, 'renamed');
    assert.equal(patched.cis_sha256, 'abc');
    assert.deepEqual(patched.tags, ['cloudimg-sync']);

    const found = await glance.findImages({ cis_test_run: run, cis_case: 'upload' });
    assert.deepEqual(found.map((i) => i.id), [image.id]);

    await glance.deleteImage(image.id);
    await assert.rejects(glance.getImage(image.id), isOpenStackError('GLANCE_NOT_FOUND'));
  });

  test('a second upload to an active image is GLANCE_CONFLICT', async () => {
    const p = payload(1024);
    const image = await newImage('conflict-test');
    await glance.uploadImageData(image.id, p.stream(), p.data.length);
    await assert.rejects(glance.uploadImageData(image.id, p.stream(), p.data.length), isOpenStackError('GLANCE_CONFLICT'));
  });

  test('findImages pages through `next` links and finds hidden images when asked', async () => {
    const small = new GlanceClient(session, { pageSize: 2 });
    const ids = [];
    for (let i = 0; i < 5; i++) ids.push((await newImage(`page-${i}`, { cis_case: 'paging' })).id);
    await small.patchImage(ids[0] ?? '', [{ op: 'replace', path: '/os_hidden', value: true }]);
    const visible = await small.findImages({ cis_test_run: run, cis_case: 'paging' });
    assert.deepEqual(visible.map((i) => i.id).sort(), ids.slice(1).sort());
    const all = await small.findImages({ cis_test_run: run, cis_case: 'paging' }, { includeHidden: true });
    assert.deepEqual(all.map((i) => i.id).sort(), [...ids].sort());
  });

  test('a token revoked mid-run: the next call gets 401, re-authenticates and succeeds', async () => {
    const image = await newImage('revoke-test');
    const before = await session.getToken();
    await revoke(session.settings.authUrl, before);
    assert.equal((await glance.getImage(image.id)).id, image.id);
    assert.notEqual(await session.getToken(), before);

    // An upload whose data can be reopened is retried too.
    await revoke(session.settings.authUrl, await session.getToken());
    const p = payload(256 * 1024);
    await glance.uploadImageData(image.id, p.stream, p.data.length);
    assert.equal((await glance.getImage(image.id)).os_hash_value, p.sha512);
  });

  test('a token revoked before a one-shot upload is a retryable error and the image stays queued', async () => {
    const image = await newImage('revoke-stream-test');
    await revoke(session.settings.authUrl, await session.getToken());
    const p = payload(512 * 1024);
    await assert.rejects(glance.uploadImageData(image.id, p.stream(), p.data.length), (err: unknown) => {
      assert.ok(err instanceof OpenStackError && err.retryable, String(err));
      return true;
    });
    assert.equal((await glance.getImage(image.id)).status, 'queued');
  });

  test('import methods, and glance-direct: stage then import', async () => {
    const { methods } = await glance.getImportInfo();
    assert.ok(methods.includes('glance-direct') && methods.includes('web-download'), methods.join(','));
    const p = payload(200_000);
    const image = await newImage('glance-direct-test');
    await glance.stageImageData(image.id, p.stream, p.data.length);
    await glance.importImage(image.id, { name: 'glance-direct' });
    const active = await glance.waitForImport(image.id, { intervalMs: 200, timeoutMs: 60_000 });
    assert.equal(active.os_hash_value, p.sha512);
  });

  describe('web-download from a local HTTP server on 127.0.0.1', () => {
    let server: Server;
    let base = '';
    const p = payload(1_500_000);
    before(async () => {
      server = createServer((req, res) => {
        if (req.url !== '/noble.img') {
          res.writeHead(404).end('not found');
          return;
        }
        res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': p.data.length });
        res.end(p.data);
      });
      await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
      base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    });
    after(async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    });

    test('an import becomes active with the right hash', async () => {
      const image = await newImage('web-download-test');
      await glance.importImage(image.id, { name: 'web-download', uri: `${base}/noble.img` });
      const active = await glance.waitForImport(image.id, { intervalMs: 200, timeoutMs: 60_000 });
      assert.equal(active.size, p.data.length);
      assert.equal(active.os_hash_value, p.sha512);
    });

    test('a missing URL is GLANCE_IMPORT_FAILED with the task message', async () => {
      const image = await newImage('web-download-404-test');
      await glance.importImage(image.id, { name: 'web-download', uri: `${base}/missing.img` });
      await assert.rejects(glance.waitForImport(image.id, { intervalMs: 200, timeoutMs: 60_000 }), isOpenStackError('GLANCE_IMPORT_FAILED'));
    });
  });
});

describeWithOpenStack('image_size_cap on a second real Keystone+Glance', openstack, () => {
  const CAP = 1024 * 1024;
  let extra: ExtraOpenStack;
  let session: KeystoneSession;

  before(async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'cloudimg-sync-openstack-cap-'));
    extra = await startExtraOpenStack(dir, { OPENSTACK_GLANCE_IMAGE_SIZE_CAP: String(CAP) });
    session = sessionFor(extra.env);
  });
  after(async () => {
    await session?.close();
    await extra?.stop();
  });

  test('an upload over image_size_cap is IMAGE_TOO_LARGE and leaves the image queued', async () => {
    const glance = new GlanceClient(session);
    const image = await glance.createImage({ name: 'too-big', disk_format: 'raw', container_format: 'bare' });
    const p = payload(CAP + 4096);
    await assert.rejects(glance.uploadImageData(image.id, p.stream(), p.data.length), (err: unknown) => {
      isOpenStackError('IMAGE_TOO_LARGE', /image_size_cap/)(err);
      assert.doesNotMatch((err as Error).message, /<br|<\/?h1>/);
      return true;
    });
    assert.equal((await glance.getImage(image.id)).status, 'queued');
    const fits = payload(CAP - 1);
    await glance.uploadImageData(image.id, fits.stream(), fits.data.length);
    assert.equal((await glance.getImage(image.id)).status, 'active');
    await glance.deleteImage(image.id);
  });
});
