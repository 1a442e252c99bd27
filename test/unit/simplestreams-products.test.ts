import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { imageKey, type Arch } from '../../src/image.js';
import { resolveRelease, type ReleaseName } from '../../src/source/releases.js';
import {
  DEFAULT_FTYPE, downloadContentId, parseProducts, parseStreamsIndex, selectImages, type ProductsDocument, type StreamsSelection,
} from '../../src/source/simplestreams/products.js';

const ROOT = 'https://cloud-images.ubuntu.com/releases/';
const sampleUrl = `${ROOT}streams/v1/com.ubuntu.cloud:released:download.json`;
/** Canonical's real products file of August 2024, trimmed to 16 products. */
const realText = readFileSync(new URL('../fixtures/samples/released-download-2024-08.json', import.meta.url), 'utf8');
const real = parseProducts(realText, sampleUrl);

const release = (name: string): ReleaseName => resolveRelease(name)!;

function selection(over: Partial<StreamsSelection> = {}): StreamsSelection {
  return { channel: 'release', variant: 'server', releases: [release('noble')], arches: ['amd64'], ftype: DEFAULT_FTYPE, rootUrl: ROOT, signed: true, ...over };
}

/** A products file of one product with one version holding one disk1.img item. */
function oneItem(item: Record<string, unknown>, serial = '20261120', productId = 'com.ubuntu.cloud:server:24.04:amd64'): ProductsDocument {
  return parseProducts(JSON.stringify({
    format: 'products:1.0', content_id: 'com.ubuntu.cloud:released:download',
    products: { [productId]: { arch: 'amd64', release: 'noble', version: '24.04', support_eol: '2029-05-31', versions: { [serial]: { items: { 'disk1.img': { ftype: 'disk1.img', ...item } } } } } },
  }), 'test.json');
}

const goodItem = {
  path: 'server/releases/noble/release-20261120/ubuntu-24.04-server-cloudimg-amd64.img',
  sha256: 'ab'.repeat(32), size: 1234,
};

describe('selectImages on the real products file', () => {
  test('takes the newest serial of noble amd64 with its path, sha256, size and support_eol, keyed as the listing source keys it', () => {
    const { images, unmatched } = selectImages(real, selection());
    assert.deepEqual(unmatched, []);
    assert.equal(images.length, 1);
    const [noble] = images;
    assert.deepEqual(noble, {
      channel: 'release', variant: 'server', release: 'noble', version: '24.04', arch: 'amd64', serial: '20240821',
      fileName: 'ubuntu-24.04-server-cloudimg-amd64.img',
      url: 'https://cloud-images.ubuntu.com/releases/server/releases/noble/release-20240821/ubuntu-24.04-server-cloudimg-amd64.img',
      sha256: '0e25ca6ee9f08ec5d4f9910054b66ae7163c6152e81a3e67689d89bd6e4dfa69', signed: true,
      sizeBytes: 586022912, supportEol: '2029-05-31', publishedAt: '2024-08-22T03:28:23.000Z',
    });
    assert.equal(imageKey(noble!), 'release/server/noble/amd64/20240821');
  });

  test('orders serials numerically: 20240821 beats 20240605.1, and a .N suffix beats its day', () => {
    const doc = oneItem(goodItem, '20240605');
    const product = Object.values(doc.products)[0]!;
    product.versions['20240605.1'] = { items: { 'disk1.img': { ...goodItem, ftype: 'disk1.img', sha256: 'cd'.repeat(32) } } };
    assert.equal(selectImages(doc, selection()).images[0]?.serial, '20240605.1');
  });

  test('keep: N takes the N newest serials, newest first', () => {
    const { images } = selectImages(real, selection({ keep: 3 }));
    assert.deepEqual(images.map((i) => i.serial), ['20240821', '20240809', '20240806']);
  });

  const table: Array<{ name: string; releases: string[]; arches: Arch[]; serials: string[]; files: string[]; unmatched: string[] }> = [
    { name: 'a -disk1.img release (lucid)', releases: ['lucid'], arches: ['amd64'], serials: ['20150427'], files: ['ubuntu-10.04-server-cloudimg-amd64-disk1.img'], unmatched: [] },
    { name: 'an EOL release by version (23.10)', releases: ['23.10'], arches: ['amd64'], serials: ['20240710'], files: ['ubuntu-23.10-server-cloudimg-amd64.img'], unmatched: [] },
    { name: 'armhf of focal', releases: ['focal'], arches: ['armhf'], serials: ['20240821'], files: ['ubuntu-20.04-server-cloudimg-armhf.img'], unmatched: [] },
    { name: 'an arch the file lacks', releases: ['noble'], arches: ['amd64', 's390x'], serials: ['20240821'], files: ['ubuntu-24.04-server-cloudimg-amd64.img'], unmatched: ['noble/s390x'] },
    { name: 'a release the file lacks', releases: ['jammy', 'noble'], arches: ['amd64'], serials: ['20240821'], files: ['ubuntu-24.04-server-cloudimg-amd64.img'], unmatched: ['jammy/amd64'] },
  ];
  for (const row of table) {
    test(`selects ${row.name}`, () => {
      const { images, unmatched } = selectImages(real, selection({ releases: row.releases.map(release), arches: row.arches }));
      assert.deepEqual(images.map((i) => i.serial), row.serials);
      assert.deepEqual(images.map((i) => i.fileName), row.files);
      assert.deepEqual(unmatched.map((u) => `${u.release}/${u.arch}`), row.unmatched);
    });
  }

  test('another ftype selects that item (the manifest) instead of the disk', () => {
    const [image] = selectImages(real, selection({ ftype: 'manifest' })).images;
    assert.equal(image?.fileName, 'ubuntu-24.04-server-cloudimg-amd64.manifest');
  });

  test('the minimal variant takes nothing from a server products file', () => {
    const { images, unmatched } = selectImages(real, selection({ variant: 'minimal' }));
    assert.deepEqual(images, []);
    assert.match(unmatched[0]!.reason, /no minimal product of noble amd64/);
  });

  test('the channel and signed flag are taken from the selection, the version from the product', () => {
    const [image] = selectImages(real, selection({ channel: 'daily', signed: false })).images;
    assert.equal(image?.channel, 'daily');
    assert.equal(image?.signed, false);
    assert.equal(image?.version, '24.04');
  });
});

describe('selectImages: when upstream published a serial (publishedAt, the start of the publication lag)', () => {
  /** oneItem with `updated` set on the file, the product and the version as given. */
  function withUpdated(at: { file?: string; product?: string; version?: string }): ProductsDocument {
    const doc = oneItem(goodItem);
    const product = Object.values(doc.products)[0]!;
    return {
      ...doc, updated: at.file,
      products: { only: { ...product, updated: at.product, versions: { '20261120': { ...product.versions['20261120']!, updated: at.version } } } },
    };
  }
  const publishedAt = (doc: ProductsDocument) => selectImages(doc, selection()).images.map((i) => i.publishedAt);

  test('the products file\'s updated (RFC 2822, as Canonical writes it) as ISO 8601', () => {
    assert.deepEqual(publishedAt(withUpdated({ file: 'Fri, 20 Nov 2026 18:03:27 +0000' })), ['2026-11-20T18:03:27.000Z']);
  });

  test('the nearest updated wins: the version\'s over the product\'s over the file\'s', () => {
    const file = 'Sat, 21 Nov 2026 09:00:00 +0000';
    const product = 'Fri, 20 Nov 2026 20:00:00 +0000';
    assert.deepEqual(publishedAt(withUpdated({ file, product })), ['2026-11-20T20:00:00.000Z']);
    assert.deepEqual(publishedAt(withUpdated({ file, product, version: 'Fri, 20 Nov 2026 18:03:27 +0000' })), ['2026-11-20T18:03:27.000Z']);
  });

  test('absent when no level says, or when the nearest is not a date', () => {
    assert.deepEqual(publishedAt(withUpdated({})), [undefined]);
    assert.equal('publishedAt' in selectImages(withUpdated({}), selection()).images[0]!, false, 'no key at all, as the listing source');
    assert.deepEqual(publishedAt(withUpdated({ file: 'Fri, 20 Nov 2026 18:03:27 +0000', version: 'last Tuesday' })), [undefined]);
  });
});

describe('selectImages refuses items it cannot use safely', () => {
  const cases: Array<[string, Record<string, unknown>, RegExp]> = [
    ['a path with ..', { ...goodItem, path: 'server/../../etc/ubuntu-24.04-server-cloudimg-amd64.img' }, /leaves the tree/],
    ['an absolute path', { ...goodItem, path: '/elsewhere/ubuntu-24.04-server-cloudimg-amd64.img' }, /leaves the tree/],
    ['a path to another host', { ...goodItem, path: 'http://evil.example/ubuntu-24.04-server-cloudimg-amd64.img' }, /leaves the tree/],
    ['no sha256', { ...goodItem, sha256: undefined }, /no sha256/],
    ['a short sha256', { ...goodItem, sha256: 'abc' }, /no sha256/],
    ['no size', { ...goodItem, size: undefined }, /no size/],
    ['a zero size', { ...goodItem, size: 0 }, /no size/],
    ['no path', { ...goodItem, path: undefined }, /names no file/],
    ['a path ending in a folder', { ...goodItem, path: 'server/releases/noble/' }, /names no file/],
  ];
  for (const [name, item, reason] of cases) {
    test(`an item with ${name} is not selected, and the reason is given`, () => {
      const { images, unmatched } = selectImages(oneItem(item), selection());
      assert.deepEqual(images, []);
      assert.match(unmatched[0]!.reason, reason);
    });
  }

  test('a version key that is not a serial is not selected', () => {
    const { images, unmatched } = selectImages(oneItem(goodItem, 'latest'), selection());
    assert.deepEqual(images, []);
    assert.match(unmatched[0]!.reason, /"latest" is not a serial/);
  });

  test('a good item is selected, with the sha256 in lower case', () => {
    const { images } = selectImages(oneItem({ ...goodItem, sha256: 'AB'.repeat(32) }), selection());
    assert.equal(images[0]?.sha256, 'ab'.repeat(32));
    assert.equal(images[0]?.url, `${ROOT}${goodItem.path}`);
  });
});

describe('parsing simplestreams documents', () => {
  test('the content ids of the download products files per channel', () => {
    assert.equal(downloadContentId('release'), 'com.ubuntu.cloud:released:download');
    assert.equal(downloadContentId('daily'), 'com.ubuntu.cloud:daily:download');
  });

  test('reads an index:1.0 document into its entries', () => {
    const index = parseStreamsIndex(JSON.stringify({
      format: 'index:1.0', updated: 'Thu, 22 Aug 2024 03:28:23 +0000',
      index: { 'com.ubuntu.cloud:released:download': { path: 'streams/v1/com.ubuntu.cloud:released:download.sjson', format: 'products:1.0', datatype: 'image-downloads', products: [] } },
    }), 'index.json');
    assert.equal(index.index['com.ubuntu.cloud:released:download']?.path, 'streams/v1/com.ubuntu.cloud:released:download.sjson');
  });

  test('a document that is not JSON, or of another format, fails with a one-line error naming the URL and the cure', () => {
    assert.throws(() => parseProducts('<html>', 'https://x/p.json'), (err: Error & { code?: string }) =>
      err.code === 'STREAMS_MALFORMED' && /https:\/\/x\/p\.json is not JSON/.test(err.message) && !err.message.includes('\n'));
    assert.throws(() => parseProducts(JSON.stringify({ format: 'index:1.0', index: {} }), 'https://x/p.json'), /not a simplestreams products file.*format/);
    assert.throws(() => parseStreamsIndex(realText, 'https://x/index.json'), /not a simplestreams index/);
  });
});
