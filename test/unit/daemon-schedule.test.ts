import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, test } from 'node:test';
import {
  INSTALL_ID_FILE, cronExpressionValid, failureRetryDelayMs, installSchedule, readInstallId, resolveSchedule,
} from '../../src/daemon/schedule.js';
import { validateConfig } from '../../src/config/load.js';
import type { SyncError } from '../../src/errors.js';

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

  test('defaults: no schedule (hourly at the install\'s minute), run on start, 30 s grace, health on 127.0.0.1:9465', () => {
    const config = validateConfig({}, 'test');
    assert.equal(config.schedule, undefined);
    assert.equal(config.runOnStart, true);
    assert.equal(config.shutdownGraceMs, 30_000);
    assert.deepEqual(config.health, { enabled: true, listen: '127.0.0.1', port: 9465, maxAgeHours: 24, maxCycleHours: 6 });
    assert.deepEqual(config.failureRetry, { baseDelayMs: 60_000, maxDelayMs: 3_600_000 });
  });

  test('an invalid schedule is a config error naming the key', () => {
    assert.throws(() => validateConfig({ schedule: '* * *' }, 'test'), /schedule: "\* \* \*": not a valid cron expression/);
  });
});

describe('the default schedule: hourly, at a minute fixed per install', () => {
  const withStateDir = (fn: (dir: string) => void) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'cloudimg-schedule-'));
    try {
      fn(dir);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };

  test('an install id gives one hourly second-and-minute expression, the same every time', () => {
    const expression = installSchedule('0123456789abcdef0123456789abcdef');
    assert.match(expression, /^([0-9]|[1-5][0-9]) ([0-9]|[1-5][0-9]) \* \* \* \*$/);
    assert.equal(installSchedule('0123456789abcdef0123456789abcdef'), expression);
    assert.equal(cronExpressionValid(expression), true);
  });

  test('installs spread over the hour: 600 random ids land on more than 45 distinct minutes', () => {
    const minutes = new Set<string>();
    for (let i = 0; i < 600; i++) minutes.add(installSchedule(i.toString(16).padStart(32, '0')).split(' ')[1]!);
    assert.ok(minutes.size > 45, `only ${minutes.size} distinct minutes`);
  });

  test('the id is made once in stateDir and read back: the schedule survives restarts', () => withStateDir((dir) => {
    const first = readInstallId(dir);
    assert.match(first, /^[0-9a-f]{32}$/);
    assert.equal(readFileSync(path.join(dir, INSTALL_ID_FILE), 'utf8').trim(), first);
    assert.equal(readInstallId(dir), first);
    assert.equal(resolveSchedule(undefined, dir), installSchedule(first));
  }));

  test('another stateDir (another install) gets its own id', () => withStateDir((a) => withStateDir((b) => {
    assert.notEqual(readInstallId(a), readInstallId(b));
  })));

  test('a configured schedule wins and nothing is written to stateDir', () => withStateDir((dir) => {
    assert.equal(resolveSchedule('17 */6 * * *', dir), '17 */6 * * *');
    assert.throws(() => readFileSync(path.join(dir, INSTALL_ID_FILE)), /ENOENT/);
  }));

  test('a symlink in place of the id file is refused, its target left alone', () => withStateDir((dir) => {
    const elsewhere = path.join(dir, 'elsewhere');
    writeFileSync(elsewhere, 'not ours\n');
    symlinkSync(elsewhere, path.join(dir, INSTALL_ID_FILE));
    assert.throws(() => readInstallId(dir), (err: Error & { code?: string }) => err.code === 'INSTALL_ID_INVALID' && /is a symlink/.test(err.message));
    assert.equal(readFileSync(elsewhere, 'utf8'), 'not ours\n');
  }));

  test('a damaged id file is an error naming the file and the cure, not a silent new minute', () => withStateDir((dir) => {
    writeFileSync(path.join(dir, INSTALL_ID_FILE), 'garbage\n');
    assert.throws(() => readInstallId(dir), (err: SyncError) =>
      /install-id does not hold 32 hex digits \(fix: delete .*install-id/.test(err.oneLine()));
  }));
});
