import type { Dispatcher } from 'undici';
import { ConfigError } from '../../errors.js';
import { getFollowingRedirects } from '../../fetch/http-client.js';
import { redactUrl } from '../../redact-url.js';
import { cachedGetter } from '../cached-get.js';
import { releaseSupport } from '../releases.js';
import { keyringSource, type KeyringSource } from '../keyring.js';
import type { DiscoverContext, DiscoveryResult, Source, SourceCommon } from '../source.js';
import { discoverImages, seriesUrl } from './discover.js';
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
    if (response.statusCode === 401 || response.statusCode === 403) {
      throw new Error(`GET ${url} answered ${response.statusCode}; check the user and password in source.url`);
    }
    if (response.statusCode >= 400) throw new Error(`GET ${url} answered ${response.statusCode}; check source.url`);
    const reachable = `${url} reachable (HTTP ${response.statusCode} in ${Date.now() - started} ms)`;
    return `${reachable}; ${await this.checkReleases(ctx)}`;
  }

  /**
   * Every configured release has a folder on the source for its stream's channel and variant: a typo fails
   * here, not as a 404 in a cycle. A release past its end of life (release table) may be gone: said, not failed.
   */
  private async checkReleases(ctx: { client: Dispatcher; signal: AbortSignal }): Promise<string> {
    const { config, common } = this;
    const missing: string[] = [];
    const gone: string[] = [];
    for (const stream of common.streams) {
      for (const { codename } of stream.releases) {
        const url = seriesUrl(config.url, stream.channel, stream.variant, codename);
        const { response } = await getFollowingRedirects(url, { client: ctx.client, signal: ctx.signal });
        await response.body.dump();
        if (response.statusCode === 404 && releaseSupport(codename, Date.now()).pastEol) gone.push(`${codename} (${stream.id}, past end of life)`);
        else if (response.statusCode === 404) missing.push(`unknown release ${codename}: ${redactUrl(url)} answered 404`);
        else if (response.statusCode >= 400) throw new Error(`GET ${redactUrl(url)} answered ${response.statusCode}`);
      }
    }
    if (missing.length > 0) {
      throw new ConfigError(`${missing.join('; ')}`,
        `correct source.releases (or the releases of that stream in source.streams): ${redactUrl(config.url)} has no such release in that channel and variant`);
    }
    const present = common.streams.map((s) => `${s.releases.map((r) => r.codename).join(', ')} (${s.id})`).join('; ');
    return `releases ${present} present${gone.length > 0 ? `; gone upstream: ${gone.join(', ')}` : ''}`;
  }
}
