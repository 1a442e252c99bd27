/**
 * Conditional GET of small text documents (directory listings, SHA256SUMS, signatures): revalidates with
 * the ETag / Last-Modified of the previous fetch and refuses bodies larger than a cap.
 */
import type { Dispatcher } from 'undici';
import { HttpStatusError, SyncError } from '../errors.js';
import type { Logger } from '../log.js';
import { abandonBody, getFollowingRedirects, headerValue, retryOptionsFor, withRetries } from './http-client.js';

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
  | { status: 200; body: string; etag?: string; lastModified?: string; /** After redirects. */ url: string }
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

async function readCapped(url: string, body: Dispatcher.ResponseData['body'], maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let sizeBytes = 0;
  for await (const chunk of body as AsyncIterable<Buffer>) {
    sizeBytes += chunk.length;
    if (sizeBytes > maxBytes) {
      abandonBody(body);
      throw new ResponseTooLargeError(url, maxBytes);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, sizeBytes).toString('utf8');
}

export async function getText(url: string, options: GetTextOptions = {}): Promise<TextResponse> {
  const maxBytes = options.maxBytes ?? DEFAULT_TEXT_MAX_BYTES;
  const headers: Record<string, string> = { 'accept-encoding': 'identity' };
  // A server must ignore If-Modified-Since next to If-None-Match (RFC 9110 13.1.3): send one validator, not two.
  if (options.etag) headers['if-none-match'] = options.etag;
  else if (options.lastModified) headers['if-modified-since'] = options.lastModified;

  return withRetries(
    async () => {
      const { url: finalUrl, response } = await getFollowingRedirects(url, {
        client: options.client,
        headers,
        signal: options.signal,
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
        body: await readCapped(finalUrl, body, maxBytes),
        etag: headerValue(response.headers.etag),
        lastModified: headerValue(response.headers['last-modified']),
        url: finalUrl,
      } as const;
    },
    retryOptionsFor(url, options),
  );
}
