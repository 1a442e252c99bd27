import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingHttpHeaders, type IncomingMessage, type ServerResponse } from 'node:http';
import { execFileSync } from 'node:child_process';
import { closeSync, constants, openSync, rmSync } from 'node:fs';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { Dispatcher } from 'undici';
import { ChecksumMismatchError, SyncError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { DiskFullError, SizeMismatchError, downloadFile, type DownloadOptions } from '../../src/fetch/download.js';
import { createHttpClient } from '../../src/fetch/http-client.js';
import { DIRECT_ALIGN_BYTES } from '../../src/direct-io.js';
import { PartWriter } from '../../src/fetch/part-writer.js';

const CONTENT = randomBytes(1024 * 1024 + 123);
const CONTENT_SHA256 = sha256(CONTENT);
const ETAG = '"v1"';
/** Smaller than the body and not a divisor of socket chunks, so the write buffers fill and swap many times. */
const SMALL_BUFFER = 10_000;

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

interface SeenRequest {
  headers: IncomingHttpHeaders;
  sentBytes: number;
}

type Handler = (req: IncomingMessage, res: ServerResponse, seen: SeenRequest, index: number) => void;

interface TestServer {
  url: string;
  requests: SeenRequest[];
  close(): Promise<void>;
}

async function startServer(handler: Handler): Promise<TestServer> {
  const requests: SeenRequest[] = [];
  const server = createServer((req, res) => {
    const seen: SeenRequest = { headers: req.headers, sentBytes: 0 };
    requests.push(seen);
    handler(req, res, seen, requests.length - 1);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/noble-server-cloudimg-amd64.img`,
    requests,
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

/** What a Range-capable server (Apache, nginx) answers; with `limitBytes`, it then stalls. */
function respondWithFile(
  req: IncomingMessage,
  res: ServerResponse,
  seen: SeenRequest,
  content: Buffer,
  options: { etag?: string; honourRange?: boolean; limitBytes?: number } = {},
): void {
  const etag = options.etag ?? ETAG;
  const range = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
  const ifRange = req.headers['if-range'];
  let start = 0;
  if ((options.honourRange ?? true) && range && (ifRange === undefined || ifRange === etag)) {
    start = Number(range[1]);
    if (start >= content.length) {
      res.writeHead(416, { 'content-range': `bytes */${content.length}` }).end();
      return;
    }
    res.writeHead(206, {
      'content-length': content.length - start,
      'content-range': `bytes ${start}-${content.length - 1}/${content.length}`,
      etag,
    });
  } else {
    res.writeHead(200, { 'content-length': content.length, etag, 'last-modified': 'Thu, 26 Sep 2026 10:00:00 GMT' });
  }
  const body = content.subarray(start, options.limitBytes === undefined ? undefined : start + options.limitBytes);
  seen.sentBytes = body.length;
  // Cut short: the body stays open and unfinished until the test ends the socket.
  if (options.limitBytes === undefined) res.end(body);
  else res.write(body);
}

let client: Dispatcher;
let dir: string;

before(async () => {
  client = createHttpClient({ idleTimeoutMs: 2_000, headersTimeoutMs: 2_000 });
});
after(async () => {
  await client.close();
});

async function freshDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'cloudimg-fetch-'));
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(() => true, () => false);
}

function quickRetries(retries: number): Pick<DownloadOptions, 'retries' | 'baseDelayMs' | 'maxDelayMs'> {
  return { retries, baseDelayMs: 1, maxDelayMs: 5 };
}

describe('downloadFile', () => {
  let server: TestServer | undefined;

  async function withServer(handler: Handler): Promise<TestServer> {
    server = await startServer(handler);
    dir = await freshDir();
    return server;
  }

  test.afterEach(async () => {
    await server?.close();
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  test('streams the file to its destination, hashing it on the way', async () => {
    const srv = await withServer((req, res, seen) => respondWithFile(req, res, seen, CONTENT));
    const dest = join(dir, 'image.img');
    const progress: number[] = [];

    const result = await downloadFile(srv.url, dest, {
      client,
      writeBufferBytes: SMALL_BUFFER,
      expectedSha256: CONTENT_SHA256.toUpperCase(),
      extraHashAlgorithms: ['sha512'],
      onProgress: (done, total) => {
        assert.equal(total, CONTENT.length);
        progress.push(done);
      },
    });

    assert.deepEqual(await readFile(dest), CONTENT);
    assert.deepEqual(result, {
      path: dest,
      sizeBytes: CONTENT.length,
      sha256: CONTENT_SHA256,
      hashes: { sha256: CONTENT_SHA256, sha512: createHash('sha512').update(CONTENT).digest('hex') },
      resumedFromBytes: 0,
      attempts: 1,
      etag: ETAG,
    });
    assert.equal(progress.at(-1), CONTENT.length);
    assert.ok(progress.every((done, i) => i === 0 || done > (progress[i - 1] ?? 0)));
    assert.equal(await exists(`${dest}.part`), false);
    assert.equal(await exists(`${dest}.part.json`), false);
    assert.match(srv.requests[0]?.headers['user-agent'] ?? '', /^cloudimg-sync\/\d+\.\d+\.\d+ /);
  });

  test('resumes from the byte it stopped at after the connection is reset mid-body', async () => {
    const cutAt = 300 * 1024;
    let resetFirst: (() => void) | undefined;
    const srv = await withServer((req, res, seen, index) => {
      if (index === 0) {
        respondWithFile(req, res, seen, CONTENT, { limitBytes: cutAt });
        resetFirst = () => res.socket?.resetAndDestroy();
      } else {
        respondWithFile(req, res, seen, CONTENT);
      }
    });
    const dest = join(dir, 'image.img');

    const result = await downloadFile(srv.url, dest, {
      client,
      ...quickRetries(3),
      writeBufferBytes: SMALL_BUFFER,
      expectedSha256: CONTENT_SHA256,
      // Reset only once every byte sent has arrived, so the resume point is exact.
      onProgress: (done) => {
        if (done === cutAt) resetFirst?.();
      },
    });

    assert.equal(srv.requests.length, 2);
    assert.equal(srv.requests[1]?.headers.range, `bytes=${cutAt}-`);
    assert.equal(srv.requests[1]?.headers['if-range'], ETAG);
    assert.equal(srv.requests.reduce((sum, r) => sum + r.sentBytes, 0), CONTENT.length, 'no byte sent twice');
    assert.equal(result.resumedFromBytes, cutAt);
    assert.equal(result.attempts, 2);
    assert.equal(result.sha256, CONTENT_SHA256);
    assert.deepEqual(await readFile(dest), CONTENT);
  });

  test('a scratch download (durable: false) resumes and lands verified at its destination like a durable one', async () => {
    const cutAt = 200 * 1024;
    let resetFirst: (() => void) | undefined;
    const srv = await withServer((req, res, seen, index) => {
      respondWithFile(req, res, seen, CONTENT, index === 0 ? { limitBytes: cutAt } : {});
      if (index === 0) resetFirst = () => res.socket?.resetAndDestroy();
    });
    const dest = join(dir, 'image.img');
    const result = await downloadFile(srv.url, dest, {
      client, ...quickRetries(3), writeBufferBytes: SMALL_BUFFER, expectedSha256: CONTENT_SHA256, durable: false,
      onProgress: (done) => { if (done === cutAt) resetFirst?.(); },
    });
    assert.equal(result.resumedFromBytes, cutAt);
    assert.deepEqual(await readFile(dest), CONTENT);
    assert.equal(await exists(`${dest}.part`), false);
    assert.equal(await exists(`${dest}.part.json`), false);
  });

  test('retries a body that ends early and resumes after the bytes already on disk', async () => {
    const half = 512 * 1024;
    let first: ServerResponse | undefined;
    const srv = await withServer((req, res, seen, index) => {
      if (index === 0) first = res;
      respondWithFile(req, res, seen, CONTENT, index === 0 ? { limitBytes: half } : {});
    });
    const dest = join(dir, 'image.img');

    const result = await downloadFile(srv.url, dest, {
      client,
      ...quickRetries(2),
      writeBufferBytes: SMALL_BUFFER,
      expectedSha256: CONTENT_SHA256,
      onProgress: (done) => {
        if (done === half) first?.socket?.end(); // a clean FIN, Content-Length not reached
      },
    });

    assert.equal(srv.requests[1]?.headers.range, `bytes=${half}-`);
    assert.equal(result.resumedFromBytes, half);
    assert.deepEqual(await readFile(dest), CONTENT);
  });

  test('retries a 206 whose Content-Range stops short of the end, continuing where it stopped', async () => {
    const shortBytes = 100 * 1024;
    const srv = await withServer((req, res, seen, index) => {
      if (index > 0) return respondWithFile(req, res, seen, CONTENT);
      res.writeHead(206, {
        'content-length': shortBytes,
        'content-range': `bytes 4096-${4096 + shortBytes - 1}/${CONTENT.length}`,
        etag: ETAG,
      });
      seen.sentBytes = shortBytes;
      res.end(CONTENT.subarray(4096, 4096 + shortBytes));
    });
    const dest = join(dir, 'image.img');
    await writeFile(`${dest}.part`, CONTENT.subarray(0, 4096));
    await writeFile(`${dest}.part.json`, JSON.stringify({ url: srv.url, etag: ETAG, totalBytes: CONTENT.length }));

    const result = await downloadFile(srv.url, dest, { client, ...quickRetries(1), expectedSha256: CONTENT_SHA256 });

    assert.deepEqual(srv.requests.map((r) => r.headers.range), ['bytes=4096-', `bytes=${4096 + shortBytes}-`]);
    assert.equal(result.attempts, 2);
    assert.deepEqual(await readFile(dest), CONTENT);
  });

  test('resumes a .part left behind by an earlier process, re-hashing the prefix from disk', async () => {
    const srv = await withServer((req, res, seen) => respondWithFile(req, res, seen, CONTENT));
    const dest = join(dir, 'image.img');
    await writeFile(`${dest}.part`, CONTENT.subarray(0, 4096));
    await writeFile(`${dest}.part.json`, JSON.stringify({ url: srv.url, etag: ETAG, totalBytes: CONTENT.length }));

    const result = await downloadFile(srv.url, dest, { client, expectedSha256: CONTENT_SHA256 });

    assert.equal(srv.requests[0]?.headers.range, 'bytes=4096-');
    assert.equal(srv.requests[0]?.sentBytes, CONTENT.length - 4096);
    assert.equal(result.resumedFromBytes, 4096);
    assert.equal(result.sha256, CONTENT_SHA256);
  });

  test('asks again for the last byte when the .part is already complete, to revalidate it', async () => {
    const srv = await withServer((req, res, seen) => respondWithFile(req, res, seen, CONTENT));
    const dest = join(dir, 'image.img');
    await writeFile(`${dest}.part`, CONTENT);
    await writeFile(`${dest}.part.json`, JSON.stringify({ url: srv.url, etag: ETAG, totalBytes: CONTENT.length }));

    const result = await downloadFile(srv.url, dest, { client, expectedSha256: CONTENT_SHA256 });

    assert.equal(srv.requests[0]?.headers.range, `bytes=${CONTENT.length - 1}-`);
    assert.equal(result.sha256, CONTENT_SHA256);
  });

  test('restarts from byte 0 when the server ignores Range and sends the whole file', async () => {
    const srv = await withServer((req, res, seen) => respondWithFile(req, res, seen, CONTENT, { honourRange: false }));
    const dest = join(dir, 'image.img');
    await writeFile(`${dest}.part`, randomBytes(200 * 1024)); // must not survive into the result
    await writeFile(`${dest}.part.json`, JSON.stringify({ url: srv.url, etag: ETAG, totalBytes: CONTENT.length }));

    const result = await downloadFile(srv.url, dest, { client, expectedSha256: CONTENT_SHA256 });

    assert.equal(srv.requests[0]?.headers.range, `bytes=${200 * 1024}-`);
    assert.equal(result.resumedFromBytes, 0);
    assert.equal(result.sizeBytes, CONTENT.length);
    assert.deepEqual(await readFile(dest), CONTENT);
  });

  test('restarts from byte 0 when the ETag changed since the .part was written (If-Range)', async () => {
    const newContent = randomBytes(300 * 1024);
    const srv = await withServer((req, res, seen) => respondWithFile(req, res, seen, newContent, { etag: '"v2"' }));
    const dest = join(dir, 'image.img');
    // Longer than the new file: its tail must not survive.
    await writeFile(`${dest}.part`, CONTENT.subarray(0, 500 * 1024));
    await writeFile(`${dest}.part.json`, JSON.stringify({ url: srv.url, etag: ETAG, totalBytes: CONTENT.length }));

    const result = await downloadFile(srv.url, dest, { client, expectedSha256: sha256(newContent) });

    assert.equal(srv.requests[0]?.headers['if-range'], ETAG);
    assert.equal(result.etag, '"v2"');
    assert.equal(result.resumedFromBytes, 0);
    assert.deepEqual(await readFile(dest), newContent);
  });

  test('restarts without Range when the .part is larger than the remote file', async () => {
    const srv = await withServer((req, res, seen) => respondWithFile(req, res, seen, CONTENT));
    const dest = join(dir, 'image.img');
    await writeFile(`${dest}.part`, randomBytes(CONTENT.length + 10));
    await writeFile(`${dest}.part.json`, JSON.stringify({ url: srv.url, etag: ETAG, totalBytes: CONTENT.length }));

    const result = await downloadFile(srv.url, dest, { client, expectedSha256: CONTENT_SHA256 });

    assert.equal(srv.requests[0]?.headers.range, undefined);
    assert.equal(result.sha256, CONTENT_SHA256);
  });

  test('retries a 503 with backoff, logging each retry, then succeeds', async () => {
    const srv = await withServer((req, res, seen, index) => {
      if (index < 2) res.writeHead(503).end('busy');
      else respondWithFile(req, res, seen, CONTENT);
    });
    const dest = join(dir, 'image.img');
    const events: Record<string, unknown>[] = [];
    const log = createLogger({
      level: 'info',
      destination: new Writable({
        write(chunk: Buffer, _encoding, done) {
          events.push(JSON.parse(chunk.toString()) as Record<string, unknown>);
          done();
        },
      }),
    });

    const result = await downloadFile(srv.url, dest, { client, ...quickRetries(3), log, expectedSha256: CONTENT_SHA256 });

    assert.equal(result.attempts, 3);
    const retries = events.filter((e) => e.event === 'http.retry');
    assert.deepEqual(retries.map((e) => [e.url, e.attempt, e.code]), [[srv.url, 1, 'HTTP_503'], [srv.url, 2, 'HTTP_503']]);
    assert.ok(retries.every((e) => typeof e.delayMs === 'number' && e.delayMs <= 5));
  });

  test('gives up after the configured retries with a clear error and keeps the .part for later', async () => {
    const slice = 100 * 1024;
    let latest: ServerResponse | undefined;
    const srv = await withServer((req, res, seen) => {
      latest = res;
      respondWithFile(req, res, seen, CONTENT, { limitBytes: slice });
    });
    const dest = join(dir, 'image.img');
    // Each response is cut (FIN) once the client holds its slice; the bytes received must be kept.
    const cutWhenReceived = (done: number) => {
      if (done % slice === 0) latest?.socket?.end();
    };

    const err = await downloadFile(srv.url, dest, { client, ...quickRetries(2), writeBufferBytes: SMALL_BUFFER, onProgress: cutWhenReceived }).then(
      () => assert.fail('download should fail'),
      (e: unknown) => e,
    );

    assert.ok(err instanceof SyncError);
    assert.equal(err.code, 'UND_ERR_SOCKET');
    assert.match(err.message, new RegExp(`GET ${srv.url} failed after 3 attempts`));
    assert.deepEqual(srv.requests.map((r) => r.headers.range), [undefined, `bytes=${slice}-`, `bytes=${2 * slice}-`]);
    assert.equal((await stat(`${dest}.part`)).size, 3 * slice, 'each attempt kept what it received');
    assert.equal(await exists(`${dest}.part.json`), true);
    assert.equal(await exists(dest), false);
  });

  test('does not retry a 404', async () => {
    const srv = await withServer((_req, res) => res.writeHead(404).end());
    const dest = join(dir, 'image.img');

    await assert.rejects(downloadFile(srv.url, dest, { client, ...quickRetries(3) }), { code: 'HTTP_NOT_FOUND' });
    assert.equal(srv.requests.length, 1);
  });

  test('deletes the .part and never creates the destination when the checksum does not match', async () => {
    const srv = await withServer((req, res, seen) => respondWithFile(req, res, seen, CONTENT));
    const dest = join(dir, 'image.img');
    const wrong = 'ab'.repeat(32);

    const err = await downloadFile(srv.url, dest, { client, expectedSha256: wrong }).catch((e: unknown) => e);

    assert.ok(err instanceof ChecksumMismatchError);
    assert.equal(err.code, 'CHECKSUM_MISMATCH');
    assert.equal(err.expected, wrong);
    assert.equal(err.actual, CONTENT_SHA256);
    assert.equal(await exists(dest), false);
    assert.equal(await exists(`${dest}.part`), false);
    assert.equal(await exists(`${dest}.part.json`), false);
    assert.equal(srv.requests.length, 1, 'a mismatch is not retried within the call');
  });

  test('fails with DISK_FULL before writing when the remaining bytes do not fit', async () => {
    const srv = await withServer((req, res, seen) => respondWithFile(req, res, seen, CONTENT));
    const dest = join(dir, 'image.img');
    const probed: string[] = [];

    const err = await downloadFile(srv.url, dest, {
      client,
      ...quickRetries(3),
      statfs: async (path) => {
        probed.push(path);
        return { bavail: 100, bsize: 4096 };
      },
    }).catch((e: unknown) => e);

    assert.ok(err instanceof DiskFullError);
    assert.equal(err.code, 'DISK_FULL');
    assert.equal(err.neededBytes, CONTENT.length);
    assert.equal(err.freeBytes, 409600);
    assert.match(err.oneLine(), new RegExp(`^DISK_FULL: not enough space in ${dir}: need ${CONTENT.length} bytes .*409600 free.*\\(fix: free space in`));
    assert.deepEqual(probed, [dir]);
    assert.equal(srv.requests.length, 1, 'a full disk is not retried');
    assert.equal(await exists(dest), false);
  });

  test('checks free space against the remaining bytes only when resuming', async () => {
    const srv = await withServer((req, res, seen) => respondWithFile(req, res, seen, CONTENT));
    const dest = join(dir, 'image.img');
    const have = CONTENT.length - 1000;
    await writeFile(`${dest}.part`, CONTENT.subarray(0, have));
    await writeFile(`${dest}.part.json`, JSON.stringify({ url: srv.url, etag: ETAG, totalBytes: CONTENT.length }));

    const result = await downloadFile(srv.url, dest, {
      client,
      expectedSha256: CONTENT_SHA256,
      statfs: async () => ({ bavail: 1000n, bsize: 1n }),
    });

    assert.equal(result.resumedFromBytes, have);
  });

  test('times out a body that stalls, keeping what arrived in a resumable .part', async () => {
    const stallClient = createHttpClient({ idleTimeoutMs: 150 });
    const srv = await withServer((req, res, seen) => respondWithFile(req, res, seen, CONTENT, { limitBytes: 64 * 1024 }));
    const dest = join(dir, 'image.img');
    try {
      const started = Date.now();
      const err = await downloadFile(srv.url, dest, { client: stallClient, retries: 0 }).catch((e: unknown) => e);

      assert.ok(err instanceof SyncError);
      assert.equal(err.code, 'UND_ERR_BODY_TIMEOUT');
      assert.ok(Date.now() - started < 1_900, 'the idle timeout, not the client-wide one, fired');
      assert.equal((await stat(`${dest}.part`)).size, 64 * 1024);
      assert.equal(await exists(dest), false);
    } finally {
      await stallClient.close();
    }
  });

  test('an abort leaves a .part that the next call resumes', async () => {
    const srv = await withServer((req, res, seen, index) =>
      respondWithFile(req, res, seen, CONTENT, index === 0 ? { limitBytes: 200 * 1024 } : {}));
    const dest = join(dir, 'image.img');
    const controller = new AbortController();

    await assert.rejects(
      downloadFile(srv.url, dest, {
        client,
        signal: controller.signal,
        onProgress: (done) => {
          if (done === 200 * 1024) controller.abort();
        },
      }),
      (err: unknown) => err instanceof Error && err.name === 'AbortError',
    );
    assert.equal((await stat(`${dest}.part`)).size, 200 * 1024);

    const result = await downloadFile(srv.url, dest, { client, expectedSha256: CONTENT_SHA256 });
    assert.equal(srv.requests[1]?.headers.range, `bytes=${200 * 1024}-`);
    assert.equal(result.resumedFromBytes, 200 * 1024);
  });

  test('a response announcing another size than the signed one fails before its body is read, keeping nothing', async () => {
    const srv = await withServer((req, res, seen) => respondWithFile(req, res, seen, CONTENT));
    const dest = join(dir, 'image.img');
    const err = await downloadFile(srv.url, dest, { client, ...quickRetries(3), expectedSizeBytes: CONTENT.length - 1 }).catch((e: unknown) => e);
    assert.ok(err instanceof SizeMismatchError, String(err));
    assert.equal(err.code, 'SIZE_MISMATCH');
    assert.match(err.message, new RegExp(`announces ${CONTENT.length} bytes, the signed metadata says ${CONTENT.length - 1}`));
    assert.equal(srv.requests.length, 1, 'not retried: the file upstream is not the one signed for');
    assert.equal(await exists(dest), false);
    assert.equal(await exists(`${dest}.part`), false);
  });

  test('a body growing past the signed size without a Content-Length is cut off at the first byte too many', async () => {
    const signedBytes = 256 * 1024;
    let socketClosed = false;
    const srv = await withServer((_req, res, seen) => {
      res.writeHead(200, { etag: ETAG }); // chunked: no size announced
      res.on('close', () => { socketClosed = true; });
      // Keeps sending well past the signed size; the client must stop reading long before the end.
      const body = CONTENT.subarray(0, signedBytes * 3);
      let sent = 0;
      const pump = (): void => {
        while (sent < body.length && !res.destroyed) {
          const piece = body.subarray(sent, sent + 16 * 1024);
          sent += piece.length;
          seen.sentBytes = sent;
          if (!res.write(piece)) { res.once('drain', pump); return; }
        }
        if (sent >= body.length) res.end();
      };
      pump();
    });
    const dest = join(dir, 'image.img');
    const received: number[] = [];
    const err = await downloadFile(srv.url, dest, {
      client, ...quickRetries(3), expectedSizeBytes: signedBytes, onProgress: (bytes) => received.push(bytes),
    }).catch((e: unknown) => e);
    assert.ok(err instanceof SizeMismatchError, String(err));
    assert.match(err.message, new RegExp(`sent more than ${signedBytes} of the ${signedBytes} bytes the signed metadata says`));
    assert.ok(Math.max(...received) <= signedBytes, `wrote ${Math.max(...received)} bytes`);
    assert.equal(srv.requests.length, 1);
    assert.equal(await exists(`${dest}.part`), false);
    assert.equal(await exists(dest), false);
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.ok(socketClosed, 'the connection was dropped instead of drained');
  });

  test('a file of exactly the signed size downloads as before', async () => {
    const srv = await withServer((req, res, seen) => respondWithFile(req, res, seen, CONTENT));
    const dest = join(dir, 'image.img');
    const result = await downloadFile(srv.url, dest, { client, expectedSizeBytes: CONTENT.length, expectedSha256: CONTENT_SHA256 });
    assert.equal(result.sizeBytes, CONTENT.length);
    assert.deepEqual(await readFile(dest), CONTENT);
  });

});

describe('downloadFile with a sink (stream-through)', () => {
  let server: TestServer | undefined;
  test.afterEach(async () => {
    await server?.close();
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  function collectingSink() {
    const chunks: Buffer[] = [];
    const state: { aborted?: Error; sizes: Array<number | undefined>; sizeBeforeFirstWrite?: boolean } = { sizes: [] };
    return {
      sink: {
        size: (n: number | undefined) => { state.sizes.push(n); },
        write: (c: Buffer) => { state.sizeBeforeFirstWrite ??= state.sizes.length > 0; chunks.push(Buffer.from(c)); },
        abort: (e: Error) => { state.aborted = e; },
      },
      bytes: () => Buffer.concat(chunks),
      state,
    };
  }

  test('hands every byte to the sink once, in order, across a reset and resume', async () => {
    const cutAt = 300 * 1024;
    let resetFirst: (() => void) | undefined;
    server = await startServer((req, res, seen, index) => {
      if (index === 0) {
        respondWithFile(req, res, seen, CONTENT, { limitBytes: cutAt });
        resetFirst = () => res.socket?.resetAndDestroy();
      } else {
        respondWithFile(req, res, seen, CONTENT);
      }
    });
    dir = await freshDir();
    const c = collectingSink();
    await downloadFile(server.url, join(dir, 'i.img'), {
      client, ...quickRetries(3), writeBufferBytes: SMALL_BUFFER, expectedSha256: CONTENT_SHA256, sink: c.sink,
      onProgress: (done) => { if (done === cutAt) resetFirst?.(); },
    });
    assert.equal(c.state.aborted, undefined);
    assert.equal(sha256(c.bytes()), CONTENT_SHA256);
    assert.deepEqual(c.state.sizes, [CONTENT.length], 'the size is told once, though two requests were made');
    assert.equal(c.state.sizeBeforeFirstWrite, true);
  });

  test('feeds the bytes of an earlier .part from disk first, then the rest', async () => {
    server = await startServer((req, res, seen) => respondWithFile(req, res, seen, CONTENT));
    dir = await freshDir();
    const dest = join(dir, 'i.img');
    await writeFile(`${dest}.part`, CONTENT.subarray(0, 400_000));
    await writeFile(`${dest}.part.json`, JSON.stringify({ url: server.url, etag: ETAG, totalBytes: CONTENT.length }));
    const c = collectingSink();
    const res = await downloadFile(server.url, dest, { client, writeBufferBytes: SMALL_BUFFER, expectedSha256: CONTENT_SHA256, sink: c.sink });
    assert.equal(res.resumedFromBytes, 400_000);
    assert.equal(sha256(c.bytes()), CONTENT_SHA256);
    assert.deepEqual(c.state.sizes, [CONTENT.length]);
    assert.equal(c.state.sizeBeforeFirstWrite, true, 'the size from the earlier attempt comes before the bytes on disk');
  });

  test('aborts the sink when the download must start over after bytes were streamed', async () => {
    const cutAt = 200 * 1024;
    let resetFirst: (() => void) | undefined;
    server = await startServer((req, res, seen, index) => {
      if (index === 0) {
        respondWithFile(req, res, seen, CONTENT, { limitBytes: cutAt });
        resetFirst = () => res.socket?.resetAndDestroy();
      } else {
        respondWithFile(req, res, seen, CONTENT, { honourRange: false });
      }
    });
    dir = await freshDir();
    const c = collectingSink();
    const res = await downloadFile(server.url, join(dir, 'i.img'), {
      client, ...quickRetries(3), writeBufferBytes: SMALL_BUFFER, expectedSha256: CONTENT_SHA256, sink: c.sink,
      onProgress: (done) => { if (done === cutAt) resetFirst?.(); },
    });
    assert.equal(res.sha256, CONTENT_SHA256, 'the file itself still completes');
    assert.match(c.state.aborted?.message ?? '', /restarted at byte 0/);
    assert.equal(c.bytes().length, cutAt, 'nothing after the restart reached the sink');
  });
});

/** Bytes of `path` in the page cache (util-linux fincore, mincore(2) underneath). */
function cachedBytes(path: string): number {
  const out = execFileSync('fincore', ['--bytes', '--noheadings', '--output', 'RES', path], { encoding: 'utf8' });
  return Number(out.trim());
}

/** Whether files in `dir` can be opened O_DIRECT (not on tmpfs before Linux 6.6, nor on some FUSE mounts). */
function directIoWorks(dir: string): boolean {
  const probe = join(dir, 'direct-probe');
  try {
    closeSync(openSync(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_DIRECT, 0o600));
    return true;
  } catch {
    return false;
  } finally {
    rmSync(probe, { force: true });
  }
}

describe('downloadFile: a durable file is written around the page cache', () => {
  const BIG = randomBytes(3 * 1024 * 1024 + 4321);
  const BIG_SHA256 = sha256(BIG);
  let server: TestServer | undefined;

  test.afterEach(async () => {
    await server?.close();
    server = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  test('leaves only the pieces off a block boundary in the page cache, across a resume from an odd byte', async () => {
    const cutAt = 1024 * 1024 + 777; // the resume starts off a 4 KiB boundary
    let resetFirst: (() => void) | undefined;
    server = await startServer((req, res, seen, index) => {
      respondWithFile(req, res, seen, BIG, index === 0 ? { limitBytes: cutAt } : {});
      if (index === 0) resetFirst = () => res.socket?.resetAndDestroy();
    });
    dir = await freshDir();
    const dest = join(dir, 'image.img');
    const res = await downloadFile(server.url, dest, {
      client, ...quickRetries(3), writeBufferBytes: 256 * 1024, expectedSha256: BIG_SHA256,
      onProgress: (done) => { if (done === cutAt) resetFirst?.(); },
    });

    assert.equal(res.resumedFromBytes, cutAt);
    assert.deepEqual(await readFile(dest), BIG);
    if (!directIoWorks(dir)) return; // then everything went through the page cache, as checked above
    // Before reading it back: buffered writes leave all 3 MiB cached; direct ones only the odd pieces (the
    // tail of the first attempt, the head of the resume up to a block boundary, the tail of the file).
    // readFile above cached it again, so write a fresh copy first.
    await rm(dest);
    const again = await downloadFile(server.url, dest, { client, writeBufferBytes: 256 * 1024, expectedSha256: BIG_SHA256 });
    assert.equal(again.sha256, BIG_SHA256);
    assert.ok(cachedBytes(dest) <= 2 * 4096, `${cachedBytes(dest)} bytes of a fresh download in the page cache`);
  });

  test('a scratch download (durable: false) is written around the page cache too: it is read back only when a stream failed', async () => {
    server = await startServer((req, res, seen) => respondWithFile(req, res, seen, BIG));
    dir = await freshDir();
    const dest = join(dir, 'image.img');
    await downloadFile(server.url, dest, { client, writeBufferBytes: 256 * 1024, expectedSha256: BIG_SHA256, durable: false });
    if (directIoWorks(dir)) {
      // Before reading it back, which caches it: buffered writes leave all of it cached.
      assert.ok(cachedBytes(dest) <= 2 * 4096, `${cachedBytes(dest)} bytes of a scratch download in the page cache`);
    }
    assert.deepEqual(await readFile(dest), BIG);
  });
});

describe('PartWriter', () => {
  test('falls back to the page cache when a direct write is refused (a buffer off a page boundary)', async () => {
    dir = await freshDir();
    const fh = await open(join(dir, 'f.part'), 'w', 0o600);
    try {
      const writer = new PartWriter(fh, true, 8192);
      if (!writer.direct) return; // no O_DIRECT here at all: nothing to fall back from
      const misaligned = Buffer.allocUnsafeSlow(8192 + 1).subarray(1);
      randomBytes(8192).copy(misaligned);
      writer.write(misaligned, 8192, 0);
      assert.equal(writer.direct, false);
      writer.write(misaligned, 100, 8192);
      writer.close();
      assert.deepEqual(await readFile(join(dir, 'f.part')), Buffer.concat([misaligned, misaligned.subarray(0, 100)]));
    } finally {
      await fh.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('pieces after an odd position end on a block boundary, so the ones after them can go direct', async () => {
    dir = await freshDir();
    const fh = await open(join(dir, 'f.part'), 'w', 0o600);
    try {
      const writer = new PartWriter(fh, true, 65536);
      assert.equal(writer.pieceBytes(0, 65536), 65536);
      if (writer.direct) {
        assert.equal(writer.pieceBytes(4096 + 10, 65536), 65536 - 10);
        assert.equal((4096 + 10 + writer.pieceBytes(4096 + 10, 65536)) % DIRECT_ALIGN_BYTES, 0);
      }
      writer.close();
    } finally {
      await fh.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
