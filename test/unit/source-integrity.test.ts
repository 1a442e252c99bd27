import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { LISTING_MAX_ROWS, parseListing } from '../../src/source/listing/parse-listing.js';
import { parseSha256Sums } from '../../src/source/listing/sha256sums.js';

const MiB = 1024 * 1024;

describe('SHA256SUMS integrity', () => {
  test('refuses a list naming one file twice with different hashes (SUMS_AMBIGUOUS), whichever comes last', () => {
    const a = 'a'.repeat(64);
    const b = 'b'.repeat(64);
    for (const text of [`${a} *x.img\n${b} *x.img\n`, `${b} *x.img\n${a} *x.img\n`]) {
      assert.throws(() => parseSha256Sums(text, 'u/SHA256SUMS'),
        (err: Error & { code?: string }) => err.code === 'SUMS_AMBIGUOUS' && err.message.includes('"x.img"') && err.message.includes('u/SHA256SUMS'));
    }
  });

  test('accepts one file listed twice with the same hash (in either case)', () => {
    const sums = parseSha256Sums(`${'a'.repeat(64)} *x.img\n${'A'.repeat(64)}  x.img\n`, 'u');
    assert.equal(sums.get('x.img'), 'a'.repeat(64));
  });
});

describe('listing parser memory', () => {
  test('a 4 MiB listing of dense links stays within the 120 MiB budget (no DOM is built)', async () => {
    const script = fileURLToPath(new URL('../support/listing-rss.ts', import.meta.url));
    const { stdout } = await promisify(execFile)(process.execPath, ['--expose-gc', '--max-semi-space-size=1', '--import', 'tsx', script]);
    const m = JSON.parse(stdout) as { listingBytes: number; rssBeforeBytes: number; maxRssBytes: number; outcome: string };
    assert.ok(m.listingBytes >= 4 * MiB - 128);
    assert.equal(m.outcome, 'LISTING_TOO_LARGE');
    assert.ok(m.maxRssBytes <= 120 * MiB, `peak RSS ${(m.maxRssBytes / MiB).toFixed(1)} MiB (before parsing ${(m.rssBeforeBytes / MiB).toFixed(1)} MiB)`);
  });

  test(`refuses a page with more than ${LISTING_MAX_ROWS} rows, naming it (LISTING_TOO_LARGE)`, () => {
    const rows = Array.from({ length: LISTING_MAX_ROWS + 1 }, (_, i) => `<a href="${20000000 + i}/">x</a> 2026-01-01 00:00 -\n`).join('');
    assert.throws(() => parseListing(`<pre>${rows}</pre>`, 'https://m.example/noble/'),
      (err: Error & { code?: string }) => err.code === 'LISTING_TOO_LARGE' && err.message.includes('https://m.example/noble/'));
    const fewer = rows.split('\n').slice(0, LISTING_MAX_ROWS).join('\n');
    assert.equal(parseListing(`<pre>${fewer}\n</pre>`, 'https://m.example/noble/').length, LISTING_MAX_ROWS);
  });

  test('links that are not rows (sort links, deeper paths, other hosts) cost nothing and count for nothing', () => {
    const junk = Array.from({ length: LISTING_MAX_ROWS + 5 }, (_, i) => `<a href="?C=${i}">s</a><a href="deep/${i}/">d</a><a href="http://x.example/${i}/">o</a>\n`).join('');
    const entries = parseListing(`<pre>${junk}<a href="release-20260101/">r</a>  2026-01-01 10:00  -\n</pre>`, 'https://m.example/releases/noble/');
    assert.deepEqual(entries.map((e) => [e.name, e.modified?.toISOString()]), [['release-20260101', '2026-01-01T10:00:00.000Z']]);
  });
});
