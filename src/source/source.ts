/**
 * The upstream side of the pipeline: what exists now, with checksums from signed metadata. A source type lives
 * in one folder, `src/source/<type>/`, holding its config schema, discovery and verification; it is made known
 * by one line in `registry.ts`. The sync loop sees only the Source interface.
 *
 *   export const fooSourceType = defineSourceType({
 *     type: 'foo', schema: sourceSelection.extend({ type: z.literal('foo'), ... }).strict(),
 *     create: (config, common) => new FooSource(config, common),
 *   });
 */
import type { Dispatcher } from 'undici';
import { z } from 'zod';
import type { Arch, Channel, UpstreamImage, Variant } from '../image.js';
import type { Logger } from '../log.js';
import type { CachedResponse } from '../state/store.js';
import { streamSelectionShape, type StreamSelection } from './streams.js';

export const DEFAULT_SOURCE_URL = 'https://cloud-images.ubuntu.com';

/**
 * The selection keys every source type has (extend it with the type's own keys and `type`): `streams`, or
 * the one-stream shorthand `channel`/`variant`/`releases`/`arches` (resolved by streams.ts).
 */
export const sourceSelection = z.object({
  url: z.string().url().default(DEFAULT_SOURCE_URL),
  ...streamSelectionShape,
  verifySignature: z.boolean().default(true),
  keyring: z.string().optional(),
  /** A download whose Content-Length or body passes this many bytes is abandoned (an endless body fills no disk). */
  maxImageBytes: z.number().int().positive().default(16 * 1024 ** 3),
});

/** What a source needs of the state database: conditional-GET bodies and which signed lists verified. */
export interface SourceCache {
  getCachedResponse(url: string): CachedResponse | undefined;
  putCachedResponse(url: string, response: CachedResponse): void;
  getCachedVerification(url: string): string | undefined;
  setCachedVerification(url: string, verifiedWith: string): void;
  getCachedParse(url: string): string | undefined;
  setCachedParse(url: string, json: string): void;
}

/** HTTP settings of metadata requests (from config.http). */
export interface SourceHttpSettings {
  retries: number;
  retryBaseDelayMs: number;
  retryMaxDelayMs: number;
}

/** What a cycle hands a source to discover with. */
export interface DiscoverContext {
  /** Clock of the end-of-life checks (ms since epoch). */
  nowMs: number;
  cache: SourceCache;
  client?: Dispatcher;
  http: SourceHttpSettings;
  log: Logger;
  signal?: AbortSignal;
  /** Counts bytes of metadata bodies received. */
  onBytes?: (bytes: number) => void;
}

/** A release of a stream. */
export interface StreamRelease {
  /** `release/server` */
  stream: string;
  channel: Channel;
  variant: Variant;
  release: string;
}

/**
 * A configured release past its end of life (release table, the source's own date such as simplestreams
 * `support_eol`, or an `END OF LIFE` mark upstream): see end-of-life.ts.
 */
export interface EolRelease extends StreamRelease {
  /** End of standard support (YYYY-MM-DD) when known. */
  eol?: string;
  /** The release's folder (or product) is gone upstream. */
  gone: boolean;
  /** False for dailies: images of an end-of-life daily are not imported. */
  imported: boolean;
}

/** A configured arch that no recent serial has: the run is `incomplete`. */
export interface IncompleteArch extends StreamRelease {
  arch: Arch;
  reason: string;
}

export interface DiscoveryResult {
  /** For each stream/release/arch, its newest `keep` signed serials upstream. */
  images: UpstreamImage[];
  /** Release/streams that could not be read this cycle, with the reason. */
  failures: Array<StreamRelease & { error: unknown }>;
  incomplete: IncompleteArch[];
  eol: EolRelease[];
}

export interface Source {
  readonly type: string;
  /** Where images come from, credentials redacted (for logs). */
  readonly url: string;
  /** The newest signed images of each wanted release and arch. */
  discover(ctx: DiscoverContext): Promise<DiscoveryResult>;
  /** Probe that the source answers, changing nothing; says what was checked, throws saying why not. */
  check(ctx: { client: Dispatcher; log: Logger; signal: AbortSignal }): Promise<string>;
}

/** Settings resolved from the common keys for every source: the streams, `keep`, and the keyring file. */
export interface SourceCommon {
  streams: readonly StreamSelection[];
  /** Newest serials wanted per stream/release/arch (config `keep`). */
  keep: number;
  /** Absolute keyring path; signatures are checked with it unless `verifySignature` is false. */
  keyringPath: string;
}

export interface SourceType<Type extends string = string, Schema extends z.ZodType<{ type: Type }> = z.ZodType<{ type: Type }>> {
  readonly type: Type;
  readonly schema: Schema;
  create(config: z.output<Schema>, common: SourceCommon): Source;
}

/** Declare a source type (keeps its config type flowing into `create`). */
export function defineSourceType<Type extends string, Schema extends z.ZodType<{ type: Type }>>(
  definition: SourceType<Type, Schema>,
): SourceType<Type, Schema> {
  return definition;
}

/** GET a small text resource, answering from a cache when the server says it is unchanged. */
export type CachedGet = (url: string) => Promise<CachedText>;

export interface CachedText {
  body: Buffer;
  changed: boolean;
  /** The server's Last-Modified, when it sent one. */
  lastModified?: string;
  /** What this body was read as, kept beside it (JSON) until the body changes. */
  parsed?: { get(): string | undefined; set(json: string): void };
}
