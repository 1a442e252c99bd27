import assert from 'node:assert/strict';
import { validateConfig } from '../../src/config/load.js';

/** The message validateConfig throws for `raw`; fails the test when it accepts it. */
export function configError(raw: unknown): string {
  try {
    validateConfig(raw, 'test.yaml');
  } catch (err) {
    return (err as Error).message;
  }
  assert.fail('expected a config error');
}
