import type { Readable } from 'node:stream';
import type { Logger } from '../log.js';
import type { UpstreamImage } from '../source/image.js';
import type { FileDigests } from '../state/store.js';

/** A downloaded file whose sha256 matched the signed SHA256SUMS. */
export interface VerifiedFile {
  path: string;
  sizeBytes: number;
  sha256: string;
  /**
   * md5 and sha512 of the same bytes, computed in the download's pass when a target wants them
   * (`wantsDigests`); absent for a file downloaded before any such target was configured.
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
  /** True when the target forbids deleting it (Glance `protected`, a keep tag). */
  pinned: boolean;
}

export interface PublishResult {
  /** Target-specific reference, recorded in state. */
  ref: string;
  /** True when an existing, verified copy was adopted instead of uploading again. */
  adopted: boolean;
}

export interface PublishContext {
  log: Logger;
  signal?: AbortSignal;
  /** Called as soon as the target knows the reference it will use, before bytes move (crash safety). */
  onRef?: (ref: string) => void;
  /** Bytes handed to the target so far (uploads); the loop throttles and logs it as image.publish.progress. */
  onProgress?: (bytesDone: number) => void;
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
  /** The target compares md5 and sha512 with what it holds after a publish: the download computes them once. */
  readonly wantsDigests?: boolean;
}
