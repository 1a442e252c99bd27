import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Writable } from 'node:stream';
import { getText } from '../../src/fetch/get-text.js';
import { createLogger } from '../../src/log.js';
import type { KeyringSource } from '../../src/source/keyring.js';
import { discoverImages } from '../../src/source/listing/discover.js';
import type { CachedGet } from '../../src/source/source.js';
import { imageKey, type Channel, type UpstreamImage, type Variant } from '../../src/image.js';
import { resolveRelease } from '../../src/source/releases.js';
import { loadKeyring, verifyCleartextSignature } from '../../src/source/signature.js';
import { cleartextBody, discoverFromStreams, type StreamsDiscoverOptions } from '../../src/source/simplestreams/discover.js';
import { DEFAULT_FTYPE } from '../../src/source/simplestreams/products.js';
import { foreignSigningKey, startMirror, type Mirror } from '../fixtures/mirror/index.js';

const plainGet: CachedGet = async (url) => {
  const res = await getText(url, { retries: 0 });
  if (res.status !== 200) throw new Error(`unexpected ${res.status}`);
  return { body: res.body, changed: true };
};

function capture(): { log: ReturnType<typeof createLogger>; events: Array<Record<string, unknown>> } {
  const events: Array<Record<string, unknown>> = [];
  const log = createLogger({
    level: 'debug',
    destination: new Writable({ write(chunk: Buffer, _e, done) { for (const l of chunk.toString().split('\n')) if (l) events.push(JSON.parse(l)); done(); } }),
  });
  return { log, events };
}

describe('discoverFromStreams against the fixture mirror', () => {
  let mirror: Mirror;
  let keyring: KeyringSource;

  before(async () => {
    mirror = await startMirror({
      releases: [
        { codename: 'noble', serials: ['20261101', '20261120'], arches: ['amd64', 'arm64'], variants: ['server', 'minimal'] },
        { codename: 'jammy', serials: ['20261115'], arches: ['amd64'] },
      ],
    });
    keyring = { id: 'mirror', load: () => loadKeyring(mirror.keyringPath) };
  });
  after(() => mirror.close());

  function options(over: Partial<StreamsDiscoverOptions> = {}): StreamsDiscoverOptions & { events: Array<Record<string, unknown>> } {
    const { log, events } = capture();
    return {
      rootUrl: mirror.streamsUrl(over.channel ?? 'release', over.variant ?? 'server'), channel: 'release', variant: 'server',
      releases: [resolveRelease('noble')!, resolveRelease('jammy')!], arches: ['amd64'], ftype: DEFAULT_FTYPE, keyring, get: plainGet, log, events, ...over,
    };
  }

  for (const [channel, variant] of [['release', 'server'], ['daily', 'server'], ['release', 'minimal'], ['daily', 'minimal']] as Array<[Channel, Variant]>) {
    test(`${channel}/${variant}: finds the images the listing source finds, with the same keys, names and sha256, plus size and support_eol`, async () => {
      const releases = [resolveRelease('noble')!];
      const fromStreams = await discoverFromStreams(options({ channel, variant, releases, arches: ['amd64', 'arm64'] }));
      const fromListing = await discoverImages({
        sourceUrl: mirror.url, streams: [{ id: `${channel}/${variant}`, channel, variant, releases, arches: ['amd64', 'arm64'] }], keep: 1,
        nowMs: Date.parse('2026-11-21T00:00:00Z'), keyring, get: plainGet, log: capture().log,
      });
      assert.deepEqual(fromStreams.failures, []);
      const comparable = (i: UpstreamImage) =>
        ({ key: imageKey(i), fileName: i.fileName, sha256: i.sha256, version: i.version, signed: i.signed });
      assert.deepEqual(fromStreams.images.map(comparable), fromListing.images.map(comparable));
      // Each says where the site serves it (the streams tree's item path, the listing's folder): a mirror copies it there.
      for (const image of [...fromStreams.images, ...fromListing.images]) assert.equal(image.upstreamPath, new URL(image.url).pathname.slice(1), image.url);
      assert.equal(fromStreams.images.length, 2);
      for (const image of fromStreams.images) {
        const published = mirror.published({ codename: 'noble', serial: '20261120', channel, variant, arch: image.arch })[0]!;
        assert.equal(image.sizeBytes, published.sizeBytes);
        assert.equal(image.supportEol, '2029-05-31');
        const served = await fetch(image.url);
        assert.equal(served.status, 200, image.url);
        assert.equal(Number(served.headers.get('content-length')), published.sizeBytes);
        await served.body?.cancel();
      }
    });
  }

  test('item URLs follow the real tree: server/releases/<codename>/release-<serial>/ below /releases/', async () => {
    const { images, documents } = await discoverFromStreams(options({ releases: [resolveRelease('noble')!] }));
    assert.equal(images[0]?.url, `${mirror.url}/releases/server/releases/noble/release-20261120/ubuntu-24.04-server-cloudimg-amd64.img`);
    assert.deepEqual(documents.map((d) => d.path), ['streams/v1/index.sjson', 'streams/v1/com.ubuntu.cloud:released:download.sjson']);
  });

  test('each image names the signed .sjson it came from, at its place on the site, for targets that republish them', async () => {
    for (const [channel, variant, tree] of [['release', 'server', 'releases/'], ['daily', 'minimal', 'minimal/daily/']] as const) {
      const { images } = await discoverFromStreams(options({ channel, variant, releases: [resolveRelease('noble')!] }));
      const content = channel === 'release' ? 'released' : 'daily';
      assert.deepEqual(images[0]?.signedBy, [
        { url: mirror.urlOf(`/${tree}streams/v1/index.sjson`), path: `${tree}streams/v1/index.sjson` },
        { url: mirror.urlOf(`/${tree}streams/v1/com.ubuntu.cloud:${content}:download.sjson`), path: `${tree}streams/v1/com.ubuntu.cloud:${content}:download.sjson` },
      ]);
    }
  });

  test('each .sjson is verified and logged with the signing key', async () => {
    const opts = options();
    await discoverFromStreams(opts);
    const verified = opts.events.filter((e) => e.event === 'source.streams.verified');
    assert.deepEqual(verified.map((e) => String(e.url).replace(mirror.url, '')),
      ['/releases/streams/v1/index.sjson', '/releases/streams/v1/com.ubuntu.cloud:released:download.sjson']);
    assert.ok(verified.every((e) => e.fingerprint === mirror.fingerprint));
  });

  for (const [what, path] of [['products file', /download\.sjson$/], ['index', /index\.sjson$/]] as const) {
    test(`a tampered ${what} (a sha256 changed after signing) fails every release with SIGNATURE_INVALID and yields no image`, async () => {
      const fault = mirror.inject({ path, fault: 'bad-signature', how: 'tampered-sums' });
      try {
        const result = await discoverFromStreams(options());
        assert.equal(fault.hits, 1);
        assert.deepEqual(result.images, []);
        assert.deepEqual(result.failures.map((f) => [f.release, (f.error as { code?: string }).code]), [['noble', 'SIGNATURE_INVALID'], ['jammy', 'SIGNATURE_INVALID']]);
      } finally {
        fault.remove();
      }
    });
  }

  test('a products file signed by a key outside the keyring is refused', async () => {
    const fault = mirror.inject({ path: /download\.sjson$/, fault: 'bad-signature', how: 'foreign-key' });
    try {
      const result = await discoverFromStreams(options());
      assert.deepEqual(result.images, []);
      assert.match(String((result.failures[0]?.error as Error).message), /does not verify/);
    } finally {
      fault.remove();
    }
  });

  test('an unsigned .sjson is refused with a one-line error naming the cause and the fix', async () => {
    const fault = mirror.inject({ path: /download\.sjson$/, fault: 'bad-signature', how: 'unsigned' });
    try {
      const result = await discoverFromStreams(options());
      assert.deepEqual(result.images, []);
      const err = result.failures[0]?.error as Error & { code?: string; cure?: string };
      assert.equal(err.code, 'STREAMS_UNSIGNED');
      assert.match(err.message, /download\.sjson is not cleartext-signed/);
      assert.match(err.cure!, /verifySignature: false/);
      assert.ok(!err.message.includes('\n'));
    } finally {
      fault.remove();
    }
  });

  test('with signature checking off it reads the unsigned .json files and marks the images unsigned', async () => {
    mirror.clearRequests();
    const result = await discoverFromStreams(options({ keyring: undefined }));
    assert.deepEqual(result.failures, []);
    assert.deepEqual(mirror.requests.map((r) => r.path), ['/releases/streams/v1/index.json', '/releases/streams/v1/com.ubuntu.cloud:released:download.json']);
    assert.deepEqual(result.images.map((i) => [i.release, i.signed]), [['noble', false], ['jammy', false]]);
  });

  test('the daily channel pointed at the released tree fails with the content id it lacks and where to point instead', async () => {
    const result = await discoverFromStreams(options({ channel: 'daily', rootUrl: mirror.streamsUrl('release') }));
    const err = result.failures[0]?.error as Error & { code?: string; cure?: string };
    assert.equal(err.code, 'STREAMS_NO_CONTENT');
    assert.match(err.message, /lists no com\.ubuntu\.cloud:daily:download/);
    assert.match(err.cure!, /\/daily\//);
  });

  test('a release the tree lacks fails alone; an arch it lacks is a warning', async () => {
    const opts = options({ releases: [resolveRelease('noble')!, resolveRelease('plucky')!, resolveRelease('jammy')!], arches: ['amd64', 'arm64'] });
    const result = await discoverFromStreams(opts);
    assert.deepEqual(result.images.map((i) => `${i.release}/${i.arch}`), ['noble/amd64', 'noble/arm64', 'jammy/amd64']);
    assert.deepEqual(result.failures.map((f) => [f.release, (f.error as { code?: string }).code]), [['plucky', 'STREAMS_RELEASE_MISSING']]);
    assert.deepEqual(opts.events.filter((e) => e.event === 'source.arch.missing').map((e) => `${e.release}/${e.arch}`), ['jammy/arm64']);
  });

  test('a new serial upstream shows in the re-signed metadata', async () => {
    await mirror.addSerial({ codename: 'jammy', serial: '20261125' });
    const result = await discoverFromStreams(options({ releases: [resolveRelease('jammy')!] }));
    assert.deepEqual(result.images.map((i) => i.serial), ['20261125']);
  });
});

describe('verification of unchanged metadata', () => {
  test('an .sjson unchanged (304) since it verified with this keyring is not verified again; a changed one or another keyring is', async () => {
    const mirror = await startMirror({ releases: [{ codename: 'noble', serials: ['20261120'], channels: ['release'] }] });
    try {
      const cache = new Map<string, Buffer>();
      let answerUnchanged = false;
      const get: CachedGet = async (url) => {
        const cached = cache.get(url);
        if (answerUnchanged && cached) return { body: cached, changed: false };
        const fresh = await plainGet(url);
        cache.set(url, fresh.body);
        return fresh;
      };
      const verifications = new Map<string, string>();
      const keyringWithId = (id: string): KeyringSource => ({
        id, load: () => loadKeyring(mirror.keyringPath), verifiedSums: { get: (u) => verifications.get(u), set: (u, v) => void verifications.set(u, v) },
      });
      const run = async (keyring: KeyringSource) => {
        const { log, events } = capture();
        const result = await discoverFromStreams({ rootUrl: mirror.streamsUrl(), channel: 'release', variant: 'server', releases: [resolveRelease('noble')!], arches: ['amd64'], ftype: DEFAULT_FTYPE, keyring, get, log });
        return { images: result.images.map((i) => i.sha256), verified: events.filter((e) => e.event === 'source.streams.verified').length };
      };
      const first = await run(keyringWithId('k1'));
      assert.equal(first.verified, 2);
      answerUnchanged = true;
      const second = await run(keyringWithId('k1'));
      assert.deepEqual(second, { images: first.images, verified: 0 }, 'same images from the bytes that verified, no openpgp');
      assert.equal((await run(keyringWithId('k2'))).verified, 2, 'another keyring verifies again');
      answerUnchanged = false;
      assert.equal((await run(keyringWithId('k2'))).verified, 2, 'a changed body verifies again');

      // A tampered body arrives (200) and fails; the server then answers 304 for it: it must fail again, not pass
      // on the strength of the earlier verification of other bytes.
      const fault = mirror.inject({ path: /download\.sjson$/, fault: 'bad-signature', how: 'tampered-sums' });
      const tampered = await discoverFromStreams({ rootUrl: mirror.streamsUrl(), channel: 'release', variant: 'server', releases: [resolveRelease('noble')!], arches: ['amd64'], ftype: DEFAULT_FTYPE, keyring: keyringWithId('k2'), get, log: capture().log });
      assert.equal((tampered.failures[0]?.error as { code?: string }).code, 'SIGNATURE_INVALID');
      fault.remove();
      answerUnchanged = true;
      const replayed = await discoverFromStreams({ rootUrl: mirror.streamsUrl(), channel: 'release', variant: 'server', releases: [resolveRelease('noble')!], arches: ['amd64'], ftype: DEFAULT_FTYPE, keyring: keyringWithId('k2'), get, log: capture().log });
      assert.deepEqual(replayed.images, []);
      assert.equal((replayed.failures[0]?.error as { code?: string }).code, 'SIGNATURE_INVALID');
    } finally {
      await mirror.close();
    }
  });

  test('an unchanged products file answers from the selection made when it verified, for the same keyring and selection only', async () => {
    const mirror = await startMirror({ releases: [{ codename: 'noble', serials: ['20261120'], channels: ['release'], arches: ['amd64', 'arm64'] }] });
    try {
      const bodies = new Map<string, Buffer>();
      const parsed = new Map<string, string>();
      let unchanged = false;
      const get: CachedGet = async (url) => {
        const parsedOf = { get: () => parsed.get(url), set: (json: string) => void parsed.set(url, json) };
        if (unchanged && bodies.has(url)) return { body: bodies.get(url)!, changed: false, parsed: parsedOf };
        const fresh = await plainGet(url);
        bodies.set(url, fresh.body);
        parsed.delete(url); // as the state does when a body changes
        return { ...fresh, parsed: parsedOf };
      };
      const keyring: KeyringSource = { id: 'k1', load: () => loadKeyring(mirror.keyringPath) };
      const discover = (arches: Array<'amd64' | 'arm64'>, k: KeyringSource = keyring) => discoverFromStreams({
        rootUrl: mirror.streamsUrl(), channel: 'release', variant: 'server', releases: [resolveRelease('noble')!], arches, ftype: DEFAULT_FTYPE, keyring: k, get, log: capture().log,
      });
      const first = await discover(['amd64']);
      assert.equal(first.images.length, 1);
      const productsUrl = mirror.urlOf('/releases/streams/v1/com.ubuntu.cloud:released:download.sjson');
      // Mark what was remembered, to see where the next answer comes from.
      const marked = JSON.parse(parsed.get(productsUrl)!) as { memo: string; result: { images: Array<{ sha256: string }> } };
      marked.result.images[0]!.sha256 = 'remembered';
      parsed.set(productsUrl, JSON.stringify(marked));

      unchanged = true;
      assert.deepEqual((await discover(['amd64'])).images.map((i) => i.sha256), ['remembered'], 'unchanged: answered from the selection kept');
      assert.deepEqual((await discover(['amd64', 'arm64'])).images.map((i) => i.arch), ['amd64', 'arm64'], 'another selection reads the file again');
      const otherKeyring = await discover(['amd64'], { id: 'k2', load: keyring.load });
      assert.notEqual(otherKeyring.images[0]?.sha256, 'remembered', 'another keyring verifies and reads again');
      unchanged = false;
      assert.notEqual((await discover(['amd64'])).images[0]?.sha256, 'remembered', 'a changed body is read again');
    } finally {
      await mirror.close();
    }
  });

  test('cleartextBody cuts out exactly the text the signature covers, dash-escaped lines included', async () => {
    const key = await foreignSigningKey();
    const { createCleartextMessage, sign, readKeys } = await import('openpgp');
    const text = '{\n "a": 1,\n-- not json but signed\n "b": "x  "\n}';
    const armored = await sign({ message: await createCleartextMessage({ text }), signingKeys: key.privateKey, format: 'armored' });
    assert.match(armored, /^- -- not json/m, 'openpgp dash-escaped the line');
    const verified = await verifyCleartextSignature(Buffer.from(armored), await readKeys({ armoredKeys: key.publicKeyArmored }), 'x');
    assert.equal(cleartextBody(armored), verified.text);
    assert.equal(cleartextBody('{"not": "signed"}'), undefined);
  });
});

describe('verifyCleartextSignature', () => {
  test('returns the signed text and the signer; refuses a key outside the keyring', async () => {
    const mirror = await startMirror({ releases: [{ codename: 'noble', serials: ['20261120'], channels: ['release'] }] });
    try {
      const body = Buffer.from(await (await fetch(mirror.urlOf('/releases/streams/v1/index.sjson'))).arrayBuffer());
      const plain = await (await fetch(mirror.urlOf('/releases/streams/v1/index.json'))).text();
      const verified = await verifyCleartextSignature(body, await loadKeyring(mirror.keyringPath), 'index.sjson');
      assert.equal(verified.fingerprint, mirror.fingerprint);
      assert.deepEqual(JSON.parse(verified.text).index, JSON.parse(plain.replaceAll('.json"', '.sjson"')).index);
      const foreign = await foreignSigningKey();
      const { readKeys } = await import('openpgp');
      await assert.rejects(verifyCleartextSignature(body, await readKeys({ armoredKeys: foreign.publicKeyArmored }), 'index.sjson'), { code: 'SIGNATURE_INVALID' });
      await assert.rejects(verifyCleartextSignature(Buffer.from(plain), await loadKeyring(mirror.keyringPath), 'index.json'), /not cleartext-signed/);
    } finally {
      await mirror.close();
    }
  });
});
