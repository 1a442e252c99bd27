import type { Dispatcher } from 'undici';
import { getText } from '../../fetch/get-text.js';
import type { Logger } from '../../log.js';
import { cachedGetter } from '../cached-get.js';
import { keyringSource, type KeyringSource } from '../keyring.js';
import { ConfigError } from '../../errors.js';
import type { CachedGet, DiscoverContext, Source, SourceCommon } from '../source.js';
import type { StreamSelection } from '../streams.js';
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
    const first = common.streams[0];
    if (!first) throw new ConfigError('source: no stream selected', 'give source.releases (or source.streams)');
    if (config.url && common.streams.length > 1) {
      throw new ConfigError(`source.url of a simplestreams source names one tree, but ${common.streams.length} streams are configured (${common.streams.map((s) => s.id).join(', ')})`,
        'leave source.url unset (each stream reads Canonical\'s tree of its channel and variant), or configure one stream');
    }
    this.url = this.treeUrl(first);
  }

  /** The tree a stream is read from: `url`, else Canonical's tree of its channel and variant. */
  private treeUrl(stream: StreamSelection): string {
    return streamsRootUrl(this.config.url ?? defaultStreamsUrl(stream.channel, stream.variant));
  }

  private keyring(cache: DiscoverContext['cache'] | undefined, log: Logger): KeyringSource | undefined {
    if (this.config.verifySignature) return keyringSource(this.common.keyringPath, cache ?? NO_CACHE);
    log.warn({ event: 'source.signature.disabled' }, 'source.verifySignature is false: simplestreams metadata is NOT signature-checked; images are only as trustworthy as the connection');
    return undefined;
  }

  async discover(ctx: DiscoverContext): Promise<StreamsDiscoveryResult> {
    const get = cachedGetter({
      store: ctx.cache, client: ctx.client, retries: ctx.http.retries, baseDelayMs: ctx.http.retryBaseDelayMs,
      maxDelayMs: ctx.http.retryMaxDelayMs, signal: ctx.signal, log: ctx.log, onBytes: ctx.onBytes, maxBytes: STREAMS_MAX_BYTES,
    });
    const keyring = this.keyring(ctx.cache, ctx.log);
    const all: StreamsDiscoveryResult = { images: [], failures: [], incomplete: [], eol: [], documents: [] };
    for (const stream of this.common.streams) {
      const one = await discoverFromStreams({ ...this.options(stream, get, keyring, ctx.log), nowMs: ctx.nowMs });
      all.images.push(...one.images);
      all.failures.push(...one.failures);
      all.incomplete.push(...one.incomplete);
      all.eol.push(...one.eol);
      all.documents.push(...one.documents);
    }
    return all;
  }

  /** Reads and verifies the index, without state: says who signed it and that it lists the channel's products. */
  check(ctx: { client: Dispatcher; log: Logger; signal: AbortSignal }): Promise<string> {
    const get: CachedGet = async (url) => {
      const res = await getText(url, { client: ctx.client, signal: ctx.signal, retries: 0, maxBytes: STREAMS_MAX_BYTES });
      if (res.status !== 200) throw new Error(`GET ${url} answered ${res.status} to an unconditional request`);
      return { body: res.body, changed: true };
    };
    return checkStreamsIndex(this.options(this.common.streams[0]!, get, this.keyring(undefined, ctx.log), ctx.log));
  }

  private options(stream: StreamSelection, get: CachedGet, keyring: KeyringSource | undefined, log: Logger) {
    return {
      rootUrl: this.treeUrl(stream), channel: stream.channel, variant: stream.variant, releases: stream.releases, arches: stream.arches,
      ftype: this.config.ftype, keep: this.common.keep, keyring, get, log,
    };
  }
}

/** `check` keeps no state: nothing is remembered between its runs. */
const NO_CACHE: DiscoverContext['cache'] = {
  getCachedResponse: () => undefined, putCachedResponse: () => undefined,
  getCachedVerification: () => undefined, setCachedVerification: () => undefined,
  getCachedParse: () => undefined, setCachedParse: () => undefined,
};
