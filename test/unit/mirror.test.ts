import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { request as httpRequest, type IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import * as openpgp from 'openpgp';
import { startMirror, parseQcow2Header, retiredSigningKey, writeQcow2Image, type Mirror, type MirrorOptions } from '../fixtures/mirror/index.js';
import { apacheSize, renderListingPage, type ListingEntry } from '../fixtures/mirror/listing.js';

const SAMPLES = new URL('../fixtures/samples/', import.meta.url);

async function withMirror(options: MirrorOptions, body: (mirror: Mirror) => Promise<void>): Promise<void> {
  const mirror = await startMirror(options);
  try {
    await body(mirror);
  } finally {
    await mirror.close();
  }
}

const sha256 = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

async function get(url: string, headers: Record<string, string> = {}, method = 'GET'): Promise<{ status: number; headers: Headers; body: Buffer }> {
  const res = await fetch(url, { headers, method, redirect: 'manual' });
  return { status: res.status, headers: res.headers, body: Buffer.from(await res.arrayBuffer()) };
}

async function text(url: string): Promise<string> {
  const res = await get(url);
  assert.equal(res.status, 200, `GET ${url}`);
  return res.body.toString('utf8');
}

interface RawResult {
  status: number;
  headers: IncomingMessage['headers'];
  body: Buffer;
  error?: NodeJS.ErrnoException;
}

/** A plain node:http GET that reports what arrived before an error instead of throwing it away. */
function rawGet(url: string, headers: Record<string, string> = {}): Promise<RawResult> {
  return new Promise((resolve, reject) => {
    let finish: ((error?: NodeJS.ErrnoException) => void) | undefined;
    const req = httpRequest(url, { headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let done = false;
      finish = (error) => {
        if (done) return;
        done = true;
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), error });
      };
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => finish?.());
      res.on('error', (err) => finish?.(err));
      res.on('aborted', () => finish?.(Object.assign(new Error('aborted'), { code: 'ECONNRESET' })));
    });
    req.on('error', (err) => (finish ? finish(err) : reject(err)));
    req.end();
  });
}

interface Row {
  alt: string;
  href: string;
  name: string;
  date: string;
  size: string;
  description: string;
}

/** Reads the rows of an Apache FancyIndexing `<pre>` the way a scraper would. */
function parseListing(html: string): Row[] {
  const rows: Row[] = [];
  const re = /<img src="[^"]*" alt="\[([^\]]*)\]"[^>]*> <a href="([^"]*)">([^<]*)<\/a> +(\S+ \d\d:\d\d|) +(\S+) *([^\n]*)/g;
  for (const m of html.matchAll(re)) {
    const [, alt = '', href = '', name = '', date = '', size = '', description = ''] = m;
    if (alt === 'PARENTDIR') continue;
    rows.push({ alt, href, name, date, size, description: description.trim() });
  }
  return rows;
}

function parseSums(sums: string): { hash: string; name: string }[] {
  return sums.trimEnd().split('\n').map((line) => {
    const m = /^([0-9a-f]{64}) \*(\S+)$/.exec(line);
    assert.ok(m, `SHA256SUMS line ${JSON.stringify(line)}`);
    return { hash: m[1] ?? '', name: m[2] ?? '' };
  });
}

async function verifies(sums: string | Uint8Array, signatureArmored: string, publicKeyArmored: string, mode: 'text' | 'binary'): Promise<boolean> {
  const message = mode === 'text'
    ? await openpgp.createMessage({ text: typeof sums === 'string' ? sums : Buffer.from(sums).toString('utf8') })
    : await openpgp.createMessage({ binary: typeof sums === 'string' ? Buffer.from(sums) : sums });
  const result = await openpgp.verify({
    message,
    signature: await openpgp.readSignature({ armoredSignature: signatureArmored }),
    verificationKeys: await openpgp.readKey({ armoredKey: publicKeyArmored }),
  });
  try {
    await result.signatures[0]?.verified;
    return result.signatures.length === 1;
  } catch {
    return false;
  }
}

describe('qcow2 images', () => {
  test('have a valid qcow2 v3 header with 64 KiB clusters, the virtual size and the exact file size', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'qcow2-test-'));
    try {
      const path = join(dir, 'disk.img');
      const written = await writeQcow2Image(path, { fileSizeBytes: 3 * 1024 * 1024 + 12345, virtualSizeBytes: 2 * 1024 ** 3 });
      const bytes = await readFile(path);
      assert.equal(bytes.length, 3 * 1024 * 1024 + 12345);
      assert.equal(written.sha256, sha256(bytes));
      assert.equal(bytes.subarray(0, 4).toString('latin1'), 'QFI\xfb');
      const header = parseQcow2Header(bytes);
      assert.equal(header.version, 3);
      assert.equal(header.clusterBits, 16);
      assert.equal(header.virtualSizeBytes, 2n * 1024n ** 3n);
      assert.equal(header.backingFileOffset, 0n);
      assert.equal(header.cryptMethod, 0);
      assert.equal(header.nbSnapshots, 0);
      assert.equal(header.incompatibleFeatures, 0n);
      assert.equal(header.refcountOrder, 4);
      assert.equal(header.headerLength, 104);
      assert.equal(header.l1Size, 2 * 1024 ** 3 / 65536 / 8192);
      assert.equal(header.l1TableOffset % 65536n, 0n);
      assert.equal(header.refcountTableOffset, 65536n);
      // The first L1 entry points at an L2 table inside the file, flagged COPIED (refcount 1).
      const l1Entry = bytes.readBigUInt64BE(Number(header.l1TableOffset));
      assert.equal(l1Entry >> 63n, 1n);
      assert.ok((l1Entry & ((1n << 62n) - 1n)) < BigInt(bytes.length));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('are filled with deterministic, incompressible bytes', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'qcow2-test-'));
    try {
      const a = await writeQcow2Image(join(dir, 'a.img'), { fileSizeBytes: 1 << 20, seed: 'one' });
      const b = await writeQcow2Image(join(dir, 'b.img'), { fileSizeBytes: 1 << 20, seed: 'one' });
      const c = await writeQcow2Image(join(dir, 'c.img'), { fileSizeBytes: 1 << 20, seed: 'two' });
      assert.equal(a.sha256, b.sha256);
      assert.notEqual(a.sha256, c.sha256);
      const data = (await readFile(join(dir, 'a.img'))).subarray(5 * 65536);
      assert.ok(gzipSync(data).length > data.length * 0.99, 'gzip should not shrink the data');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('fall back to smaller clusters when the file is too small for 64 KiB ones', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'qcow2-test-'));
    try {
      const written = await writeQcow2Image(join(dir, 'tiny.img'), { fileSizeBytes: 100_000 });
      const header = parseQcow2Header(await readFile(join(dir, 'tiny.img')));
      assert.equal((await stat(join(dir, 'tiny.img'))).size, 100_000);
      assert.ok(header.clusterBits < 16 && header.clusterBits >= 9);
      assert.equal(written.clusterBits, header.clusterBits);
      await assert.rejects(writeQcow2Image(join(dir, 'no.img'), { fileSizeBytes: 1000 }), RangeError);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('listing HTML', () => {
  test('reproduces the real noble daily listing line for line', async () => {
    const sample = await readFile(new URL('noble-daily-20250430-listing.html', SAMPLES), 'utf8');
    const units: Record<string, number> = { K: 2 ** 10, M: 2 ** 20, G: 2 ** 30 };
    const entries: ListingEntry[] = parseListing(sample).map((row) => {
      const m = /^(\d+(?:\.\d)?)([KMG]?)$/.exec(row.size);
      const sizeBytes = m ? Math.round(Number(m[1]) * (units[m[2] ?? ''] ?? 1)) : -1;
      return {
        name: row.name.replace(/\/$/, ''),
        isDirectory: row.alt === 'DIR',
        mtime: new Date(`${row.date.replace(' ', 'T')}:00Z`),
        sizeBytes,
        description: row.description || undefined,
      };
    });
    assert.equal(entries.length, 69);
    const rendered = renderListingPage({
      urlPath: '/noble/20250430/', title: 'Ubuntu 24.04 LTS (Noble Numbat) daily [20250430]', codename: 'noble', entries,
    });
    const trim = (html: string): string[] => html.split('\n').map((line) => line.trimEnd());
    assert.deepEqual(trim(rendered).slice(0, -1), trim(sample));
  });

  test('prints sizes in Apache four-character form', () => {
    const cases: [number, string][] = [
      [-1, '  - '], [0, '  0 '], [833, '833 '], [972, '972 '], [973, '1.0K'], [5120, '5.0K'], [7168, '7.0K'],
      [20 * 1024, ' 20K'], [240 * 1024, '240K'], [584 * 2 ** 20, '584M'], [583_401_472, '556M'], [2 ** 31, '2.0G'],
    ];
    for (const [bytes, expected] of cases) assert.equal(apacheSize(bytes), expected, `${bytes} bytes`);
  });
});

const BIG_WORLD: MirrorOptions = {
  releases: [{
    codename: 'noble', serials: ['20260901', '20260926'], arches: ['amd64', 'arm64'],
    channels: ['release', 'daily'], variants: ['server', 'minimal'],
  }],
};

describe('fixture mirror layout', () => {
  test('publishes the real paths and names for releases, dailies and minimal images', async () => {
    await withMirror(BIG_WORLD, async (mirror) => {
      const paths = [
        '/releases/noble/release-20260926/ubuntu-24.04-server-cloudimg-amd64.img',
        '/releases/noble/release/ubuntu-24.04-server-cloudimg-arm64.img',
        '/releases/24.04/release-20260901/ubuntu-24.04-server-cloudimg-amd64.img',
        '/server/releases/noble/release-20260901/ubuntu-24.04-server-cloudimg-amd64.img',
        '/noble/20260926/noble-server-cloudimg-amd64.img',
        '/noble/current/noble-server-cloudimg-arm64.img',
        '/minimal/releases/noble/release-20260926/ubuntu-24.04-minimal-cloudimg-amd64.img',
        '/minimal/daily/noble/20260901/noble-minimal-cloudimg-arm64.img',
        '/minimal/daily/noble/current/noble-minimal-cloudimg-amd64.img',
      ];
      for (const path of paths) {
        const res = await get(mirror.urlOf(path), {}, 'HEAD');
        assert.equal(res.status, 200, path);
        assert.equal(res.headers.get('content-length'), String(512 * 1024), path);
      }
      assert.equal(mirror.published().length, 2 * 2 * 2 * 2);
      // `release/` and `current/` are the newest serial.
      const latest = await get(mirror.urlOf('/releases/noble/release/SHA256SUMS'));
      assert.deepEqual(latest.body, (await get(mirror.urlOf('/releases/noble/release-20260926/SHA256SUMS'))).body);
      const current = await get(mirror.urlOf('/noble/current/SHA256SUMS'));
      assert.deepEqual(current.body, (await get(mirror.urlOf('/noble/20260926/SHA256SUMS'))).body);
    });
  });

  test('lists directories as Apache does, and the rows parse back to the files served', async () => {
    await withMirror(BIG_WORLD, async (mirror) => {
      const top = parseListing(await text(mirror.urlOf('/')));
      const noble = top.find((r) => r.name === 'noble/');
      assert.equal(noble?.alt, 'DIR');
      assert.equal(noble?.size, '-');
      assert.equal(noble?.description, 'Ubuntu Server 24.04 LTS (Noble Numbat) daily builds');
      assert.ok(top.some((r) => r.name === 'releases/') && top.some((r) => r.name === 'minimal/'));
      assert.ok(!top.some((r) => r.name.startsWith('.')), 'dot files stay hidden');

      const releases = parseListing(await text(mirror.urlOf('/releases/'))).map((r) => r.href);
      // As on the real site: the simplestreams tree (streams/) and the server/releases/ path its items use.
      assert.deepEqual(releases, ['24.04/', 'noble/', 'server/', 'streams/']);
      const stream = parseListing(await text(mirror.urlOf('/releases/noble/'))).map((r) => r.href);
      assert.deepEqual(stream, ['release-20260901/', 'release-20260926/', 'release/']);
      const daily = parseListing(await text(mirror.urlOf('/noble/'))).map((r) => r.href);
      assert.deepEqual(daily, ['20260901/', '20260926/', 'current/']);

      const dirPath = '/releases/noble/release-20260926/';
      const html = await text(mirror.urlOf(dirPath));
      assert.match(html, /<title>Ubuntu 24\.04 LTS \(Noble Numbat\) released \[20260926\]<\/title>/);
      assert.match(html, /alt="\[PARENTDIR\]" width="22" height="22"> <a href="\/releases\/noble\/">Parent Directory<\/a>/);
      const rows = parseListing(html);
      assert.deepEqual(rows.map((r) => r.name), [
        'SHA256SUMS', 'SHA256SUMS.gpg',
        'ubuntu-24.04-server-cloudimg-amd64-root.tar.xz', 'ubuntu-24.04-server-cloudimg-amd64.img',
        'ubuntu-24.04-server-cloudimg-amd64.manifest',
        'ubuntu-24.04-server-cloudimg-arm64-root.tar.xz', 'ubuntu-24.04-server-cloudimg-arm64.img',
        'ubuntu-24.04-server-cloudimg-arm64.manifest', 'unpacked/',
      ]);
      for (const row of rows.filter((r) => r.alt !== 'DIR')) {
        const file = await get(mirror.urlOf(dirPath + row.href), {}, 'HEAD');
        assert.equal(file.status, 200, row.href);
        assert.equal(apacheSize(Number(file.headers.get('content-length'))).trim(), row.size, row.href);
        assert.match(row.date, /^\d{4}-\d\d-\d\d \d\d:\d\d$/);
        assert.equal(row.date, new Date(file.headers.get('last-modified') ?? '').toISOString().slice(0, 16).replace('T', ' '));
      }
      const image = rows.find((r) => r.name.endsWith('amd64.img'));
      assert.equal(image?.size, '512K');
      assert.equal(image?.description, 'QCow2 UEFI/GPT Bootable disk image');
      assert.equal(image?.date, '2026-09-26 04:11');
      assert.match(await text(mirror.urlOf(`${dirPath}unpacked/build-info.txt`)), /^serial=20260926$/m);
    });
  });

  test('answers a directory URL without its slash with a 301 to the slash form, and unknown paths with the real 404', async () => {
    await withMirror({}, async (mirror) => {
      const moved = await get(mirror.urlOf('/releases/noble?C=M;O=A'));
      assert.equal(moved.status, 301);
      assert.equal(moved.headers.get('location'), mirror.urlOf('/releases/noble/?C=M;O=A'));
      const missing = await get(mirror.urlOf('/releases/noble/release-19990101/'));
      assert.equal(missing.status, 404);
      assert.deepEqual(missing.body, await readFile(new URL('apache-404.html', SAMPLES)));
      assert.equal((await get(mirror.urlOf('/../../etc/passwd'))).status, 404);
    });
  });

  test('serves SHA256SUMS sorted by hash whose lines match the bytes of every file', async () => {
    await withMirror(BIG_WORLD, async (mirror) => {
      const dir = '/minimal/daily/noble/20260926/';
      const sums = parseSums(await text(mirror.urlOf(`${dir}SHA256SUMS`)));
      assert.equal(sums.length, 6);
      assert.deepEqual(sums.map((s) => s.hash), sums.map((s) => s.hash).sort());
      for (const { hash, name } of sums) assert.equal(sha256((await get(mirror.urlOf(dir + name))).body), hash, name);
      const published = mirror.published({ channel: 'daily', variant: 'minimal', serial: '20260926' });
      assert.deepEqual(published.map((p) => p.fileName).sort(), ['noble-minimal-cloudimg-amd64.img', 'noble-minimal-cloudimg-arm64.img']);
      for (const image of published) assert.equal(sums.find((s) => s.name === image.fileName)?.hash, image.sha256);
    });
  });

  test('signs SHA256SUMS with a detached armored signature that verifies against the exported key', async () => {
    await withMirror({}, async (mirror) => {
      const sums = await text(mirror.urlOf('/releases/noble/release/SHA256SUMS'));
      const signature = await text(mirror.urlOf('/releases/noble/release/SHA256SUMS.gpg'));
      assert.match(signature, /^-----BEGIN PGP SIGNATURE-----\n/);
      const keyring = await openpgp.readKeys({ armoredKeys: await readFile(mirror.keyringPath, 'utf8') });
      assert.deepEqual(keyring.map((k) => k.getFingerprint().toUpperCase()), [mirror.fingerprint, (await retiredSigningKey()).fingerprint]);
      assert.equal(await verifies(sums, signature, mirror.publicKeyArmored, 'binary'), true);
      assert.equal(await verifies(sums, signature, mirror.publicKeyArmored, 'text'), true);
      assert.equal(await verifies(sums.replace(/^./, (c) => (c === '0' ? '1' : '0')), signature, mirror.publicKeyArmored, 'binary'), false);
    });
  });
});

describe('fixture mirror HTTP semantics', () => {
  const imagePath = '/releases/noble/release/ubuntu-24.04-server-cloudimg-amd64.img';

  test('sends a quoted size-mtime ETag, Last-Modified and Accept-Ranges, and HEAD without a body', async () => {
    await withMirror({}, async (mirror) => {
      const head = await get(mirror.urlOf(imagePath), {}, 'HEAD');
      assert.equal(head.status, 200);
      assert.match(head.headers.get('etag') ?? '', /^"80000-[0-9a-f]+"$/);
      assert.equal(head.headers.get('last-modified'), 'Fri, 20 Nov 2026 04:11:00 GMT');
      assert.equal(head.headers.get('accept-ranges'), 'bytes');
      assert.equal(head.headers.get('content-length'), String(512 * 1024));
      assert.equal(head.body.length, 0);
      const record = mirror.requests.at(-1);
      assert.equal(record?.method, 'HEAD');
      assert.equal(record?.bytesSent, 0);
    });
  });

  test('answers If-None-Match and If-Modified-Since with 304 and no body, on files and listings', async () => {
    await withMirror({}, async (mirror) => {
      for (const path of [imagePath, '/noble/current/']) {
        const first = await get(mirror.urlOf(path));
        const etag = first.headers.get('etag') ?? '';
        const lastModified = first.headers.get('last-modified') ?? '';
        assert.ok(etag && lastModified, path);
        const byTag = await get(mirror.urlOf(path), { 'If-None-Match': etag });
        assert.equal(byTag.status, 304, path);
        assert.equal(byTag.body.length, 0);
        assert.equal(byTag.headers.get('etag'), etag);
        assert.equal((await get(mirror.urlOf(path), { 'If-Modified-Since': lastModified })).status, 304, path);
        assert.equal((await get(mirror.urlOf(path), { 'If-None-Match': '"other"' })).status, 200, path);
        const earlier = new Date(Date.parse(lastModified) - 1000).toUTCString();
        assert.equal((await get(mirror.urlOf(path), { 'If-Modified-Since': earlier })).status, 200, path);
      }
    });
  });

  test('serves byte ranges with 206 and Content-Range, and 416 past the end', async () => {
    await withMirror({}, async (mirror) => {
      const whole = (await get(mirror.urlOf(imagePath))).body;
      const size = whole.length;
      const open = await get(mirror.urlOf(imagePath), { Range: 'bytes=100000-' });
      assert.equal(open.status, 206);
      assert.equal(open.headers.get('content-range'), `bytes 100000-${size - 1}/${size}`);
      assert.equal(open.headers.get('content-length'), String(size - 100000));
      assert.deepEqual(open.body, whole.subarray(100000));
      const closed = await get(mirror.urlOf(imagePath), { Range: 'bytes=10-19' });
      assert.equal(closed.status, 206);
      assert.equal(closed.headers.get('content-range'), `bytes 10-19/${size}`);
      assert.deepEqual(closed.body, whole.subarray(10, 20));
      const suffix = await get(mirror.urlOf(imagePath), { Range: 'bytes=-4' });
      assert.deepEqual(suffix.body, whole.subarray(size - 4));
      const past = await get(mirror.urlOf(imagePath), { Range: `bytes=${size}-` });
      assert.equal(past.status, 416);
      assert.equal(past.headers.get('content-range'), `bytes */${size}`);
    });
  });

  test('honours If-Range: a matching ETag gets the range, a stale one the whole file', async () => {
    await withMirror({}, async (mirror) => {
      const etag = (await get(mirror.urlOf(imagePath), {}, 'HEAD')).headers.get('etag') ?? '';
      const matching = await get(mirror.urlOf(imagePath), { Range: 'bytes=1000-', 'If-Range': etag });
      assert.equal(matching.status, 206);
      const stale = await get(mirror.urlOf(imagePath), { Range: 'bytes=1000-', 'If-Range': '"1-2"' });
      assert.equal(stale.status, 200);
      assert.equal(stale.body.length, 512 * 1024);
      assert.equal(stale.headers.get('content-range'), null);
    });
  });

  test('logs each request with its method, path, status, body bytes and headers', async () => {
    await withMirror({}, async (mirror) => {
      await get(mirror.urlOf(imagePath), { 'User-Agent': 'cloudimg-sync/0.1 (+ops@example.org)', Range: 'bytes=0-99' });
      await get(mirror.urlOf('/nothing-here'));
      const [image, missing] = mirror.requests;
      assert.equal(image?.method, 'GET');
      assert.equal(image?.path, imagePath);
      assert.equal(image?.status, 206);
      assert.equal(image?.bytesSent, 100);
      assert.equal(image?.headers['user-agent'], 'cloudimg-sync/0.1 (+ops@example.org)');
      assert.equal(image?.headers.range, 'bytes=0-99');
      assert.equal(missing?.status, 404);
      mirror.clearRequests();
      assert.equal(mirror.requests.length, 0);
    });
  });
});

describe('fixture mirror faults', () => {
  const imagePath = '/noble/current/noble-server-cloudimg-amd64.img';

  test('status: answers 503 for the next N matching requests, then recovers', async () => {
    await withMirror({}, async (mirror) => {
      const fault = mirror.inject({ path: /\.img$/, fault: 'status', times: 2 });
      assert.equal((await get(mirror.urlOf('/noble/current/'))).status, 200, 'other paths are untouched');
      assert.equal((await get(mirror.urlOf(imagePath))).status, 503);
      assert.equal((await get(mirror.urlOf(imagePath))).status, 503);
      assert.equal(fault.hits, 2);
      assert.equal(fault.exhausted, true);
      assert.equal((await get(mirror.urlOf(imagePath))).status, 200);
      mirror.inject({ path: imagePath, fault: 'status', status: 500 });
      assert.equal((await get(mirror.urlOf(imagePath))).status, 500);
      assert.deepEqual(mirror.requests.at(-1)?.faults, ['status']);
      mirror.clearFaults();
      assert.equal((await get(mirror.urlOf(imagePath))).status, 200);
    });
  });

  test('reset: the connection is reset after K body bytes', async () => {
    await withMirror({}, async (mirror) => {
      mirror.inject({ path: /\.img$/, fault: 'reset', afterBytes: 65536, times: 1 });
      const res = await rawGet(mirror.urlOf(imagePath));
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-length'], String(512 * 1024));
      assert.ok(res.error, 'the body ends in an error');
      assert.ok(res.body.length <= 65536);
      assert.equal(mirror.requests.at(-1)?.bytesSent, 65536);
      const again = await rawGet(mirror.urlOf(imagePath));
      assert.equal(again.error, undefined);
      assert.equal(again.body.length, 512 * 1024);
    });
  });

  test('truncate: fewer bytes than Content-Length arrive, then the connection closes', async () => {
    await withMirror({}, async (mirror) => {
      mirror.inject({ path: imagePath, fault: 'truncate', afterBytes: 100_000 });
      const res = await rawGet(mirror.urlOf(imagePath));
      assert.equal(res.headers['content-length'], String(512 * 1024));
      assert.equal(res.body.length, 100_000);
      assert.ok(res.error, 'a premature close is an error');
      await assert.rejects(get(mirror.urlOf(imagePath)));
    });
  });

  test('wrong-bytes: same length, different bytes, so the checksum fails', async () => {
    await withMirror({}, async (mirror) => {
      const [image] = mirror.published({ channel: 'daily' });
      assert.ok(image);
      mirror.inject({ path: /\.img$/, fault: 'wrong-bytes', times: 1 });
      const bad = await get(image.url);
      assert.equal(bad.body.length, image.sizeBytes);
      assert.notEqual(sha256(bad.body), image.sha256);
      const good = await get(image.url);
      assert.equal(sha256(good.body), image.sha256);
      const differing = [...bad.body.keys()].filter((i) => bad.body[i] !== good.body[i]);
      assert.equal(differing.length, 1);
    });
  });

  test('bad-signature: a foreign key signature or tampered sums fail verification', async () => {
    await withMirror({}, async (mirror) => {
      const dir = '/releases/noble/release/';
      mirror.inject({ path: /SHA256SUMS/, fault: 'bad-signature', times: 1 });
      const sums = await text(mirror.urlOf(`${dir}SHA256SUMS`));
      const foreign = await text(mirror.urlOf(`${dir}SHA256SUMS.gpg`));
      assert.equal(await verifies(sums, foreign, mirror.publicKeyArmored, 'binary'), false);
      const genuine = await text(mirror.urlOf(`${dir}SHA256SUMS.gpg`));
      assert.notEqual(genuine, foreign);
      assert.equal(await verifies(sums, genuine, mirror.publicKeyArmored, 'binary'), true);

      mirror.inject({ path: /SHA256SUMS$/, fault: 'bad-signature', how: 'tampered-sums', times: 1 });
      const tampered = await text(mirror.urlOf(`${dir}SHA256SUMS`));
      assert.notEqual(tampered, sums);
      assert.equal(parseSums(tampered).length, parseSums(sums).length);
      assert.equal(await verifies(tampered, genuine, mirror.publicKeyArmored, 'binary'), false);
    });
  });

  test('pruned: a path answers 404 with the Apache body; removeSerial prunes for real', async () => {
    await withMirror({ releases: [{ codename: 'noble', serials: ['20261101', '20261115'], channels: ['daily'] }] }, async (mirror) => {
      mirror.inject({ path: /^\/noble\/20261101\//, fault: 'pruned', times: 1 });
      const pruned = await get(mirror.urlOf('/noble/20261101/'));
      assert.equal(pruned.status, 404);
      assert.match(pruned.body.toString(), /<h1>Not Found<\/h1>/);
      assert.equal((await get(mirror.urlOf('/noble/20261101/'))).status, 200);

      await mirror.removeSerial({ codename: 'noble', serial: '20261115' });
      assert.equal((await get(mirror.urlOf('/noble/20261115/SHA256SUMS'))).status, 404);
      assert.deepEqual(parseListing(await text(mirror.urlOf('/noble/'))).map((r) => r.href), ['20261101/', 'current/']);
      assert.match(await text(mirror.urlOf('/noble/current/unpacked/build-info.txt')), /serial=20261101/);
      assert.deepEqual(mirror.published().map((i) => i.serial), ['20261101']);
      await assert.rejects(mirror.removeSerial({ codename: 'noble', serial: '20261115' }));
    });
  });

  test('malformed-listing: garbage, no rows, or rows with old-style dates', async () => {
    await withMirror({}, async (mirror) => {
      mirror.inject({ path: '/noble/', fault: 'malformed-listing', kind: 'garbage', times: 1 });
      mirror.inject({ path: '/noble/', fault: 'malformed-listing', kind: 'no-rows', times: 1 });
      mirror.inject({ path: '/noble/', fault: 'malformed-listing', kind: 'odd-dates', times: 1 });
      const garbage = await text(mirror.urlOf('/noble/'));
      assert.deepEqual(parseListing(garbage), []);
      const noRows = await text(mirror.urlOf('/noble/'));
      assert.match(noRows, /<a href="\?C=N;O=D">Name<\/a>/);
      assert.deepEqual(parseListing(noRows), []);
      assert.doesNotMatch(noRows, /PARENTDIR/);
      const odd = await text(mirror.urlOf('/noble/'));
      assert.match(odd, /<a href="20261120\/">20261120\/<\/a> +20-Nov-2026 06:23/);
      const oddRows = parseListing(odd);
      assert.equal(oddRows.length, 2);
      for (const row of oddRows) assert.match(row.date, /^\d\d-[A-Z][a-z]{2}-\d{4} \d\d:\d\d$/);
      assert.deepEqual(parseListing(await text(mirror.urlOf('/noble/'))).map((r) => r.href), ['20261120/', 'current/']);
    });
  });

  test('slow: the body is sent at the given rate', async () => {
    await withMirror({}, async (mirror) => {
      mirror.inject({ path: imagePath, fault: 'slow', bytesPerSecond: 256 * 1024, times: 1 });
      const started = Date.now();
      const res = await get(mirror.urlOf(imagePath), { Range: 'bytes=0-131071' });
      assert.equal(res.body.length, 131072);
      // 128 KiB at 256 KiB/s: the last piece cannot leave before ~0.45 s.
      assert.ok(Date.now() - started >= 400, `took ${Date.now() - started} ms`);
      assert.deepEqual(mirror.requests.at(-1)?.faults, ['slow']);
    });
  });

  test('ignore-range: a Range request gets 200 and the whole body', async () => {
    await withMirror({}, async (mirror) => {
      mirror.inject({ path: /\.img$/, fault: 'ignore-range', times: 1 });
      assert.equal((await get(mirror.urlOf(imagePath))).status, 200, 'a plain GET does not use up the fault');
      const ignored = await get(mirror.urlOf(imagePath), { Range: 'bytes=1000-' });
      assert.equal(ignored.status, 200);
      assert.equal(ignored.body.length, 512 * 1024);
      assert.equal((await get(mirror.urlOf(imagePath), { Range: 'bytes=1000-' })).status, 206);
    });
  });

  test('replaceImageBytes: the image keeps its size and no longer matches the signed SHA256SUMS', async () => {
    await withMirror({}, async (mirror) => {
      const [image] = mirror.published({ channel: 'release' });
      assert.ok(image);
      const etagBefore = (await get(image.url, {}, 'HEAD')).headers.get('etag');
      await mirror.replaceImageBytes({ codename: 'noble', serial: image.serial, channel: 'release' });
      const after = await get(image.url);
      assert.equal(after.body.length, image.sizeBytes);
      assert.notEqual(sha256(after.body), image.sha256);
      assert.notEqual(after.headers.get('etag'), etagBefore);
      const sums = parseSums(await text(mirror.urlOf('/releases/noble/release/SHA256SUMS')));
      assert.equal(sums.find((s) => s.name === image.fileName)?.hash, image.sha256);
    });
  });

  test('addSerial: a new serial appears, signed, and current/release move to it', async () => {
    await withMirror({}, async (mirror) => {
      const listingBefore = await get(mirror.urlOf('/noble/'));
      const added = await mirror.addSerial({ codename: 'noble', serial: '20261126' });
      assert.deepEqual(added.map((i) => `${i.channel} ${i.fileName}`).sort(), [
        'daily noble-server-cloudimg-amd64.img', 'release ubuntu-24.04-server-cloudimg-amd64.img',
      ]);
      const listing = await get(mirror.urlOf('/noble/'), { 'If-None-Match': listingBefore.headers.get('etag') ?? '' });
      assert.equal(listing.status, 200, 'the listing changed, so its ETag did');
      assert.deepEqual(parseListing(listing.body.toString()).map((r) => r.href), ['20261120/', '20261126/', 'current/']);
      const sums = await text(mirror.urlOf('/releases/noble/release/SHA256SUMS'));
      const signature = await text(mirror.urlOf('/releases/noble/release/SHA256SUMS.gpg'));
      assert.equal(await verifies(sums, signature, mirror.publicKeyArmored, 'binary'), true);
      const newRelease = added.find((i) => i.channel === 'release');
      assert.equal(parseSums(sums).find((s) => s.name === newRelease?.fileName)?.hash, newRelease?.sha256);
    });
  });
});

describe('fixture mirror streaming', () => {
  function rcharBytes(): number {
    const io = readFileSync('/proc/self/io', 'utf8');
    return Number(/^rchar: (\d+)$/m.exec(io)?.[1]);
  }

  test('serves a 64 MiB image from disk as a stream, with flat memory', async () => {
    const size = 64 * 1024 * 1024;
    await withMirror({ releases: [{ codename: 'noble', serials: ['20261120'], channels: ['release'], imageSizeBytes: size }] }, async (mirror) => {
      const [image] = mirror.published();
      assert.ok(image);
      const readBefore = rcharBytes();
      const rssBefore = process.memoryUsage().rss;
      let rssPeak = rssBefore;
      const sampler = setInterval(() => {
        rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
      }, 5);
      try {
        const digest = await new Promise<{ sha256: string; bytes: number; readWhilePaused: number }>((resolve, reject) => {
          const req = httpRequest(image.url, { agent: false }, (res) => {
            res.pause();
            // While the client reads nothing, the server must stop reading the file (backpressure).
            setTimeout(() => {
              const readWhilePaused = rcharBytes() - readBefore;
              const hash = createHash('sha256');
              let bytes = 0;
              res.on('data', (chunk: Buffer) => {
                hash.update(chunk);
                bytes += chunk.length;
              });
              res.on('end', () => resolve({ sha256: hash.digest('hex'), bytes, readWhilePaused }));
              res.on('error', reject);
              res.resume();
            }, 300);
          });
          req.on('error', reject);
          req.end();
        });
        assert.equal(digest.bytes, size);
        assert.equal(digest.sha256, image.sha256);
        assert.ok(digest.readWhilePaused < size / 4, `read ${digest.readWhilePaused} bytes while the client was paused`);
        assert.ok(rssPeak - rssBefore < size * 0.75, `rss grew by ${rssPeak - rssBefore} bytes`);
      } finally {
        clearInterval(sampler);
      }
    });
  });
});
