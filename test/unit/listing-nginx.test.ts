import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { parseListing } from '../../src/source/listing/parse-listing.js';

/** Pages captured from nginx 1.22.1 (Debian 12) with `autoindex on`, serving a mirror target's output. */
const page = (name: string) => readFileSync(new URL(`../fixtures/samples/${name}`, import.meta.url), 'utf8');

describe('parseListing on nginx autoindex pages', () => {
  test('reads the serial folders of a release, skipping the parent link', () => {
    const entries = parseListing(page('nginx-autoindex-series.html'), 'http://mirror.internal/releases/noble/');
    assert.deepEqual(entries.map((e) => [e.name, e.isDirectory, e.url]), [
      ['release-20261101', true, 'http://mirror.internal/releases/noble/release-20261101/'],
      ['release-20261120', true, 'http://mirror.internal/releases/noble/release-20261120/'],
    ]);
    assert.equal(entries[0]!.modified?.toISOString(), '2026-12-01T00:59:00.000Z');
    assert.equal(entries[0]!.sizeText, undefined, 'a folder has no size ("-")');
  });

  test('reads files with their exact byte sizes and dates', () => {
    const entries = parseListing(page('nginx-autoindex-serial.html'), 'http://mirror.internal/releases/noble/release-20261120/');
    assert.deepEqual(entries.map((e) => [e.name, e.isDirectory, e.sizeText]), [
      ['SHA256SUMS', false, '656'],
      ['SHA256SUMS.gpg', false, '322'],
      ['ubuntu-24.04-server-cloudimg-amd64.img', false, '524288'],
      ['ubuntu-24.04-server-cloudimg-arm64.img', false, '524288'],
    ]);
    assert.ok(entries.every((e) => e.modified instanceof Date && !Number.isNaN(e.modified.getTime())));
  });

  test('takes names from the links, not the text nginx cuts at 50 columns, and decodes %3A', () => {
    const entries = parseListing(page('nginx-autoindex-streams.html'), 'http://mirror.internal/streams/v1/');
    assert.deepEqual(entries.map((e) => e.name), [
      'com.ubuntu.cloud:released:azure-download-archive.sjson',
      'com.ubuntu.cloud:released:download.json',
      'com.ubuntu.cloud:released:download.sjson',
      'index.json',
      'index.sjson',
    ]);
    assert.equal(entries[2]!.url, 'http://mirror.internal/streams/v1/com.ubuntu.cloud%3Areleased%3Adownload.sjson');
    assert.equal(entries[0]!.sizeText, '3');
  });
});
