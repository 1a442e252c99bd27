import type { Dispatcher } from 'undici';
import { getText } from '../../fetch/get-text.js';
import type { Logger } from '../../log.js';
import { cachedGetter } from '../cached-get.js';
import { keyringSource, type KeyringSource } from '../keyring.js';
import type { CachedGet, DiscoverContext, Source, SourceCommon } from '../source.js';
import { checkStreamsIndex, discoverFromStreams, streamsRootUrl, type StreamsDiscoveryResult } from './discover.js';
import { defaultStreamsUrl, type SimplestreamsSourceConfig } from './schema.js';

/** A products file of the real site is several MiB (every serial of every release since 10.04); a listing is a few KiB. */
const STREAMS_MAX_BYTES = 64 * 1024 * 1024;

/** Canonical's simplestreams metadata (or a mirror's): clear-signed index and products files. */
export class SimplestreamsSource implements Source {
  readonly type = 'simplestreams';
  /** The tree's root, with a trailing slash. */
  readonly url: string;

  constructor(private readonly config: SimplestreamsSourceConfig, private readonly common: SourceCommon) {
    this.url = streamsRootUrl(config.url ?? defaultStreamsUrl(config.channel, config.variant));
  }

  private keyring(cache: DiscoverContext['cache'] | undefined, log: Logger): KeyringSource | undefined {
    if (this.config.verifySignature) return keyringSource(this.common.keyringPath, cache ?? NO_CACHE);
    log.warn({ event: 'source.signature.disabled' }, 'source.verifySignature is false: simplestreams metadata is NOT signature-checked; images are only as trustworthy as the connection');
    return undefined;
  }

  discover(ctx: DiscoverContext): Promise<StreamsDiscoveryResult> {
    const get = cachedGetter({
      store: ctx.cache, client: ctx.client, retries: ctx.http.retries, baseDelayMs: ctx.http.retryBaseDelayMs,
      maxDelayMs: ctx.http.retryMaxDelayMs, signal: ctx.signal, log: ctx.log, onBytes: ctx.onBytes, maxBytes: STREAMS_MAX_BYTES,
    });
    return discoverFromStreams(this.options(get, this.keyring(ctx.cache, ctx.log), ctx.log));
  }

  /** Reads and verifies the index, without state: says who signed it and that it lists the channel's products. */
  check(ctx: { client: Dispatcher; log: Logger; signal: AbortSignal }): Promise<string> {
    const get: CachedGet = async (url) => {
      const res = await getText(url, { client: ctx.client, signal: ctx.signal, retries: 0, maxBytes: STREAMS_MAX_BYTES });
      if (res.status !== 200) throw new Error(`GET ${url} answered ${res.status} to an unconditional request`);
      return { body: res.body, changed: true };
    };
    return checkStreamsIndex(this.options(get, this.keyring(undefined, ctx.log), ctx.log));
  }

  private options(get: CachedGet, keyring: KeyringSource | undefined, log: Logger) {
    const { config, common } = this;
    return { rootUrl: this.url, channel: config.channel, variant: config.variant, releases: common.releases, arches: config.arches, ftype: config.ftype, keyring, get, log };
  }
}

/** `check` keeps no state: nothing is remembered between its runs. */
const NO_CACHE: DiscoverContext['cache'] = {
  getCachedResponse: () => undefined, putCachedResponse: () => undefined,
  getCachedVerification: () => undefined, setCachedVerification: () => undefined,
  getCachedParse: () => undefined, setCachedParse: () => undefined,
};
