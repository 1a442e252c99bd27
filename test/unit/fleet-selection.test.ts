import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { validateConfig } from '../../src/config/load.js';
import { endOfLife } from '../../src/source/end-of-life.js';
import type { Arch, UpstreamImage } from '../../src/image.js';
import { parseListing } from '../../src/source/listing/parse-listing.js';
import { selectSerials, type SerialReading } from '../../src/source/select-serials.js';
import { planSync, refuseRollbacks } from '../../src/sync/plan.js';
import type { ImageRecord } from '../../src/state/store.js';
import { decideRetention, type RetentionPolicy } from '../../src/sync/retention.js';
import { imageProperties, renderImageName } from '../../src/targets/glance/image-spec.js';
import type { GlanceTargetConfig } from '../../src/targets/glance/schema.js';
import type { PublishedImage } from '../../src/targets/target.js';
import { discoverFromStreams } from '../../src/source/simplestreams/discover.js';
import { DEFAULT_FTYPE } from '../../src/source/simplestreams/products.js';
import { loadKeyring } from '../../src/source/signature.js';
import { getText } from '../../src/fetch/get-text.js';
import { createLogger } from '../../src/log.js';
import { resolveRelease } from '../../src/source/releases.js';
import { startMirror } from '../fixtures/mirror/index.js';
import { configError } from '../support/config-error.js';

const ok = (serial: string, ...arches: Arch[]): SerialReading => ({ serial, state: 'ok', arches: new Set(arches) });
const at = (day: string): number => Date.parse(`${day}T12:00:00Z`);


describe('which serials to mirror (keep, partial serials)', () => {
  const cases: Array<{ name: string; readings: SerialReading[]; arches: Arch[]; keep: number; picks: Record<string, string[]>; missing: Arch[]; done: boolean }> = [
    { name: 'keep 1: the newest serial', readings: [ok('3', 'amd64'), ok('2', 'amd64')], arches: ['amd64'], keep: 1, picks: { amd64: ['3'] }, missing: [], done: true },
    { name: 'keep 2: the two newest, from the first run', readings: [ok('3', 'amd64'), ok('2', 'amd64'), ok('1', 'amd64')], arches: ['amd64'], keep: 2, picks: { amd64: ['3', '2'] }, missing: [], done: true },
    { name: 'keep larger than upstream: what there is, not done', readings: [ok('2', 'amd64'), ok('1', 'amd64')], arches: ['amd64'], keep: 3, picks: { amd64: ['2', '1'] }, missing: [], done: false },
    {
      name: 'a partial newest serial: each arch from the newest serial that has it', readings: [ok('3', 'amd64'), ok('2', 'amd64', 'arm64')],
      arches: ['amd64', 'arm64'], keep: 1, picks: { amd64: ['3'], arm64: ['2'] }, missing: [], done: true,
    },
    {
      name: 'keep 2 across a partial serial', readings: [ok('3', 'amd64'), ok('2', 'amd64', 'arm64'), ok('1', 'amd64', 'arm64')],
      arches: ['amd64', 'arm64'], keep: 2, picks: { amd64: ['3', '2'], arm64: ['2', '1'] }, missing: [], done: true,
    },
    {
      name: 'serials not complete upstream or gone are passed over', readings: [{ serial: '4', state: 'incomplete', reason: 'no SHA256SUMS yet' }, { serial: '3', state: 'gone' }, ok('2', 'amd64')],
      arches: ['amd64'], keep: 1, picks: { amd64: ['2'] }, missing: [], done: true,
    },
    { name: 'an arch no serial has is missing', readings: [ok('2', 'amd64'), ok('1', 'amd64')], arches: ['amd64', 's390x'], keep: 1, picks: { amd64: ['2'], s390x: [] }, missing: ['s390x'], done: false },
    { name: 'readings in any order', readings: [ok('20240605.9', 'amd64'), ok('20240605.10', 'amd64')], arches: ['amd64'], keep: 1, picks: { amd64: ['20240605.10'] }, missing: [], done: true },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const s = selectSerials(c.readings, c.arches, c.keep);
      assert.deepEqual(Object.fromEntries(s.picks), c.picks);
      assert.deepEqual(s.missing, c.missing);
      assert.equal(s.done, c.done);
    });
  }
});

describe('end of life verdicts', () => {
  test('released images of an EOL release are imported, dailies not; a listing mark counts like the table', () => {
    assert.deepEqual(endOfLife('plucky', 'release', at('2026-12-01')), { pastEol: true, eol: '2026-01-15', imported: true });
    assert.deepEqual(endOfLife('plucky', 'daily', at('2026-12-01')), { pastEol: true, eol: '2026-01-15', imported: false });
    assert.deepEqual(endOfLife('noble', 'daily', at('2026-12-01')), { pastEol: false, eol: '2029-05-31', imported: true });
    assert.deepEqual(endOfLife('noble', 'daily', at('2026-12-01'), { markedEol: true }), { pastEol: true, eol: '2029-05-31', imported: false });
    assert.deepEqual(endOfLife('noble', 'release', at('2026-12-01'), { sourceEol: '2026-11-01' }), { pastEol: true, eol: '2026-11-01', imported: true });
  });

  test('the END OF LIFE description of a release row is read from the listing', () => {
    const html = `<pre><img src="/icons/blank.gif" alt="Icon "> <a href="?C=N;O=D">Name</a>
<img src="/cdicons/folder.png" alt="[DIR]"> <a href="focal/">focal/</a>     2025-06-01 10:00    -   Ubuntu Server 20.04 LTS (Focal Fossa) daily builds [END OF LIFE - for reference only]
<img src="/cdicons/folder.png" alt="[DIR]"> <a href="noble/">noble/</a>     2026-11-20 04:11    -   Ubuntu Server 24.04 LTS (Noble Numbat) daily builds
<img src="/icons/unknown.gif" alt="[   ]"> <a href="x.img">x.img</a>     2026-11-20 04:11  584M  QCow2 UEFI/GPT Bootable disk image
</pre>`;
    const rows = parseListing(html, 'https://cloud-images.ubuntu.com/');
    assert.deepEqual(rows.map((r) => [r.name, r.description, r.sizeText]), [
      ['focal', 'Ubuntu Server 20.04 LTS (Focal Fossa) daily builds [END OF LIFE - for reference only]', undefined],
      ['noble', 'Ubuntu Server 24.04 LTS (Noble Numbat) daily builds', undefined],
      ['x.img', 'QCow2 UEFI/GPT Bootable disk image', '584M'],
    ]);
  });
});

describe('streams in the config', () => {
  test('the old keys are a one-stream shorthand for source.streams', () => {
    const short = validateConfig({ source: { channel: 'daily', variant: 'minimal', releases: ['24.04'], arches: ['arm64'] } }, 'x');
    const long = validateConfig({ source: { streams: [{ channel: 'daily', variant: 'minimal', releases: ['noble'], arches: ['arm64'] }] } }, 'x');
    assert.deepEqual(short.streams, long.streams);
    assert.deepEqual(short.streams, [{ id: 'daily/minimal', channel: 'daily', variant: 'minimal', releases: [{ codename: 'noble', version: '24.04' }], arches: ['arm64'] }]);
  });

  test('many streams, each with its releases and arches', () => {
    const c = validateConfig({
      source: {
        streams: [
          { channel: 'release', variant: 'server', releases: ['noble', 'jammy'], arches: ['amd64', 'arm64'] },
          { channel: 'release', variant: 'minimal', releases: ['noble'] },
          { channel: 'daily', releases: [26.04] },
        ],
      },
    }, 'x');
    assert.deepEqual(c.streams.map((s) => [s.id, s.releases.map((r) => r.codename), s.arches]), [
      ['release/server', ['noble', 'jammy'], ['amd64', 'arm64']],
      ['release/minimal', ['noble'], ['amd64']],
      ['daily/server', ['resolute'], ['amd64']],
    ]);
  });

  const bad: Array<[string, unknown, RegExp]> = [
    ['streams mixed with the shorthand keys', { source: { releases: ['noble'], streams: [{ releases: ['jammy'] }] } }, /source\.streams cannot be combined with source\.releases$/],
    ['a stream listed twice', { source: { streams: [{ releases: ['noble'] }, { channel: 'release', releases: ['jammy'] }] } }, /source\.streams\[1\]: stream release\/server is already listed as source\.streams\[0\]/],
    ['a stream without releases', { source: { streams: [{ channel: 'daily' }] } }, /source\.streams\[0\]\.releases: missing/],
    ['an unknown version in a stream', { source: { streams: [{ releases: ['99.10'] }] } }, /source\.streams\[0\]\.releases\[0\]: "99\.10" is neither a codename nor a known version/],
    ['a target naming a stream that is not configured', { targets: [{ name: 'a', type: 'directory', path: 'x', streams: ['daily/server'] }] },
      /targets\[0\]\.streams\[0\]: "daily\/server" is not a configured stream; configured: release\/server/],
    ['ubuntu_eol set by hand on a Glance target (the release table sets it)', { targets: [{ name: 'g', type: 'glance', properties: { ubuntu_eol: '2040-01-01' } }] }, /targets\[0\]\.properties.*reserved key/],
    ['eol: hide on a directory target', { targets: [{ name: 'a', type: 'directory', path: 'x', eol: 'hide' }] }, /targets\[0\]\.eol: a directory target cannot hide images/],
    ['an unknown eol policy', { targets: [{ name: 'a', type: 'directory', path: 'x', eol: 'purge' }] }, /targets\[0\]\.eol: "purge" is not allowed; allowed: keep, hide, delete/],
    ['a glance name template that cannot tell two streams apart',
      { source: { streams: [{ releases: ['noble'] }, { variant: 'minimal', releases: ['noble'] }] }, targets: [{ name: 'g', type: 'glance', nameTemplate: 'Ubuntu {version} {arch} {serial}' }] },
      /targets\[0\]\.nameTemplate: streams release\/server and release\/minimal would get the same image names/],
  ];
  for (const [name, raw, re] of bad) {
    test(`rejects ${name}`, () => assert.match(configError(raw), re));
  }

  test('the default Glance name tells streams apart and keeps the old name for release server images', () => {
    const c = validateConfig({ source: { streams: [{ releases: ['noble'] }, { variant: 'minimal', releases: ['noble'] }, { channel: 'daily', variant: 'minimal', releases: ['noble'] }] }, targets: [{ name: 'g', type: 'glance' }] }, 'x');
    const template = (c.targets[0] as GlanceTargetConfig).nameTemplate;
    const image = { version: '24.04', release: 'noble', arch: 'amd64', serial: '20261120' } as const;
    assert.equal(renderImageName(template, { ...image, channel: 'release', variant: 'server' }), 'Ubuntu 24.04 (noble) amd64 20261120');
    assert.equal(renderImageName(template, { ...image, channel: 'release', variant: 'minimal' }), 'Ubuntu 24.04 (noble) minimal amd64 20261120');
    assert.equal(renderImageName(template, { ...image, channel: 'daily', variant: 'minimal' }), 'Ubuntu 24.04 (noble) minimal daily amd64 20261120');
  });

  test('Glance images carry ubuntu_eol, channel and variant', () => {
    const c = validateConfig({ source: { verifySignature: false }, targets: [{ name: 'g', type: 'glance' }] }, 'x');
    const image: UpstreamImage = {
      channel: 'daily', variant: 'minimal', release: 'noble', version: '24.04', arch: 'amd64', serial: '20261120', fileName: 'f.img',
      url: 'https://x/f.img', sha256: 'a'.repeat(64), signed: true, supportEol: '2029-05-31',
    };
    const props = imageProperties(c.targets[0] as GlanceTargetConfig, image, image.sha256);
    assert.deepEqual([props.ubuntu_eol, props.cloudimg_sync_channel, props.cloudimg_sync_variant], ['2029-05-31', 'daily', 'minimal']);
  });
});

describe('plan across streams', () => {
  const image = (channel: UpstreamImage['channel'], variant: UpstreamImage['variant'], release = 'noble'): UpstreamImage => ({
    channel, variant, release, version: '24.04', arch: 'amd64', serial: '1', fileName: 'f.img', url: `https://x/${channel}/${variant}/${release}`, sha256: `${channel}${variant}${release}`, signed: true,
  });
  test('one action (one download) per image, to the targets that carry its stream and do not exclude its release', () => {
    const actions = planSync({
      upstream: [image('release', 'server'), image('release', 'minimal'), image('release', 'server', 'plucky')],
      images: [],
      targets: [{ name: 'all' }, { name: 'servers', streams: ['release/server'] }, { name: 'no-eol', excludeReleases: new Set(['plucky']) }],
      cachedKeys: new Set(),
    });
    assert.deepEqual(actions.map((a) => [a.key, a.publishTo]), [
      ['release/minimal/noble/amd64/1', ['all', 'no-eol']],
      ['release/server/noble/amd64/1', ['all', 'servers', 'no-eol']],
      ['release/server/plucky/amd64/1', ['all', 'servers']],
    ]);
  });
});

describe('retention of end-of-life releases', () => {
  const day = 86_400_000;
  const now = 100 * day;
  const pub = (release: string, serial: string, extra: Partial<PublishedImage> = {}): PublishedImage =>
    ({ ref: `${release}-${serial}`, release, arch: 'amd64', variant: 'server', channel: 'release', serial, pinned: false, ...extra });
  const policy = (eol: 'keep' | 'hide' | 'delete', hides = true): RetentionPolicy =>
    ({ keep: 2, hidesBeforeDelete: hides, hideGraceMs: 3 * day, nowMs: now, eol: { policy: eol, releases: new Set(['plucky']) } });
  const images = [pub('noble', '2'), pub('noble', '1'), pub('plucky', '2'), pub('plucky', '1', { hiddenAtMs: now - 4 * day }), pub('plucky', '0', { pinned: true })];
  const cases: Array<[string, RetentionPolicy, { hide: string[]; remove: string[]; spared: string[] }]> = [
    ['keep: EOL images follow keep like any other', policy('keep'), { hide: [], remove: [], spared: ['plucky-0'] }],
    ['hide: every EOL image is hidden, none deleted while within keep', policy('hide'), { hide: ['plucky-2'], remove: [], spared: ['plucky-0'] }],
    ['delete: hidden first, deleted after the grace', policy('delete'), { hide: ['plucky-2'], remove: ['plucky-1'], spared: ['plucky-0'] }],
    ['delete on a target that cannot hide: deleted at once', policy('delete', false), { hide: [], remove: ['plucky-2', 'plucky-1'], spared: ['plucky-0'] }],
  ];
  for (const [name, p, want] of cases) {
    test(name, () => {
      const d = decideRetention(images, p);
      assert.deepEqual({ hide: d.hide.map((i) => i.ref), remove: d.remove.map((i) => i.ref), spared: d.spared.map((s) => s.image.ref) }, want);
      for (const i of [...d.hide, ...d.remove]) assert.ok(d.endOfLife.has(i), `${i.ref} is retired for end of life`);
    });
  }
});

describe('end of life from the simplestreams source', () => {
  test("the product's support_eol wins over the table; a daily past it is not imported", async () => {
    // The table says resolute is supported until 2031; this tree's metadata says 2026-06-01.
    const mirror = await startMirror({ releases: [{ codename: 'resolute', serials: ['20261120'], eol: '2026-06-01' }, { codename: 'noble', serials: ['20261120'] }] });
    try {
      const get = async (url: string) => {
        const res = await getText(url, { retries: 0 });
        if (res.status !== 200) throw new Error(`unexpected ${res.status}`);
        return { body: res.body, changed: true };
      };
      const common = {
        releases: [resolveRelease('resolute')!, resolveRelease('noble')!], arches: ['amd64'] as Arch[], ftype: DEFAULT_FTYPE,
        keyring: { id: 'mirror', load: () => loadKeyring(mirror.keyringPath) }, get, log: createLogger({ level: 'silent' }), keep: 1, nowMs: at('2026-11-21'),
      };
      const released = await discoverFromStreams({ ...common, rootUrl: mirror.streamsUrl('release'), channel: 'release', variant: 'server' });
      assert.deepEqual(released.failures, []);
      assert.deepEqual(released.eol, [{ stream: 'release/server', channel: 'release', variant: 'server', release: 'resolute', eol: '2026-06-01', gone: false, imported: true }]);
      assert.deepEqual(released.images.map((i) => [i.release, i.supportEol]), [['resolute', '2026-06-01'], ['noble', '2029-05-31']]);
      const daily = await discoverFromStreams({ ...common, rootUrl: mirror.streamsUrl('daily'), channel: 'daily', variant: 'server' });
      assert.deepEqual(daily.eol.map((e) => [e.release, e.imported]), [['resolute', false]]);
      assert.deepEqual(daily.images.map((i) => i.release), ['noble']);
    } finally {
      await mirror.close();
    }
  });
});

describe('rollback refusal with keep above 1', () => {
  const image = (serial: string): UpstreamImage => ({
    channel: 'release', variant: 'server', release: 'noble', version: '24.04', arch: 'amd64', serial, fileName: 'f.img', url: `https://x/${serial}`, sha256: serial, signed: true,
  });
  const published = (serial: string): ImageRecord => ({
    ...image(serial), id: 1, key: `release/server/noble/amd64/${serial}`, sizeBytes: 1, state: 'verified', localPath: null, digests: null,
    errorCode: null, error: null, attempts: 0, discoveredAt: '', updatedAt: '',
    publications: { t: { target: 't', state: 'published', ref: 'r', errorCode: null, error: null, attempts: 1, hiddenAt: null, updatedAt: '' } },
  } as ImageRecord);
  test('the serials before the newest (keep: 2) are taken; a series whose newest offered serial is older than the published one is refused whole', () => {
    const kept = refuseRollbacks([image('20261120'), image('20261110')], [published('20261120'), published('20261110')]);
    assert.deepEqual([kept.accepted.map((i) => i.serial), kept.refused.length], [['20261120', '20261110'], 0]);
    const backfill = refuseRollbacks([image('20261120'), image('20261110')], [published('20261120')]);
    assert.deepEqual(backfill.accepted.map((i) => i.serial), ['20261120', '20261110'], 'a keep raised from 1 to 2 fetches the previous serial');
    const rolledBack = refuseRollbacks([image('20261110'), image('20261101')], [published('20261120')]);
    assert.deepEqual([rolledBack.accepted.length, rolledBack.refused.map((r) => r.image.serial)], [0, ['20261110', '20261101']]);
  });
});
