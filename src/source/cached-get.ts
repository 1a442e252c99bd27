import type { Dispatcher } from 'undici';
import { getText } from '../fetch/get-text.js';
import type { Logger } from '../log.js';
import type { CachedGet, CachedText, SourceCache } from './source.js';

export interface CachedGetOptions {
  store: SourceCache;
  client?: Dispatcher;
  retries?: number;
  baseDelayMs?: number;
  maxDelayMs?: number;
  /** Largest body accepted (default getText's: enough for listings and SHA256SUMS). */
  maxBytes?: number;
  signal?: AbortSignal;
  log: Logger;
  /** Counts bytes of bodies received (304s carry none). */
  onBytes?: (bytes: number) => void;
}

/**
 * Conditional GETs remembered in SQLite: a listing or SHA256SUMS that has not changed costs one 304,
 * and its body comes from the cache.
 */
export function cachedGetter(options: CachedGetOptions): CachedGet {
  return async (url) => {
    const cached = options.store.getCachedResponse(url);
    const response = await getText(url, {
      etag: cached?.etag ?? undefined,
      lastModified: cached?.lastModified ?? undefined,
      client: options.client,
      retries: options.retries,
      baseDelayMs: options.baseDelayMs,
      maxDelayMs: options.maxDelayMs,
      maxBytes: options.maxBytes,
      signal: options.signal,
      log: options.log,
    });
    if (response.status === 304 && cached) return { body: cached.body, changed: false, lastModified: cached.lastModified ?? undefined, parsed: parsedOf(options, url) };
    if (response.status === 304) {
      // A 304 without a cached body (cache lost): ask again unconditionally.
      const fresh = await getText(url, { client: options.client, retries: options.retries, maxBytes: options.maxBytes, signal: options.signal, log: options.log });
      if (fresh.status === 304) throw new Error(`GET ${url} answered 304 to an unconditional request`);
      return remember(options, url, fresh.body, fresh.etag, fresh.lastModified);
    }
    return remember(options, url, response.body, response.etag, response.lastModified);
  };
}

function remember(options: CachedGetOptions, url: string, body: Buffer, etag?: string, lastModified?: string) {
  options.onBytes?.(body.length);
  options.store.putCachedResponse(url, { etag: etag ?? null, lastModified: lastModified ?? null, body });
  return { body, changed: true, lastModified, parsed: parsedOf(options, url) };
}

function parsedOf(options: CachedGetOptions, url: string): CachedText['parsed'] {
  return { get: () => options.store.getCachedParse(url), set: (json) => options.store.setCachedParse(url, json) };
}
