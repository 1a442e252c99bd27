import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { HealthTracker, evaluateHealth, type HealthInput } from '../../src/daemon/health.js';
import type { RunRecord } from '../../src/state/store.js';

const NOW = Date.parse('2026-11-27T12:00:00.000Z');
const HOUR = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();

describe('/healthz verdict', () => {
  const base: HealthInput = { cycleRunning: false, startedAtMs: NOW - 10 * HOUR, nowMs: NOW, maxAgeHours: 24 };
  const cases: Array<{ name: string; input: Partial<HealthInput>; healthy: boolean; status: string; reason: RegExp }> = [
    {
      name: 'the last cycle succeeded within maxAgeHours: healthy',
      input: { lastCycle: { runId: 4, result: 'ok', finishedAt: iso(NOW - HOUR) }, lastSuccessAt: iso(NOW - HOUR) },
      healthy: true, status: 'ok', reason: /last cycle succeeded at 2026-11-27T11:00/,
    },
    {
      name: 'the last cycle failed: unhealthy with its error, however recent the success before it',
      input: { lastCycle: { runId: 5, result: 'failed', finishedAt: iso(NOW - HOUR), error: 'noble: HTTP_500: GET ... answered 500' }, lastSuccessAt: iso(NOW - 2 * HOUR) },
      healthy: false, status: 'failing', reason: /^last cycle \(run 5\) failed at .*: noble: HTTP_500/,
    },
    {
      name: 'the last success is older than maxAgeHours: stale',
      input: { lastCycle: { runId: 4, result: 'ok', finishedAt: iso(NOW - 30 * HOUR) }, lastSuccessAt: iso(NOW - 30 * HOUR) },
      healthy: false, status: 'stale', reason: /more than 24 h ago/,
    },
    {
      name: 'nothing finished yet, started recently: starting counts as healthy',
      input: {}, healthy: true, status: 'starting', reason: /no cycle has finished yet/,
    },
    {
      name: 'nothing ever succeeded since a start longer ago than maxAgeHours: stale',
      input: { startedAtMs: NOW - 25 * HOUR }, healthy: false, status: 'stale', reason: /no cycle has succeeded in the 24 h/,
    },
  ];
  for (const c of cases) {
    test(c.name, () => {
      const report = evaluateHealth({ ...base, ...c.input });
      assert.equal(report.healthy, c.healthy);
      assert.equal(report.status, c.status);
      assert.match(report.reason, c.reason);
    });
  }
});

describe('health tracker fed by events and by earlier runs', () => {
  const run = (id: number, result: RunRecord['result'], finishedAt: string | null, error: string | null = null): RunRecord =>
    ({ id, result, finishedAt, error, startedAt: '', discovered: 0, downloaded: 0, published: 0, retired: 0, failed: 0, bytesDown: 0 });

  test('a failure recorded by an earlier process is reported after a restart; aborted runs are skipped', () => {
    const tracker = new HealthTracker(24, NOW);
    tracker.seedFromRuns([run(7, 'aborted', iso(NOW - 60_000)), run(6, 'failed', iso(NOW - HOUR), 'disk full'), run(5, 'ok', iso(NOW - 2 * HOUR))]);
    const report = tracker.report(NOW);
    assert.equal(report.status, 'failing');
    assert.match(report.reason, /run 6.*disk full/);
    assert.equal(report.lastSuccessAt, iso(NOW - 2 * HOUR));
  });

  test('sync.run.finished events flip the verdict both ways', () => {
    const tracker = new HealthTracker(24, NOW);
    const finished = (result: string, runId: number, errors: string[] = []) =>
      tracker.observe({ level: 'info', time: iso(NOW), event: 'sync.run.finished', result, runId, errors });
    tracker.observe({ level: 'info', time: iso(NOW), event: 'sync.run.started' });
    assert.equal(tracker.report(NOW).cycleRunning, true);
    finished('failed', 1, ['jammy: LISTING_NO_SERIALS']);
    assert.deepEqual([tracker.report(NOW).healthy, tracker.report(NOW).cycleRunning], [false, false]);
    assert.match(tracker.report(NOW).reason, /LISTING_NO_SERIALS/);
    finished('aborted', 2);
    assert.equal(tracker.report(NOW).healthy, false, 'a shutdown proves nothing either way');
    finished('ok', 3);
    assert.equal(tracker.report(NOW).status, 'ok');
  });

  test('a cycle that could not record itself (daemon.cycle.failed) is a failure', () => {
    const tracker = new HealthTracker(24, NOW);
    tracker.observe({ level: 'error', time: iso(NOW), event: 'daemon.cycle.failed', err: 'STATE_WRITE_FAILED: disk full' });
    assert.match(tracker.report(NOW).reason, /STATE_WRITE_FAILED/);
  });
});
