/**
 * The publish side of the pipeline. A target type lives in one folder, `src/targets/<type>/`, holding its
 * config schema, its factory, its `check()`, the digests it needs and its own property tables; it is made
 * known by one line in `registry.ts`. Nothing outside its folder knows its name.
 *
 *   export const fooTargetType = defineTargetType({
 *     type: 'foo', schema: fooTargetSchema,          // schema: z.strictObject({ name: targetName, type: z.literal('foo'), ... })
 *     create: (config, options) => new FooTarget(config, options),
 *   });
 */
import type { ProxyConfig } from '../fetch/proxy.js';
import type { Readable } from 'node:stream';
import { z } from 'zod';
import type { Logger } from '../log.js';
import { imageKey, type UpstreamImage } from '../image.js';

/** Every target's `name` key. */
export const targetName = z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only');

/** Keys every target type has: its name, which streams it carries, what becomes of its images of end-of-life releases. */
export const targetCommon = {
  name: targetName,
  /** Stream ids (`release/server`) this target carries; default every configured stream. */
  streams: z.array(z.string().regex(/^[a-z]+\/[a-z]+$/, 'a stream id like release/server')).min(1).optional(),
  /** Images of a release past its end of life: kept like any other (`keep`, the default when unset), hidden, or deleted (hidden first, then after the grace). */
  eol: z.enum(['keep', 'hide', 'delete']).optional(),
};

/** Digests a target may ask the download to compute in its one pass (node crypto names). */
export const DIGEST_ALGORITHMS = ['md5', 'sha1', 'sha256', 'sha512'] as const;
export type DigestAlgorithm = (typeof DIGEST_ALGORITHMS)[number];
/** Hex digests of a verified file by algorithm. */
export type FileDigests = Partial<Record<DigestAlgorithm, string>>;

/** A downloaded file whose sha256 matched the signed SHA256SUMS. */
export interface VerifiedFile {
  path: string;
  sizeBytes: number;
  sha256: string;
  /**
   * Further digests of the same bytes, computed in the download's pass for the targets that declare them
   * (`Target.digests`); absent (or partial) for a file downloaded before any such target was configured.
   */
  digests?: FileDigests;
}

/** What a target holds of ours, for retention. */
export interface PublishedImage {
  /** Target-specific reference: a Glance image id, a directory path. */
  ref: string;
  release: string;
  arch: string;
  variant: string;
  channel: string;
  serial: string;
  /** When it was hidden by retention (ms since epoch); undefined while visible. */
  hiddenAtMs?: number;
  /** Hidden, by retention or by hand (targets that cannot hide leave it out). */
  hidden?: boolean;
  /** False for a copy that is not (yet) whole and verified, e.g. a leftover of an interrupted upload. */
  complete?: boolean;
  /** True when the target forbids deleting it (Glance `protected`, a keep tag). */
  pinned: boolean;
  /** The signed sha256 of the image it is a copy of, where the target records it (Glance `cloudimg_sync_sha256`). */
  sha256?: string;
}

/** The state key of the image a target holds (the same key as the upstream image it was published from). */
export function publishedImageKey(image: PublishedImage): string {
  return imageKey(image as unknown as Pick<UpstreamImage, 'channel' | 'variant' | 'release' | 'arch' | 'serial'>);
}

export interface PublishResult {
  /** Target-specific reference, recorded in state. */
  ref: string;
  /** True when an existing, verified copy was adopted instead of uploading again. */
  adopted: boolean;
}

export interface SignedDocumentBytes {
  body: Buffer;
  /** The HTTP Last-Modified it was served with, when there was one. */
  lastModified?: string | null;
}

export interface PublishContext {
  log: Logger;
  signal?: AbortSignal;
  /** Called as soon as the target knows the reference it will use, before bytes move (crash safety). */
  onRef?: (ref: string) => void;
  /** Bytes handed to the target so far (uploads); the loop throttles and logs it as image.publish.progress. */
  onProgress?: (bytesDone: number) => void;
  /**
   * One of `image.signedBy` exactly as the source fetched and verified it (read from the response cache, no
   * request), with the server's Last-Modified; undefined when not cached. For targets that republish them.
   */
  signedDocument?: (url: string) => SignedDocumentBytes | undefined;
}

export interface StreamPublishContext extends PublishContext {
  /**
   * Settles once the download has ended: resolves with the verified file when its sha256 matched the signed
   * list, rejects otherwise. Until it resolves, what was streamed is unverified and must stay invisible.
   */
  verified: Promise<VerifiedFile>;
  /** The image's size once the download knows it (before its first byte); undefined when the server does not say. */
  sizeBytes: Promise<number | undefined>;
}

/**
 * A place verified images are published to. The sync loop talks only to this interface; it does not
 * know whether it is a directory or a Glance.
 */
export interface Target {
  readonly name: string;
  readonly type: string;
  /** Place a verified image on the target; idempotent (adopts a complete earlier copy). */
  publish(image: UpstreamImage, file: VerifiedFile, ctx: PublishContext): Promise<PublishResult>;
  /**
   * Present on targets configured to upload while downloading (Glance `method: stream`): `body` carries the
   * image's bytes as they arrive. The target must consume or destroy `body`, keep the result hidden until
   * `ctx.verified` resolves, and remove it if that rejects.
   */
  publishStream?(image: UpstreamImage, body: Readable, ctx: StreamPublishContext): Promise<PublishResult>;
  /** Every image of ours on the target (for retention). */
  listPublished(ctx: { log: Logger }): Promise<PublishedImage[]>;
  /** Hide an image (a step before deletion); targets without hiding may treat it as a no-op. */
  hide(image: PublishedImage, ctx: { log: Logger }): Promise<void>;
  /** Remove an image from the target. */
  remove(image: PublishedImage, ctx: { log: Logger }): Promise<void>;
  /**
   * Remove what interrupted publications of dead processes left behind (temporary files); called at the start
   * of a cycle. Returns what was removed.
   */
  sweep?(ctx: { log: Logger }): Promise<string[]>;
  /**
   * Get ready for this cycle's work without changing the target (authenticate, resolve what the config names), at
   * the start of the cycle, before any image is downloaded. Rejects with the error a publish would meet; the cycle
   * then leaves the target out (nothing downloaded for it, no retention on it). Absent: nothing to get ready.
   */
  prepare?(ctx: { log: Logger; signal?: AbortSignal }): Promise<void>;
  /**
   * Adopt a complete, verified copy of `image` the target already holds (same signed sha256), as `publish` adopts
   * one, without the file: the image then needs no download for this target. Resolves undefined when it holds none.
   * The cycle asks it only for images the target's listing shows such a copy of (`PublishedImage.sha256`, `complete`).
   */
  adoptHeld?(image: UpstreamImage, ctx: PublishContext): Promise<PublishResult | undefined>;
  /** Check that the target is usable (credentials, endpoint, write access) without changing it; says what was checked. */
  check?(ctx: { log: Logger; signal?: AbortSignal }): Promise<string | void>;
  /**
   * Read what the target's configuration points at beyond config.yaml (OpenStack credentials from OS_* or
   * clouds.yaml) without contacting it. Rejects with ConfigError when that is missing or invalid: commands
   * call it at start so that a configuration error is exit 2 everywhere, not a failed cycle later.
   */
  loadSettings?(): Promise<void>;
  /** Release connections (called on shutdown and config reload). */
  close?(): Promise<void>;
  /** Whether retention hides before deleting on this target. */
  readonly hidesBeforeDelete: boolean;
  /** How long a hidden image stays before retention deletes it. */
  readonly hideGraceMs: number;
  /** Publications to it at once when several images are in flight; unlimited when absent. */
  readonly concurrency?: number;
  /** Digests the target compares with what it holds after a publish: the download computes them once. */
  readonly digests?: readonly DigestAlgorithm[];
}

/** Options every factory gets. */
export interface CreateTargetOptions {
  /** Where targets read environment settings (e.g. OS_* for Glance); default this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** Logger of the target's clients (e.g. Keystone authentication, Glance uploads). */
  log?: Logger;
  /** config.http's proxy keys, under the target's own (`proxy`, `noProxy`) for targets reached over HTTP. */
  http?: ProxyConfig;
  /** Newest serials kept per stream (the config's `keep`), for targets that publish it (SCS's uuid_validity). */
  keep?: number;
}

/**
 * One registered target type: its config schema (a strict object with `name` and a literal `type`) and its
 * factory. Optional capabilities are on the Target it makes (`publishStream`, `check`, `digests`).
 */
export interface TargetType<Type extends string = string, Schema extends z.ZodType<{ name: string; type: Type }> = z.ZodType<{ name: string; type: Type }>> {
  readonly type: Type;
  readonly schema: Schema;
  create(config: z.output<Schema>, options: CreateTargetOptions): Target;
}

/** Declare a target type (keeps its config type flowing into `create`). */
export function defineTargetType<Type extends string, Schema extends z.ZodType<{ name: string; type: Type }>>(
  definition: TargetType<Type, Schema>,
): TargetType<Type, Schema> {
  return definition;
}
