import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { parseListing } from '../../src/source/listing/parse-listing.js';
import { resolveRelease } from '../../src/source/releases.js';
import { parseSha256Sums } from '../../src/source/listing/sha256sums.js';
import { compareSerials } from '../../src/image.js';
import { discoverImages } from '../../src/source/listing/discover.js';
import { createLogger } from '../../src/log.js';
import { renderListingPage } from '../fixtures/mirror/listing.js';

const samples = new URL('../fixtures/samples/', import.meta.url);
const realListing = readFileSync(new URL('noble-daily-20250430-listing.html', samples), 'utf8');
const realSums = readFileSync(new URL('noble-20260926/SHA256SUMS', samples), 'utf8');

describe('parseListing', () => {
  const page = 'https://cloud-images.ubuntu.com/noble/20250430/';

  test('reads every file row of the real Apache autoindex page, skipping sort links and the parent', () => {
    const entries = parseListing(realListing, page);
    const names = entries.map((e) => e.name);
    assert.ok(names.includes('SHA256SUMS'));
    assert.ok(names.includes('SHA256SUMS.gpg'));
    assert.ok(names.includes('noble-server-cloudimg-amd64.img'));
    assert.ok(!names.some((n) => n.startsWith('?') || n === '' || n === '..'));
    assert.equal(entries.filter((e) => e.isDirectory).map((e) => e.name).join(), 'unpacked');
  });

  test('resolves hrefs to absolute URLs and reads date and size', () => {
    const img = parseListing(realListing, page).find((e) => e.name === 'noble-server-cloudimg-amd64.img');
    assert.ok(img);
    assert.equal(img.url, `${page}noble-server-cloudimg-amd64.img`);
    assert.equal(img.sizeText, '584M');
    assert.ok(img.modified instanceof Date && img.modified.getUTCFullYear() === 2025);
  });

  test('accepts old Apache dates, missing sizes, odd rows and a table layout', () => {
    const html = `<html><body><pre><a href="?C=N;O=D">Name</a>
<a href="/releases/">Parent Directory</a>
<a href="release-20200606/">release-20200606/</a>     06-Jun-2020 02:58    -
<a href="release-20240605.1/">release-20240605.1/</a>
<a href="http://elsewhere.example/x/">offsite</a>
<a href="README">README</a>   garbage garbage
</pre><table><tr><td><a href="release-20240101/">release-20240101/</a></td><td>2024-01-01 10:00</td><td>-</td></tr></table></body></html>`;
    const entries = parseListing(html, 'https://m.example/releases/noble/');
    assert.deepEqual(entries.map((e) => e.name), ['release-20200606', 'release-20240605.1', 'README', 'release-20240101']);
    assert.equal(entries[0]!.modified?.toISOString(), '2020-06-06T02:58:00.000Z');
    assert.equal(entries[1]!.modified, undefined);
    assert.equal(entries[3]!.modified?.toISOString(), '2024-01-01T10:00:00.000Z');
  });

  test('returns no rows for a page that is not a listing', () => {
    assert.deepEqual(parseListing('<html><body>Service Unavailable</body></html>', 'https://m.example/x/'), []);
  });
});

describe('parseSha256Sums', () => {
  test('parses the real file, sorted by hash, with two names sharing one hash', () => {
    const sums = parseSha256Sums(realSums, 'SHA256SUMS');
    assert.equal(sums.get('noble-server-cloudimg-arm64.img'), '1d6bffe64b848468ac97f821d369a4846d983de1800ccf6b5ec8853e85cefc55');
    const shared = '291bde5f8af0f339ce22cd578a8400d83bf7a18a052d846eaac29d2685000c44';
    assert.equal([...sums.values()].filter((h) => h === shared).length, 2);
  });

  test('accepts text-mode lines (two spaces) and CRLF', () => {
    const sums = parseSha256Sums(`${'a'.repeat(64)}  a.img\r\n${'B'.repeat(64)} *b.img\n`, 'x');
    assert.equal(sums.get('a.img'), 'a'.repeat(64));
    assert.equal(sums.get('b.img'), 'b'.repeat(64));
  });

  test('rejects a malformed line naming the line number', () => {
    assert.throws(() => parseSha256Sums(`${'a'.repeat(64)} *a.img\n<html>oops</html>\n`, 'u/SHA256SUMS'),
      (err: Error & { code?: string }) => err.code === 'SUMS_MALFORMED' && /line 2/.test(err.message));
  });

  test('rejects an empty list', () => {
    assert.throws(() => parseSha256Sums('\n', 'x'), /lists no files/);
  });
});

describe('releases and serials', () => {
  test('maps codenames and versions both ways, 26.04 is resolute', () => {
    assert.deepEqual(resolveRelease('26.04'), { codename: 'resolute', version: '26.04' });
    assert.deepEqual(resolveRelease('noble'), { codename: 'noble', version: '24.04' });
    assert.deepEqual(resolveRelease('24.04 LTS'), { codename: 'noble', version: '24.04' });
  });

  test('accepts an unknown codename with an empty version, rejects an unknown version', () => {
    assert.deepEqual(resolveRelease('zesty2'), { codename: 'zesty2', version: '' });
    assert.equal(resolveRelease('99.04'), undefined);
    assert.equal(resolveRelease('Not A Name!'), undefined);
  });

  test('orders serials numerically, suffixes after the plain date', () => {
    const sorted = ['20240605.10', '20240605', '20240101', '20240605.9', '20240605.1'].sort(compareSerials);
    assert.deepEqual(sorted, ['20240101', '20240605', '20240605.1', '20240605.9', '20240605.10']);
  });
});

test('parseListing skips links with broken %-escapes instead of failing the page', () => {
  const html = '<pre><a href="bad%E0%A4%A/">bad</a>\n<a href="release-20260101/">release-20260101/</a> 2026-01-01 00:00 -\n</pre>';
  assert.deepEqual(parseListing(html, 'https://m.example/releases/noble/').map((e) => e.name), ['release-20260101']);
});

describe('discoverImages: when upstream published a serial (the start of the publication lag)', () => {
  const sourceUrl = 'https://cloud-images.ubuntu.com';
  const listingUrl = `${sourceUrl}/releases/noble/`;
  const sumsUrl = `${listingUrl}release-20261120/SHA256SUMS`;
  const listing = renderListingPage({
    urlPath: '/releases/noble/', title: 'Ubuntu 24.04 LTS (Noble Numbat)',
    entries: [
      { name: 'release-20261101', isDirectory: true, mtime: new Date('2026-11-01T08:00:00Z'), sizeBytes: -1 },
      { name: 'release-20261120', isDirectory: true, mtime: new Date('2026-11-20T17:42:00Z'), sizeBytes: -1 },
    ],
  });
  const sums = `${'a'.repeat(64)} *ubuntu-24.04-server-cloudimg-amd64.img\n`;
  const discover = (sumsLastModified: string | undefined) => discoverImages({
    sourceUrl, streams: [{ id: 'release/server', channel: 'release', variant: 'server', releases: [resolveRelease('noble')!], arches: ['amd64'] }],
    keep: 1, nowMs: Date.parse('2026-11-21T00:00:00Z'), keyring: undefined,
    log: createLogger({ level: 'silent' }),
    get: async (url) => {
      if (url === listingUrl) return { body: Buffer.from(listing), changed: false, lastModified: 'Fri, 20 Nov 2026 17:42:10 GMT' };
      if (url === sumsUrl) return { body: Buffer.from(sums), changed: false, lastModified: sumsLastModified };
      throw new Error(`unexpected GET ${url}`);
    },
  });

  test('the Last-Modified of the serial\'s SHA256SUMS, to the second', async () => {
    const { images } = await discover('Fri, 20 Nov 2026 18:03:27 GMT');
    assert.equal(images[0]?.publishedAt, '2026-11-20T18:03:27.000Z');
  });

  test('without one, the serial folder\'s date in the release listing', async () => {
    const { images } = await discover(undefined);
    assert.equal(images[0]?.publishedAt, '2026-11-20T17:42:00.000Z');
  });
});

describe('discoverImages: a listing unchanged since it was read is not parsed again', () => {
  const sourceUrl = 'https://cloud-images.ubuntu.com';
  const listingUrl = `${sourceUrl}/releases/noble/`;
  const sumsUrl = `${listingUrl}release-20261120/SHA256SUMS`;
  const listing = renderListingPage({
    urlPath: '/releases/noble/', title: 'Ubuntu 24.04 LTS (Noble Numbat)',
    entries: [{ name: 'release-20261120', isDirectory: true, mtime: new Date('2026-11-20T17:42:00Z'), sizeBytes: -1 }],
  });
  const sums = `${'a'.repeat(64)} *ubuntu-24.04-server-cloudimg-amd64.img\n`;
  const discover = (page: { body: string; changed: boolean }, memo: { json?: string }) => discoverImages({
    sourceUrl, streams: [{ id: 'release/server', channel: 'release', variant: 'server', releases: [resolveRelease('noble')!], arches: ['amd64'] }],
    keep: 1, nowMs: Date.parse('2026-11-21T00:00:00Z'), keyring: undefined,
    log: createLogger({ level: 'silent' }),
    get: async (url) => {
      if (url === listingUrl) {
        return { body: Buffer.from(page.body), changed: page.changed, parsed: { get: () => memo.json, set: (json) => { memo.json = json; } } };
      }
      if (url === sumsUrl) return { body: Buffer.from(sums), changed: false };
      throw new Error(`unexpected GET ${url}`);
    },
  });

  test('the serial folders read from a page are kept beside it, and a 304 of it is answered from them', async () => {
    const memo: { json?: string } = {};
    const first = await discover({ body: listing, changed: true }, memo);
    assert.equal(first.images[0]?.serial, '20261120');
    assert.ok(memo.json, 'the folders were remembered');
    // The cached page itself is not read again: a body that parses to nothing still finds the serial.
    const second = await discover({ body: '<html>not a listing</html>', changed: false }, memo);
    assert.deepEqual(second.failures, []);
    assert.equal(second.images[0]?.serial, '20261120');
    assert.equal(second.images[0]?.publishedAt, '2026-11-20T17:42:00.000Z', 'the folder date is remembered too');
  });

  test('a changed page is parsed again, whatever was remembered', async () => {
    const memo = { json: JSON.stringify({ format: 1, folders: [{ serial: '20261101', url: `${listingUrl}release-20261101/` }] }) };
    const { images } = await discover({ body: listing, changed: true }, memo);
    assert.equal(images[0]?.serial, '20261120');
  });

  test('a remembered form that cannot be read (another format, damaged) is parsed again from the page', async () => {
    for (const json of ['{"format":0,"folders":[]}', 'not json', '{"format":1,"folders":[{"serial":7}]}']) {
      const memo = { json };
      const { images } = await discover({ body: listing, changed: false }, memo);
      assert.equal(images[0]?.serial, '20261120', json);
    }
  });
});
