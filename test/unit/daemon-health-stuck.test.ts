import assert from 'node:assert/strict';
import { test } from 'node:test';
import { HealthTracker, evaluateHealth } from '../../src/daemon/health.js';
import { validateConfig } from '../../src/config/load.js';

const NOW = Date.parse('2026-11-27T12:00:00.000Z');
const HOUR = 3_600_000;
const iso = (ms: number) => new Date(ms).toISOString();

test('/healthz says stuck (503) while a cycle has been running longer than health.maxCycleHours, even after a fresh success', () => {
  const tracker = new HealthTracker(24, NOW - 10 * HOUR, 6);
  tracker.observe({ level: 'info', time: iso(NOW - 8 * HOUR), event: 'sync.run.finished', result: 'ok', runId: 1, errors: [] });
  tracker.observe({ level: 'info', time: iso(NOW - 7 * HOUR), event: 'sync.run.started', runId: 2 });
  assert.equal(tracker.report(NOW - 2 * HOUR).status, 'ok', 'five hours in: still within the bound');
  const report = tracker.report(NOW);
  assert.equal(report.healthy, false);
  assert.equal(report.status, 'stuck');
  assert.match(report.reason, /running since 2026-11-27T05:00:00.000Z has taken more than 6 h/);
  tracker.observe({ level: 'info', time: iso(NOW), event: 'sync.run.finished', result: 'ok', runId: 2, errors: [] });
  assert.equal(tracker.report(NOW).status, 'ok', 'the cycle ended: no longer stuck');
});

test('health.maxCycleHours defaults to 6 and a running cycle within it changes nothing', () => {
  assert.equal(validateConfig({}, 'x').health.maxCycleHours, 6);
  const report = evaluateHealth({
    cycleRunning: true, cycleStartedAt: iso(NOW - HOUR), startedAtMs: NOW - 2 * HOUR, nowMs: NOW, maxAgeHours: 24, maxCycleHours: 6,
    lastSuccessAt: iso(NOW - 90 * 60_000), lastCycle: { runId: 1, result: 'ok', finishedAt: iso(NOW - 90 * 60_000) },
  });
  assert.equal(report.status, 'ok');
});
