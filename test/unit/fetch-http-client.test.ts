import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { createServer, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { HttpStatusError, SyncError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { USER_AGENT, backoffDelayMs, createHttpClient, withRetries } from '../../src/fetch/http-client.js';

const quick = { baseDelayMs: 1, maxDelayMs: 5 };

function networkError(code: string): Error {
  return Object.assign(new Error(`socket said ${code}`), { code });
}

describe('backoffDelayMs', () => {
  test('doubles the ceiling per attempt and jitters below it', () => {
    assert.equal(backoffDelayMs(1, 100, 10_000, () => 1), 100);
    assert.equal(backoffDelayMs(2, 100, 10_000, () => 1), 200);
    assert.equal(backoffDelayMs(4, 100, 10_000, () => 1), 800);
    assert.equal(backoffDelayMs(4, 100, 10_000, () => 0.5), 400);
    assert.equal(backoffDelayMs(4, 100, 10_000, () => 0), 0);
  });

  test('never exceeds the cap, however many attempts', () => {
    assert.equal(backoffDelayMs(50, 100, 30_000, () => 1), 30_000);
    for (let attempt = 1; attempt < 100; attempt++) assert.ok(backoffDelayMs(attempt, 500, 30_000) <= 30_000);
  });
});

describe('withRetries', () => {
  test('retries network errors and 5xx, reporting each retry, until one attempt succeeds', async () => {
    const failures = [networkError('ECONNRESET'), new HttpStatusError('http://x/', 503), new HttpStatusError('http://x/', 429)];
    const retried: [string | undefined, number][] = [];

    const result = await withRetries(
      async (attempt) => {
        const failure = failures[attempt - 1];
        if (failure) throw failure;
        return `done on ${attempt}`;
      },
      { retries: 5, ...quick, onRetry: (err, attempt) => retried.push([(err as { code?: string }).code, attempt]) },
    );

    assert.equal(result, 'done on 4');
    assert.deepEqual(retried, [['ECONNRESET', 1], ['HTTP_503', 2], ['HTTP_429', 3]]);
  });

  test('does not retry what isRetryable rejects', async () => {
    let calls = 0;
    const notFound = new HttpStatusError('http://x/', 404);

    await assert.rejects(withRetries(async () => {
      calls++;
      throw notFound;
    }, { retries: 5, ...quick }), notFound);
    assert.equal(calls, 1);
  });

  test('wraps a network error that outlives its retries in a SyncError that keeps its code', async () => {
    let calls = 0;
    const err = await withRetries(async () => {
      calls++;
      throw networkError('UND_ERR_SOCKET');
    }, { retries: 2, ...quick, url: 'http://mirror/x.img' }).catch((e: unknown) => e);

    assert.equal(calls, 3);
    assert.ok(err instanceof SyncError);
    assert.equal(err.code, 'UND_ERR_SOCKET');
    assert.equal(err.retryable, true);
    assert.match(err.message, /^GET http:\/\/mirror\/x\.img failed after 3 attempts: UND_ERR_SOCKET: socket said UND_ERR_SOCKET$/);
  });

  test('logs every retry as http.retry with url, attempt, delay and code', async () => {
    const events: Record<string, unknown>[] = [];
    const log = createLogger({
      destination: new Writable({
        write(chunk: Buffer, _encoding, done) {
          events.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
          done();
        },
      }),
    });
    let calls = 0;

    await withRetries(async () => {
      if (++calls < 3) throw networkError('ETIMEDOUT');
    }, { retries: 3, ...quick, log, url: 'http://mirror/SHA256SUMS' });

    assert.deepEqual(
      events.map(({ event, url, attempt, code }) => ({ event, url, attempt, code })),
      [1, 2].map((attempt) => ({ event: 'http.retry', url: 'http://mirror/SHA256SUMS', attempt, code: 'ETIMEDOUT' })),
    );
    assert.ok(events.every((e) => typeof e.delayMs === 'number' && e.level === 'warn'));
  });

  test('stops waiting at once when its signal aborts during a backoff', async () => {
    const controller = new AbortController();
    const started = Date.now();
    setTimeout(() => controller.abort(), 20);

    await assert.rejects(
      withRetries(async () => {
        throw networkError('ECONNREFUSED');
      }, { retries: 5, baseDelayMs: 60_000, maxDelayMs: 60_000, signal: controller.signal }),
      { name: 'AbortError' },
    );
    // A jittered delay can be short by chance; a long wait would mean the abort was ignored.
    assert.ok(Date.now() - started < 5_000);
  });
});

describe('createHttpClient', () => {
  async function captureHeaders(send: (url: string) => Promise<unknown>): Promise<IncomingHttpHeaders> {
    let headers: IncomingHttpHeaders = {};
    const server = createServer((req, res) => {
      headers = req.headers;
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      await send(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
    } finally {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
    return headers;
  }

  test('names the package version in the User-Agent', async () => {
    const pkg = JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
    assert.equal(USER_AGENT, `cloudimg-sync/${pkg.version} (+https://github.com/cloudimg-sync/cloudimg-sync)`);
  });

  test('sends the User-Agent on every request, whatever form the headers take', async () => {
    const client = createHttpClient();
    try {
      for (const headers of [undefined, { accept: 'text/plain' }, ['accept', 'text/plain'], new Map([['accept', 'text/plain']])]) {
        const seen = await captureHeaders(async (url) => (await request(url, { dispatcher: client, headers })).body.dump());
        assert.equal(seen['user-agent'], USER_AGENT, `headers given as ${JSON.stringify(headers)}`);
      }
    } finally {
      await client.close();
    }
  });

  test('leaves a User-Agent the caller set', async () => {
    const client = createHttpClient();
    try {
      const seen = await captureHeaders(async (url) =>
        (await request(url, { dispatcher: client, headers: { 'User-Agent': 'glance-probe/1' } })).body.dump());
      assert.equal(seen['user-agent'], 'glance-probe/1');
    } finally {
      await client.close();
    }
  });
});
