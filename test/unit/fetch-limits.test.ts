import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { downloadFile } from '../../src/fetch/download.js';
import { getText } from '../../src/fetch/get-text.js';
import { createHttpClient, OriginCredentials, type HttpClientOptions } from '../../src/fetch/http-client.js';
import { startMirror, type Mirror } from '../fixtures/mirror/index.js';

const IMAGE = '/releases/noble/release-20261120/ubuntu-24.04-server-cloudimg-amd64.img';
const SUMS = '/releases/noble/release-20261120/SHA256SUMS';
const LISTING = '/releases/noble/';
const once = { retries: 0 };

let mirror: Mirror;
let dir: string;
before(async () => {
  mirror = await startMirror({ releases: [{ codename: 'noble', serials: ['20261120'], channels: ['release'] }] });
  dir = mkdtempSync(path.join(tmpdir(), 'cloudimg-limits-'));
});
after(async () => {
  await mirror.close();
  rmSync(dir, { recursive: true, force: true });
});

async function withClient<T>(options: HttpClientOptions, fn: (client: ReturnType<typeof createHttpClient>) => Promise<T>): Promise<T> {
  const client = createHttpClient(options);
  try {
    return await fn(client);
  } finally {
    await client.destroy();
  }
}

describe('deadlines and low-speed limits', () => {
  test('a download trickling one byte every 2 s is abandoned by the low-speed limit (HTTP_TOO_SLOW), not held forever', { timeout: 20_000 }, async () => {
    const fault = mirror.inject({ path: IMAGE, fault: 'slow', bytesPerSecond: 0.5 });
    try {
      const started = Date.now();
      await withClient({ idleTimeoutMs: 10_000, lowSpeedBytesPerSec: 1000, lowSpeedTimeMs: 1_000 }, (client) =>
        assert.rejects(downloadFile(mirror.urlOf(IMAGE), path.join(dir, 'trickle.img'), { client, ...once }), { code: 'HTTP_TOO_SLOW' }));
      assert.ok(Date.now() - started < 8_000, `gave up after ${Date.now() - started} ms`);
    } finally {
      fault.remove();
    }
  });

  test('a listing that trickles hits the per-request deadline for metadata (HTTP_DEADLINE)', { timeout: 20_000 }, async () => {
    const fault = mirror.inject({ path: LISTING, fault: 'slow', bytesPerSecond: 0.5 });
    try {
      await withClient({ idleTimeoutMs: 10_000, lowSpeedBytesPerSec: 0, metadataTimeoutMs: 1_500 }, (client) =>
        assert.rejects(getText(mirror.urlOf(LISTING), { client, ...once }), { code: 'HTTP_DEADLINE' }));
    } finally {
      fault.remove();
    }
  });

  test('a body at a healthy speed is not disturbed by the low-speed limit', async () => {
    await withClient({ lowSpeedBytesPerSec: 1000, lowSpeedTimeMs: 200 }, async (client) => {
      const res = await downloadFile(mirror.urlOf(IMAGE), path.join(dir, 'fine.img'), { client, ...once });
      assert.equal(res.sha256, mirror.published()[0]!.sha256);
    });
  });
});

describe('source.maxImageBytes', () => {
  test('an endless body is abandoned once it passes the limit and its partial file deleted (IMAGE_TOO_LARGE)', { timeout: 20_000 }, async () => {
    const fault = mirror.inject({ path: IMAGE, fault: 'endless' });
    const dest = path.join(dir, 'endless.img');
    try {
      await withClient({}, (client) =>
        assert.rejects(downloadFile(mirror.urlOf(IMAGE), dest, { client, ...once, maxBytes: 4 * 1024 * 1024 }), { code: 'IMAGE_TOO_LARGE' }));
      assert.ok(!existsSync(`${dest}.part`) && !existsSync(dest), 'nothing left on disk');
    } finally {
      fault.remove();
    }
  });

  test('a Content-Length above the limit is refused before the body is read', { timeout: 20_000 }, async () => {
    const fault = mirror.inject({ path: IMAGE, fault: 'endless', contentLength: 20 * 1024 ** 3 });
    const dest = path.join(dir, 'huge.img');
    try {
      await withClient({}, (client) =>
        assert.rejects(downloadFile(mirror.urlOf(IMAGE), dest, { client, ...once, maxBytes: 16 * 1024 ** 3 }),
          (err: Error & { code?: string }) => err.code === 'IMAGE_TOO_LARGE' && err.message.includes(String(20 * 1024 ** 3))));
      assert.ok(!existsSync(`${dest}.part`));
    } finally {
      fault.remove();
    }
  });
});

describe('redirects and credentials', () => {
  let tlsDir: string;
  let cert: string;
  let httpsUrl: string;
  let closeHttps: () => Promise<void>;
  before(async () => {
    // An https front whose every answer is a redirect to the plain-http mirror: a downgrade.
    tlsDir = mkdtempSync(path.join(tmpdir(), 'cloudimg-tls-'));
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
      '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', path.join(tlsDir, 'key.pem'), '-out', path.join(tlsDir, 'cert.pem')], { stdio: 'ignore' });
    cert = readFileSync(path.join(tlsDir, 'cert.pem'), 'utf8');
    const server = createServer({ cert, key: readFileSync(path.join(tlsDir, 'key.pem')) }, (req, res) => {
      res.writeHead(301, { location: `${mirror.url}${req.url}` }).end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    httpsUrl = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
    closeHttps = () => { server.closeAllConnections(); return new Promise((resolve) => server.close(() => resolve())); };
  });
  after(async () => {
    await closeHttps();
    rmSync(tlsDir, { recursive: true, force: true });
  });

  test('an https source redirected to plain http is refused (HTTP_INSECURE_REDIRECT) and nothing is fetched over http', async () => {
    mirror.clearRequests();
    await withClient({ ca: cert }, (client) =>
      assert.rejects(getText(`${httpsUrl}${SUMS}`, { client, ...once }),
        (err: Error & { code?: string }) => err.code === 'HTTP_INSECURE_REDIRECT' && err.message.includes(`${mirror.url}${SUMS}`)));
    assert.equal(mirror.requests.length, 0);
  });

  test('http.allowInsecureRedirects: true follows the downgrade', async () => {
    await withClient({ ca: cert, allowInsecureRedirects: true }, async (client) => {
      const res = await getText(`${httpsUrl}${SUMS}`, { client, ...once });
      assert.equal(res.status, 200);
    });
  });

  test('user:pass@ in the URL is sent as Basic auth to that origin, never to a redirect to another host', async () => {
    const other = await startMirror({ releases: [{ codename: 'noble', serials: ['20261120'], channels: ['release'] }] });
    const auth = mirror.inject({ path: /.*/, fault: 'require-auth', username: 'mirror-user', password: 'p@ss:w0rd' });
    try {
      const { url, credentials } = OriginCredentials.split(mirror.url.replace('http://', 'http://mirror-user:p%40ss%3Aw0rd@'));
      assert.equal(url, `${mirror.url}/`);
      assert.equal(JSON.stringify({ credentials }), '{"credentials":"[redacted]"}');
      await withClient({ credentials }, async (client) => {
        mirror.clearRequests();
        assert.equal((await getText(`${mirror.url}${SUMS}`, { client, ...once })).status, 200);
        assert.match(String(mirror.requests[0]?.headers.authorization), /^Basic /);
        // Now the private mirror sends its files elsewhere: that host must not get the password.
        const away = mirror.inject({ path: SUMS, fault: 'redirect', to: other.url });
        try {
          assert.equal((await getText(`${mirror.url}${SUMS}`, { client, ...once })).status, 200);
        } finally {
          away.remove();
        }
        assert.equal(other.requests.length, 1);
        assert.equal(other.requests[0]!.headers.authorization, undefined);
      });
      await withClient({}, (client) => assert.rejects(getText(`${mirror.url}${SUMS}`, { client, ...once }), { code: 'HTTP_401' }));
    } finally {
      auth.remove();
      await other.close();
    }
  });
});
