import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { cronExpressionValid, failureRetryDelayMs } from '../../src/daemon/schedule.js';
import { validateConfig } from '../../src/config/load.js';

const MIN = 60_000;
const policy = { baseDelayMs: MIN, maxDelayMs: 60 * MIN };

describe('failed cycles are retried earlier than the schedule, with backoff', () => {
  const cases: Array<[failures: number, msToNext: number | null, expected: number | undefined]> = [
    [0, 6 * 60 * MIN, undefined],
    [1, 6 * 60 * MIN, MIN],
    [2, 6 * 60 * MIN, 2 * MIN],
    [4, 6 * 60 * MIN, 8 * MIN],
    [7, 6 * 60 * MIN, 60 * MIN],
    [50, 6 * 60 * MIN, 60 * MIN],
    [3, 3 * MIN, undefined],
    [1, null, MIN],
  ];
  for (const [failures, msToNext, expected] of cases) {
    test(`after ${failures} failure(s) with the next tick in ${msToNext === null ? 'never' : `${msToNext / MIN} min`}: ${expected === undefined ? 'no extra retry' : `${expected / MIN} min`}`, () => {
      assert.equal(failureRetryDelayMs(failures, policy, msToNext), expected);
    });
  }
});

describe('schedule config', () => {
  test('cron expressions with 5 or 6 fields are valid, nonsense is not', () => {
    assert.equal(cronExpressionValid('17 */6 * * *'), true);
    assert.equal(cronExpressionValid('*/5 * * * * *'), true);
    assert.equal(cronExpressionValid('61 * * * *'), false);
    assert.equal(cronExpressionValid('hourly'), false);
  });

  test('defaults: four cycles a day at minute 17, run on start, 30 s grace, health on 127.0.0.1:9465', () => {
    const config = validateConfig({}, 'test');
    assert.equal(config.schedule, '17 */6 * * *');
    assert.equal(config.runOnStart, true);
    assert.equal(config.shutdownGraceMs, 30_000);
    assert.deepEqual(config.health, { enabled: true, listen: '127.0.0.1', port: 9465, maxAgeHours: 24, maxCycleHours: 6 });
    assert.deepEqual(config.failureRetry, { baseDelayMs: 60_000, maxDelayMs: 3_600_000 });
  });

  test('an invalid schedule is a config error naming the key', () => {
    assert.throws(() => validateConfig({ schedule: '* * *' }, 'test'), /schedule: "\* \* \*": not a valid cron expression/);
  });
});
