/**
 * Conditional GET of small documents (directory listings, SHA256SUMS, signatures): revalidates with the
 * ETag / Last-Modified of the previous fetch and refuses bodies larger than a cap. Bodies are returned as
 * the bytes sent: a binary signature decoded as UTF-8 is no longer the signature.
 */
import type { Dispatcher } from 'undici';
import { HttpStatusError, SyncError } from '../errors.js';
import type { Logger } from '../log.js';
import { abandonBody, getFollowingRedirects, headerValue, policyOf, retryOptionsFor, watchBodySpeed, withRetries, type HttpPolicy } from './http-client.js';

export const DEFAULT_TEXT_MAX_BYTES = 4 * 1024 * 1024;

export interface GetTextOptions {
  /** Validators from the previous 200 of the same URL. */
  etag?: string;
  lastModified?: string;
  client?: Dispatcher;
  maxBytes?: number;
  maxRedirects?: number;
  retries?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  signal?: AbortSignal;
  log?: Logger;
}

export type TextResponse =
  | { status: 200; body: Buffer; etag?: string; lastModified?: string; /** After redirects. */ url: string }
  | { status: 304 };

export class ResponseTooLargeError extends SyncError {
  constructor(readonly url: string, readonly maxBytes: number) {
    super(
      'HTTP_RESPONSE_TOO_LARGE',
      `GET ${url} returned more than ${maxBytes} bytes, more than any listing or checksum file should be`,
      'check source.url points at cloud-images.ubuntu.com or a faithful mirror',
    );
  }
}

export class DeadlineExceededError extends SyncError {
  constructor(readonly url: string, readonly timeoutMs: number) {
    super(
      'HTTP_DEADLINE',
      `GET ${url} did not complete within ${timeoutMs / 1000} s`,
      'the mirror is stalling; retried with backoff and next cycle (http.metadataTimeoutMs sets the bound)',
      { retryable: true },
    );
  }
}

async function readCapped(url: string, body: Dispatcher.ResponseData['body'], maxBytes: number, policy: HttpPolicy): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let sizeBytes = 0;
  const speed = watchBodySpeed(body, url, policy);
  try {
    for await (const chunk of body as AsyncIterable<Buffer>) {
      speed.received(chunk.length);
      sizeBytes += chunk.length;
      if (sizeBytes > maxBytes) {
        abandonBody(body);
        throw new ResponseTooLargeError(url, maxBytes);
      }
      chunks.push(chunk);
    }
  } finally {
    speed.stop();
  }
  return Buffer.concat(chunks, sizeBytes);
}

export async function getText(url: string, options: GetTextOptions = {}): Promise<TextResponse> {
  const maxBytes = options.maxBytes ?? DEFAULT_TEXT_MAX_BYTES;
  const headers: Record<string, string> = { 'accept-encoding': 'identity' };
  // A server must ignore If-Modified-Since next to If-None-Match (RFC 9110 13.1.3): send one validator, not two.
  if (options.etag) headers['if-none-match'] = options.etag;
  else if (options.lastModified) headers['if-modified-since'] = options.lastModified;

  const policy = policyOf(options.client);
  return withRetries(
    async () => {
      // One deadline per attempt, headers to last byte: a small document never takes a cycle hostage.
      const deadline = AbortSignal.timeout(policy.metadataTimeoutMs);
      const signal = options.signal ? AbortSignal.any([options.signal, deadline]) : deadline;
      try {
        return await getOnce(url, headers, maxBytes, policy, signal, options);
      } catch (err) {
        if (deadline.aborted && !options.signal?.aborted) throw new DeadlineExceededError(url, policy.metadataTimeoutMs);
        throw err;
      }
    },
    retryOptionsFor(url, options),
  );
}

async function getOnce(
  url: string, headers: Record<string, string>, maxBytes: number, policy: HttpPolicy, signal: AbortSignal, options: GetTextOptions,
): Promise<TextResponse> {
  const { url: finalUrl, response } = await getFollowingRedirects(url, {
    client: options.client,
    headers,
    signal,
    maxRedirects: options.maxRedirects,
  });
  const { statusCode, body } = response;
  if (statusCode === 304) {
    await body.dump();
    return { status: 304 } as const;
  }
  if (statusCode !== 200) {
    await body.dump();
    throw new HttpStatusError(finalUrl, statusCode);
  }
  const declared = Number(headerValue(response.headers['content-length']));
  if (Number.isFinite(declared) && declared > maxBytes) {
    abandonBody(body);
    throw new ResponseTooLargeError(finalUrl, maxBytes);
  }
  return {
    status: 200,
    body: await readCapped(finalUrl, body, maxBytes, policy),
    etag: headerValue(response.headers.etag),
    lastModified: headerValue(response.headers['last-modified']),
    url: finalUrl,
  } as const;
}
