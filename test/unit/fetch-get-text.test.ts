import { after, afterEach, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Dispatcher } from 'undici';
import { HttpStatusError } from '../../src/errors.js';
import { getText } from '../../src/fetch/get-text.js';
import { createHttpClient } from '../../src/fetch/http-client.js';

const SUMS = 'f'.repeat(64) + ' *noble-server-cloudimg-amd64.img\n';
const ETAG = '"sums-1"';
const LAST_MODIFIED = 'Thu, 26 Sep 2026 10:00:00 GMT';

type Handler = (req: IncomingMessage, res: ServerResponse, index: number) => void;

let client: Dispatcher;
let close: (() => Promise<void>) | undefined;
let seen: { url: string; headers: IncomingHttpHeaders }[] = [];

async function startServer(handler: Handler): Promise<string> {
  seen = [];
  const server = createServer((req, res) => {
    seen.push({ url: req.url ?? '', headers: req.headers });
    handler(req, res, seen.length - 1);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  close = () => {
    server.closeAllConnections();
    return new Promise((resolve) => server.close(() => resolve()));
  };
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** SHA256SUMS with validators, answering 304 to a matching conditional request. */
const sumsHandler: Handler = (req, res) => {
  if (req.headers['if-none-match'] === ETAG || req.headers['if-modified-since'] === LAST_MODIFIED) {
    res.writeHead(304, { etag: ETAG }).end();
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain', etag: ETAG, 'last-modified': LAST_MODIFIED }).end(SUMS);
};

const quick = { retries: 3, baseDelayMs: 1, maxDelayMs: 5 };

before(() => {
  client = createHttpClient({ idleTimeoutMs: 2_000 });
});
after(async () => {
  await client.close();
});
afterEach(async () => {
  await close?.();
  close = undefined;
});

describe('getText', () => {
  test('returns the body with its ETag and Last-Modified', async () => {
    const base = await startServer(sumsHandler);

    const result = await getText(`${base}/releases/noble/release/SHA256SUMS`, { client });

    assert.deepEqual(result, {
      status: 200,
      body: Buffer.from(SUMS),
      etag: ETAG,
      lastModified: LAST_MODIFIED,
      url: `${base}/releases/noble/release/SHA256SUMS`,
    });
    assert.equal(seen[0]?.headers['if-none-match'], undefined);
  });

  test('sends If-None-Match (only: the server ignores If-Modified-Since beside it) and reports 304 when nothing changed', async () => {
    const base = await startServer(sumsHandler);

    const result = await getText(`${base}/SHA256SUMS`, { client, etag: ETAG, lastModified: LAST_MODIFIED });

    assert.deepEqual(result, { status: 304 });
    assert.equal(seen[0]?.headers['if-none-match'], ETAG);
    assert.equal(seen[0]?.headers['if-modified-since'], undefined);
  });

  test('sends If-Modified-Since when the server gave no ETag', async () => {
    const base = await startServer(sumsHandler);

    const result = await getText(`${base}/SHA256SUMS`, { client, lastModified: LAST_MODIFIED });

    assert.deepEqual(result, { status: 304 });
    assert.equal(seen[0]?.headers['if-none-match'], undefined);
    assert.equal(seen[0]?.headers['if-modified-since'], LAST_MODIFIED);
  });

  test('throws HTTP_NOT_FOUND for a 404 without retrying', async () => {
    const base = await startServer((_req, res) => res.writeHead(404).end('<h1>Not Found</h1>'));

    const err = await getText(`${base}/releases/nope/`, { client, ...quick }).catch((e: unknown) => e);

    assert.ok(err instanceof HttpStatusError);
    assert.equal(err.code, 'HTTP_NOT_FOUND');
    assert.equal(err.status, 404);
    assert.equal(seen.length, 1);
  });

  test('retries a 5xx and returns the eventual 200', async () => {
    const base = await startServer((req, res, index) => {
      if (index < 2) res.writeHead(index === 0 ? 502 : 503).end();
      else sumsHandler(req, res, index);
    });

    const result = await getText(`${base}/SHA256SUMS`, { client, ...quick });

    assert.equal(result.status, 200);
    assert.equal(seen.length, 3);
  });

  test('gives up on a 5xx after the configured retries', async () => {
    const base = await startServer((_req, res) => res.writeHead(500).end());

    await assert.rejects(getText(`${base}/SHA256SUMS`, { client, ...quick, retries: 2 }), { code: 'HTTP_500' });
    assert.equal(seen.length, 3);
  });

  test('follows the 301 Apache sends for a directory without its trailing slash', async () => {
    const base = await startServer((req, res) => {
      if (req.url === '/releases/noble') res.writeHead(301, { location: '/releases/noble/' }).end();
      else res.writeHead(200, { 'content-type': 'text/html' }).end('<html>listing</html>');
    });

    const result = await getText(`${base}/releases/noble`, { client });

    assert.equal(result.status, 200);
    assert.ok(result.status === 200 && result.url === `${base}/releases/noble/`);
    assert.ok(result.status === 200 && result.body.toString() === '<html>listing</html>');
    assert.deepEqual(seen.map((r) => r.url), ['/releases/noble', '/releases/noble/']);
  });

  test('stops following a redirect loop', async () => {
    const base = await startServer((req, res) => res.writeHead(302, { location: req.url ?? '/' }).end());

    await assert.rejects(getText(`${base}/loop`, { client, maxRedirects: 3 }), { code: 'HTTP_TOO_MANY_REDIRECTS' });
    assert.equal(seen.length, 4);
  });

  test('refuses a body whose Content-Length exceeds the cap', async () => {
    const base = await startServer((_req, res) => res.writeHead(200, { 'content-length': 2048 }).end('x'.repeat(2048)));

    await assert.rejects(getText(`${base}/big`, { client, maxBytes: 1024 }), { code: 'HTTP_RESPONSE_TOO_LARGE' });
  });

  test('stops reading a chunked body once it passes the cap', async () => {
    let sentBytes = 0;
    const base = await startServer((_req, res) => {
      res.writeHead(200); // no Content-Length: chunked, size unknown up front
      const timer = setInterval(() => {
        sentBytes += 64 * 1024;
        if (!res.write(Buffer.alloc(64 * 1024, 0x61)) && sentBytes > 64 * 1024 * 1024) clearInterval(timer);
      }, 1);
      res.on('close', () => clearInterval(timer));
    });

    await assert.rejects(getText(`${base}/endless`, { client, maxBytes: 256 * 1024 }), { code: 'HTTP_RESPONSE_TOO_LARGE' });
    assert.ok(sentBytes < 64 * 1024 * 1024, 'the client hung up instead of reading on');
  });

  test('identifies itself with the cloudimg-sync User-Agent', async () => {
    const base = await startServer(sumsHandler);

    await getText(`${base}/SHA256SUMS`, { client });

    assert.match(seen[0]?.headers['user-agent'] ?? '', /^cloudimg-sync\/\d+\.\d+\.\d+ \(\+https:\/\/github\.com\/cloudimg-sync\/cloudimg-sync\)$/);
  });
});
