import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { ProgressBars, formatBytes, formatDuration } from '../../src/daemon/progress-bars.js';
import type { EventName, EventRecord } from '../../src/events.js';

const IMAGE = { channel: 'release', variant: 'server', release: 'noble', arch: 'amd64', serial: '20261120' };
const ev = (event: EventName, fields: Record<string, unknown> = {}): EventRecord => ({ level: 'info', time: '', event, ...IMAGE, ...fields });

function world() {
  let now = 0;
  const written: string[] = [];
  const bars = new ProgressBars({ write: (s: string) => { written.push(s); return true; }, columns: 120 }, () => now);
  return { bars, written, tick: (ms: number) => { now += ms; } };
}

describe('terminal progress bars drawn from log events', () => {
  test('a download shows bytes, percentage, rate and an ETA that counts down between events', () => {
    const { bars, tick } = world();
    bars.observe(ev('image.download.started'));
    assert.match(bars.render(), /^noble amd64 20261120  downloading  0:00$/);
    tick(4_000);
    bars.observe(ev('image.download.progress', { bytes: 4 * 1024 * 1024, totalBytes: 10 * 1024 * 1024 }));
    assert.equal(bars.render(), 'noble amd64 20261120  [##########..............]  40%  4.0 MiB/10.0 MiB  1.0 MiB/s  ETA 0:06');
    tick(2_000);
    assert.match(bars.render(), /ETA 0:04$/);
    bars.observe(ev('image.download.done', { bytes: 10 * 1024 * 1024 }));
    assert.equal(bars.render(), '');
  });

  test('a resumed download measures its rate from where it resumed', () => {
    const { bars, tick } = world();
    bars.observe(ev('image.download.started'));
    bars.observe(ev('http.download.resume', { fromBytes: 8 * 1024 * 1024, totalBytes: 10 * 1024 * 1024 }));
    tick(1_000);
    bars.observe(ev('image.download.progress', { bytes: 9 * 1024 * 1024, totalBytes: 10 * 1024 * 1024 }));
    assert.match(bars.render(), /90%  9\.0 MiB\/10\.0 MiB  1\.0 MiB\/s  ETA 0:01$/);
  });

  test('a publication shows its target and elapsed time', () => {
    const { bars, tick } = world();
    bars.observe(ev('image.publish.started', { target: 'glance', bytes: 600 * 1024 * 1024 }));
    tick(75_000);
    assert.equal(bars.render(), 'noble amd64 20261120 -> glance  publishing 600.0 MiB  1:15');
    bars.observe(ev('image.publish.failed', { target: 'glance' }));
    assert.equal(bars.render(), '');
  });

  test('an upload that reports progress shows bytes, rate and ETA', () => {
    const { bars, tick } = world();
    bars.observe(ev('image.publish.started', { target: 'glance', bytes: 100 * 1024 * 1024 }));
    tick(2_000);
    bars.observe(ev('image.publish.progress', { target: 'glance', bytes: 50 * 1024 * 1024, totalBytes: 100 * 1024 * 1024 }));
    assert.match(bars.render(), /^noble amd64 20261120 -> glance  uploading  \[.*\]  50%  50\.0 MiB\/100\.0 MiB  25\.0 MiB\/s  ETA 0:02$/);
    assert.equal(bars.shows(ev('image.publish.progress', { target: 'glance', bytes: 1 })), true);
  });

  test('redraw rewrites one line in place; clear erases it; progress events are not printed as log lines', () => {
    const { bars, written } = world();
    bars.observe(ev('image.download.started'));
    bars.redraw();
    bars.clear();
    bars.clear();
    assert.deepEqual(written, ['\r\x1b[Knoble amd64 20261120  downloading  0:00', '\r\x1b[K']);
    assert.equal(bars.shows(ev('image.download.progress')), true);
    assert.equal(bars.shows(ev('image.download.done')), false);
    bars.observe(ev('sync.run.finished'));
  });

  test('units', () => {
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(3.5 * 2 ** 30), '3.5 GiB');
    assert.equal(formatDuration(59_400), '0:59');
    assert.equal(formatDuration(3_725_000), '1:02:05');
  });
});
