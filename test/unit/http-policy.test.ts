import assert from 'node:assert/strict';
import { test } from 'node:test';
import { validateConfig } from '../../src/config/load.js';
import { HTTP_DEFAULTS, retryOptionsFor } from '../../src/fetch/http-client.js';

test('one set of HTTP defaults: the config schema and a fetch without settings retry and time out alike', () => {
  const http = validateConfig({}, 'defaults').http;
  const retry = retryOptionsFor('https://example.test/x', {});
  assert.deepEqual(
    { retries: retry.retries, retryBaseDelayMs: retry.baseDelayMs, retryMaxDelayMs: retry.maxDelayMs },
    { retries: http.retries, retryBaseDelayMs: http.retryBaseDelayMs, retryMaxDelayMs: http.retryMaxDelayMs },
  );
  for (const key of ['connectTimeoutMs', 'idleTimeoutMs', 'retries', 'retryBaseDelayMs', 'retryMaxDelayMs'] as const) {
    assert.equal(http[key], HTTP_DEFAULTS[key], key);
  }
});
