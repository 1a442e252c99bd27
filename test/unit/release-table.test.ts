import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { TABLE_PATH, formatReleaseTable, parseDistroInfoCsv } from '../../scripts/update-release-table.js';
import { releaseSupport, resolveRelease } from '../../src/source/releases.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const SAMPLE_CSV = path.join(root, 'test/fixtures/samples/distro-info-ubuntu.csv');
const at = (day: string): number => Date.parse(`${day}T12:00:00Z`);

describe('Ubuntu release table', () => {
  test('the shipped table is exactly what the rebuild script makes of distro-info-data (no hand edits, not stale)', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'release-table-'));
    try {
      const out = path.join(dir, 'table.ts');
      const said = execFileSync(process.execPath, ['--import', 'tsx', path.join(root, 'scripts/update-release-table.ts'), SAMPLE_CSV, out], { cwd: root, encoding: 'utf8' });
      assert.match(said, /wrote 45 releases \(newest: stonking 26\.10\)/);
      assert.equal(readFileSync(out, 'utf8'), readFileSync(TABLE_PATH, 'utf8'));
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('takes the server end of life where a release has one, and the ESM date of LTS releases', () => {
    const rows = parseDistroInfoCsv(readFileSync(SAMPLE_CSV, 'utf8'));
    const hardy = rows.find((r) => r.codename === 'hardy');
    assert.deepEqual(hardy, { codename: 'hardy', version: '8.04', name: 'Hardy Heron', lts: true, released: '2008-04-24', eol: '2013-05-09' });
    const noble = rows.find((r) => r.codename === 'noble');
    assert.deepEqual(noble, { codename: 'noble', version: '24.04', name: 'Noble Numbat', lts: true, released: '2024-04-25', eol: '2029-05-31', eolEsm: '2034-04-25' });
    assert.equal(rows.find((r) => r.codename === 'plucky')?.eolEsm, undefined);
  });

  test('refuses a CSV that is not distro-info data, naming the cause', () => {
    assert.throws(() => parseDistroInfoCsv('a,b,c\n1,2,3\n', 'x.csv'), /x\.csv: no "version" column in the header/);
    assert.throws(() => parseDistroInfoCsv('version,codename,series,created,release,eol\n24.04 LTS,Noble Numbat,noble,2023-10-12,2024-04-25,soon\n', 'x.csv'),
      /x\.csv: line 2: eol "soon" is not a YYYY-MM-DD date/);
  });

  test('a release newer than the shipped table is added by a rebuild from a newer CSV', () => {
    const csv = `${readFileSync(SAMPLE_CSV, 'utf8').trimEnd()}\n27.04,Test Tapir,tapir,2026-10-15,2027-04-22,2028-01-20\n`;
    const table = formatReleaseTable(parseDistroInfoCsv(csv));
    assert.match(table, /\{ codename: 'tapir', version: '27\.04', name: 'Test Tapir', lts: false, released: '2027-04-22', eol: '2028-01-20' \},\n\];/);
    assert.equal(resolveRelease('27.04'), undefined, 'the shipped table does not know it yet');
  });
});

describe('release support', () => {
  test('a release is past end of life from its EOL day on (UTC)', () => {
    assert.deepEqual(releaseSupport('plucky', at('2026-01-14')), { eol: '2026-01-15', eolOrigin: 'table', pastEol: false });
    assert.equal(releaseSupport('plucky', Date.parse('2026-01-15T00:00:00Z')).pastEol, true);
    assert.deepEqual(releaseSupport('focal', at('2026-12-01')), { eol: '2025-05-29', eolEsm: '2030-04-23', eolOrigin: 'table', pastEol: true });
    assert.equal(releaseSupport('noble', at('2026-12-01')).pastEol, false);
  });

  test("the source's own end-of-life date wins over the table", () => {
    assert.deepEqual(releaseSupport('noble', at('2026-12-01'), '2026-11-30'), { eol: '2026-11-30', eolEsm: '2034-04-25', eolOrigin: 'source', pastEol: true });
  });

  test('a codename neither knows is never called end of life', () => {
    assert.deepEqual(releaseSupport('tapir', at('2040-01-01')), { pastEol: false });
  });
});
