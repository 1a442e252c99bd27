import type { Dispatcher } from 'undici';
import { getFollowingRedirects } from '../../fetch/http-client.js';
import { cachedGetter } from '../cached-get.js';
import { keyringSource, type KeyringSource } from '../keyring.js';
import type { DiscoverContext, DiscoveryResult, Source, SourceCommon } from '../source.js';
import { discoverImages } from './discover.js';
import type { ListingSourceConfig } from './schema.js';

/** cloud-images.ubuntu.com (or a mirror of its layout): folder listings, SHA256SUMS and their detached signatures. */
export class ListingSource implements Source {
  readonly type = 'listing';

  constructor(private readonly config: ListingSourceConfig, private readonly common: SourceCommon) {}

  get url(): string {
    return this.config.url;
  }

  async discover(ctx: DiscoverContext): Promise<DiscoveryResult> {
    const { config, common } = this;
    let keyring: KeyringSource | undefined;
    if (config.verifySignature) {
      keyring = keyringSource(common.keyringPath, ctx.cache);
    } else {
      ctx.log.warn({ event: 'source.signature.disabled' }, 'source.verifySignature is false: SHA256SUMS are NOT signature-checked; images are only as trustworthy as the connection');
    }
    return discoverImages({
      sourceUrl: config.url,
      streams: common.streams,
      keep: common.keep,
      nowMs: ctx.nowMs,
      keyring,
      get: cachedGetter({
        store: ctx.cache, client: ctx.client, retries: ctx.http.retries, baseDelayMs: ctx.http.retryBaseDelayMs,
        maxDelayMs: ctx.http.retryMaxDelayMs, signal: ctx.signal, log: ctx.log, onBytes: ctx.onBytes,
      }),
      log: ctx.log,
    });
  }

  async check(ctx: { client: Dispatcher; signal: AbortSignal }): Promise<string> {
    const started = Date.now();
    const url = `${this.config.url.replace(/\/+$/, '')}/`;
    const { response } = await getFollowingRedirects(url, { client: ctx.client, signal: ctx.signal });
    await response.body.dump();
    if (response.statusCode >= 400) throw new Error(`GET ${url} answered ${response.statusCode}; check source.url`);
    return `${url} reachable (HTTP ${response.statusCode} in ${Date.now() - started} ms)`;
  }
}
