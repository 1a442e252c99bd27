/**
 * Publishes verified images into Glance v2 through Keystone.
 *
 *   lookup (ours: owner = our project, this target, same sha256, hidden included)
 *     -> adopt a verified copy | delete leftovers -> [diskFormat raw: qemu-img convert] -> create hidden + private
 *     -> onRef(id) -> upload (put / glance-direct / web-download) -> compare size and Glance's digest (os_hash_value,
 *     else md5) with ours -> reveal (visibility, os_hidden=false, cloudimg_sync_verified=true) -> move the latest
 *     pointer -> share with the configured members
 *
 * Raw: the verified qcow2 is converted into a sparse file beside it and that is uploaded, digested on the way
 * (qemu-img cannot write to a pipe; `stream` therefore converts after the verified download too). An import
 * that Glance's image_conversion plugin turned into raw is checked against a local conversion of the file.
 *
 * Any failure between create and reveal deletes the image; a crash leaves a hidden, unverified image
 * that the next publish of the same file deletes (or retention, once it is past `keep`).
 */
import { rm } from 'node:fs/promises';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { GlanceTargetConfig } from './schema.js';
import { SyncError, describeError } from '../../errors.js';
import { resolveProxySettings, type ProxyConfig, type ProxySettings } from '../../fetch/proxy.js';
import { silentLogger, type Logger } from '../../log.js';
import { loadAuthSettings, type AuthSettings } from '../../openstack/auth-config.js';
import { OpenStackError } from '../../openstack/errors.js';
import { GlanceClient, type CreateImageRequest, type GlanceImage, type JsonPatchOp, type UploadBody } from '../../openstack/glance.js';
import { KeystoneSession } from '../../openstack/keystone.js';
import { resolveProjectIds } from '../../openstack/projects.js';
import { tokenProjectId } from '../../openstack/token-project.js';
import type { UpstreamImage } from '../../image.js';
import {
  PROP, createImageRequest, isVerifiedCopy, newestVerified, propertyOf, rawConversionProperties, renderImageName, seriesFilter, toPublishedImage,
} from './image-spec.js';
import { FileUploadReader, digestFile, type ImageDigests } from './image-digests.js';
import { minDiskGiB, readDiskImageInfo } from './qcow2-info.js';
import { convertToRaw, qemuImgVersion, type RawCopy } from './raw-conversion.js';
import { DIGEST_ALGORITHMS, type DigestAlgorithm, type PublishContext, type PublishedImage, type PublishResult, type StreamPublishContext, type Target, type VerifiedFile } from '../target.js';

/** Glance's `hashing_algorithm` by default: what its images are compared by until one says otherwise. */
const GLANCE_DEFAULT_HASH = 'sha512';

/** Glance names hashlib's algorithms (`sha3_256`); node crypto writes them `sha3-256`. */
const nodeHashName = (glanceAlgo: string): string => glanceAlgo.replace(/_/g, '-');

/**
 * What a Glance image's bytes can be checked by: `os_hash_value` in its `os_hash_algo` (multihash, every Glance
 * since Rocky), else the md5 `checksum` of an older one. Undefined when Glance reports neither.
 */
export function glanceComparison(held: Pick<GlanceImage, 'os_hash_algo' | 'os_hash_value' | 'checksum'>): { algorithm: string; value: string; field: string } | undefined {
  if (held.os_hash_algo && held.os_hash_value) return { algorithm: nodeHashName(held.os_hash_algo), value: held.os_hash_value, field: 'os_hash_value' };
  if (held.checksum) return { algorithm: 'md5', value: held.checksum, field: 'checksum' };
  return undefined;
}

/**
 * The digests the download must compute for a Glance whose images are compared by `algorithm`, beyond the
 * sha256 it always computes: none when that is sha256 (the signed checksum is compared as it is), else that
 * one when the download's pass can compute it (an exotic one is read from the file after the upload).
 */
export function downloadDigestsFor(algorithm: string): DigestAlgorithm[] {
  if (algorithm === 'sha256') return [];
  return (DIGEST_ALGORITHMS as readonly string[]).includes(algorithm) ? [algorithm as DigestAlgorithm] : [];
}

export type GlanceUploadMethod = GlanceTargetConfig['method'];

export interface GlanceTargetOptions {
  /** Where OS_* variables, clouds.yaml and HTTPS_PROXY/NO_PROXY are looked up; default this process's environment. */
  env?: NodeJS.ProcessEnv;
  /** config.http's proxy keys (the target's own `proxy`/`noProxy` win over them). */
  http?: ProxyConfig;
  cwd?: string;
  homeDir?: string;
  /** Use this session (e.g. one shared per cloud) instead of making one; the target then never closes it. */
  session?: KeystoneSession;
  /** Logger of the Keystone session and Glance client (per-publish events go to the context's logger). */
  log?: Logger;
  /** Import status polling. Default 1 s. */
  importPollIntervalMs?: number;
  /** Clock of the hidden-at mark. */
  now?: () => number;
  /** Newest serials kept per stream (the config's `keep`): SCS's uuid_validity says so. */
  keep?: number;
}

/** Glance holds other bytes than the ones verified against the signed SHA256SUMS. */
export class GlanceHashMismatchError extends SyncError {
  constructor(readonly imageId: string, readonly mismatches: readonly string[]) {
    super(
      'GLANCE_HASH_MISMATCH',
      `Glance image ${imageId} does not hold the verified bytes (${mismatches.join('; ')}); it was deleted and never made visible`,
      'the bytes were altered on the way to Glance or in its store (a proxy, a faulty disk, or a web-download source serving other bytes); the upload is retried next cycle, check that path if it repeats',
      { retryable: true },
    );
  }
}

interface Connection {
  session: KeystoneSession;
  glance: GlanceClient;
  projectId: string;
}

export class GlanceTarget implements Target {
  readonly type = 'glance';
  readonly hidesBeforeDelete = true;
  readonly name: string;
  /** One upload at a time unless the config says more: a Glance's intake is its bottleneck. */
  readonly concurrency: number;
  /**
   * The algorithm this Glance's images are compared by (see glanceComparison), learned from every image it
   * reports; its default until then. Decides which digest the download computes for it.
   */
  private comparedBy = GLANCE_DEFAULT_HASH;
  readonly hideGraceMs: number;
  private readonly options: GlanceTargetOptions;
  private connection: Promise<Connection> | undefined;
  private settings: Promise<AuthSettings> | undefined;
  private importMethods: Promise<string[]> | undefined;
  private memberIds: Promise<string[]> | undefined;

  /**
   * Only with `method: stream` (and not `diskFormat: raw`, which converts the whole verified file first): the
   * sync loop then hands over the download as it arrives.
   */
  readonly publishStream?: (image: UpstreamImage, body: Readable, ctx: StreamPublishContext) => Promise<PublishResult>;

  constructor(readonly config: GlanceTargetConfig, options: GlanceTargetOptions = {}) {
    this.name = config.name;
    this.concurrency = config.concurrency;
    this.hideGraceMs = config.hideGraceHours * 3_600_000;
    this.options = options;
    if (config.method === 'stream' && config.diskFormat !== 'raw') this.publishStream = (image, body, ctx) => this.publishWhileDownloading(image, body, ctx);
  }

  /**
   * Only the digest Glance will be compared by: sha512 by default, nothing beyond sha256 when Glance hashes
   * with it. None for raw: Glance then holds the conversion, digested while it is uploaded.
   */
  get digests(): readonly DigestAlgorithm[] {
    return this.config.diskFormat === 'raw' ? [] : downloadDigestsFor(this.comparedBy);
  }

  private learnHashing(images: readonly GlanceImage[]): void {
    for (const image of images) {
      const by = glanceComparison(image);
      if (by && image.status === 'active') this.comparedBy = by.algorithm;
    }
  }

  /**
   * Stream-through: create the hidden image, upload the bytes as the download delivers them, then wait for
   * the loop's verdict on the download. Only when the download verified and Glance's size, md5 and sha512
   * match the verified file's (digested in the download's own pass) is the image revealed; otherwise it is
   * deleted.
   */
  private async publishWhileDownloading(image: UpstreamImage, body: Readable, ctx: StreamPublishContext): Promise<PublishResult> {
    const { session, glance, projectId } = await this.connect(ctx.signal);
    await this.members(session, ctx.signal);
    const log = ctx.log;
    let series = await this.findOurs(glance, projectId, seriesFilter(image), ctx.signal);
    const same = series.filter((i) => propertyOf(i, PROP.sha256) === image.sha256);
    const copy = same.find((i) => i.status === 'active' && propertyOf(i, PROP.verified) === 'true');
    const unflagged = same.find((i) => i.status === 'active' && i.os_hidden === false && propertyOf(i, PROP.verified) !== 'true');
    if (!copy && unflagged) {
      // Never delete a visible image that may hold the signed bytes: the verified file decides (see publish).
      body.destroy();
      throw new SyncError('GLANCE_UNFLAGGED_COPY', `image ${unflagged.id} is visible without the verified flag`,
        'none needed: it is checked against the verified file instead of streaming, and adopted if it holds the signed bytes', { retryable: true });
    }
    if (copy) {
      body.destroy();
      const file = await ctx.verified;
      if (isVerifiedCopy(copy, { ...file, virtualSizeBytes: (await readDiskImageInfo(file.path)).virtualSizeBytes })) {
        await this.revealAndPoint(glance, copy, series, image, log, ctx.signal);
        return { ref: copy.id, adopted: true };
      }
      throw new SyncError('GLANCE_COPY_MISMATCH', `image ${copy.id} claims sha256 ${image.sha256} but holds ${copy.size} bytes, not ${file.sizeBytes}`, 'it is deleted as a leftover and uploaded again next cycle', { retryable: true });
    }
    series = await this.deleteLeftovers(glance, series, same, log, ctx.signal);
    // The disk format and min_disk come from the verified file, set in the reveal step.
    const request = createImageRequest(this.config, image, { sha256: image.sha256 }, { format: 'qcow2', minDiskGiB: 0 }, { keep: this.options.keep });
    const created = await this.createRecorded(glance, request, 'stream', ctx);
    let held: GlanceImage;
    const fix: JsonPatchOp[] = [];
    try {
      const started = performance.now();
      let streamedBytes = 0;
      const counted = new Transform({
        highWaterMark: 1024 * 1024,
        transform(chunk: Buffer, _encoding, callback) {
          streamedBytes += chunk.length;
          ctx.onProgress?.(streamedBytes);
          callback(null, chunk);
        },
      });
      // pipeline, not pipe: a body already destroyed (the download failed early) errors the upload at once.
      pipeline(body, counted).catch(() => undefined);
      // With the size known (the download's Content-Length) Glance gets a plain body, much faster for it
      // to read than a chunked one; without it, chunked.
      await glance.uploadImageData(created.id, this.uploadBody(counted), await ctx.sizeBytes, ctx.signal);
      const file = await ctx.verified;
      if (streamedBytes !== file.sizeBytes) {
        throw new SyncError('GLANCE_UPLOAD_INCOMPLETE', `the stream to image ${created.id} carried ${streamedBytes} of ${file.sizeBytes} bytes`, 'retried with the verified file', { retryable: true });
      }
      held = await glance.getImage(created.id, ctx.signal);
      const local = await digestsOfVerified(file, streamedBytes, this.comparingWith(held), ctx.signal);
      const compared = checkHeldBytes(held, local, file);
      const disk = await readDiskImageInfo(file.path);
      // Sent with the reveal, in the same PATCH: the image is never visible without them.
      if (disk.format !== 'qcow2') fix.push({ op: 'replace', path: '/disk_format', value: disk.format });
      const minDisk = minDiskGiB(disk.virtualSizeBytes);
      if (minDisk > 0) fix.push({ op: 'replace', path: '/min_disk', value: minDisk });
      log.info({ event: 'glance.image.verified', imageId: created.id, method: 'stream', bytes: local.sizeBytes, compared, durationMs: Math.round(performance.now() - started) },
        `Glance holds the verified bytes of ${image.fileName} (${compared.join(', ')} match)`);
    } catch (err) {
      body.destroy();
      await this.discard(glance, created.id, log, err, ctx.signal);
      throw err;
    }
    await this.revealNew(glance, held, series, image, log, ctx.signal, fix);
    return { ref: held.id, adopted: false };
  }

  async publish(image: UpstreamImage, file: VerifiedFile, ctx: PublishContext): Promise<PublishResult> {
    const { session, glance, projectId } = await this.connect(ctx.signal);
    // Before anything is made: a member that does not resolve fails the publication cleanly.
    await this.members(session, ctx.signal);
    const log = ctx.log;
    const disk = await readDiskImageInfo(file.path);
    // One lookup serves both the search for an earlier copy and the latest pointer of the series.
    let series = await this.findOurs(glance, projectId, seriesFilter(image), ctx.signal);
    const same = series.filter((i) => propertyOf(i, PROP.sha256) === file.sha256);
    const copies = verifiedCopies(same, { ...file, virtualSizeBytes: disk.virtualSizeBytes });
    // A visible, active image of ours whose flag was removed (by hand, or lost with the state) is never deleted
    // when Glance holds exactly the signed bytes: it is verified again and adopted.
    if (copies.length === 0) {
      const unflagged = await this.verifiedUnflagged(same, file, log, ctx.signal);
      if (unflagged) copies.push(unflagged);
    }
    series = await this.deleteLeftovers(glance, series, same.filter((i) => !copies.includes(i)), log, ctx.signal);
    if (copies.length > 0) return this.adoptOldest(glance, copies, series, image, log, ctx.signal);

    const method = await this.chooseMethod(glance, log, ctx.signal);
    if (disk.format !== 'qcow2') log.warn({ event: 'glance.image.not_qcow2', path: file.path }, `${image.fileName} is not qcow2; publishing it as raw`);
    const raw = this.config.diskFormat === 'raw' && disk.format === 'qcow2' ? await this.convertVerified(file, log, ctx.signal) : undefined;
    try {
      const request = createImageRequest(this.config, image, file, { format: raw ? 'raw' : disk.format, minDiskGiB: minDiskGiB(disk.virtualSizeBytes) }, { keep: this.options.keep });
      if (raw) request[PROP.convertedFrom] = 'qcow2';
      const created = await this.createRecorded(glance, request, method, ctx);
      let held: GlanceImage;
      const fix: JsonPatchOp[] = [];
      try {
        const started = performance.now();
        let compared: string[];
        let bytes: number;
        if (raw) {
          const local = await this.sendRaw(glance, created.id, method, raw, ctx.signal, ctx.onProgress);
          held = await glance.getImage(created.id, ctx.signal);
          compared = checkGlanceHolds(held, local);
          fix.push(...rawConversionOps(local));
          bytes = local.sizeBytes;
        } else {
          const sent = await this.transfer(glance, created.id, method, image, file, ctx.signal, ctx.onProgress);
          held = await glance.getImage(created.id, ctx.signal);
          if (held.disk_format === 'raw' && request.disk_format === 'qcow2') {
            // Glance's image_conversion import plugin stored the guest disk as raw: what it must hold now is the raw
            // conversion of the verified file, made here the same way.
            log.info({ event: 'glance.image.converted_by_glance', imageId: created.id, method, diskFormat: held.disk_format },
              `Glance converted image ${created.id} to raw on import; checking it against a local conversion`);
            const local = await this.rawDigestsOf(file, this.comparingWith(held), log, ctx.signal);
            compared = checkGlanceHolds(held, local);
            fix.push(...rawConversionOps(local));
            bytes = local.sizeBytes;
          } else {
            const local = await digestsOfVerified(file, sent.sizeBytes, this.comparingWith(held), ctx.signal, sent.digests);
            compared = checkHeldBytes(held, local, file);
            bytes = local.sizeBytes;
          }
        }
        log.info({ event: 'glance.image.verified', imageId: created.id, method, bytes, compared, durationMs: Math.round(performance.now() - started) },
          `Glance holds the verified bytes of ${image.fileName}${fix.length > 0 ? ' converted to raw' : ''} (${compared.join(', ')} match)`);
      } catch (err) {
        await this.discard(glance, created.id, log, err, ctx.signal);
        // The upload was not digested (the download's digests stood in): find out whether the cache file moved.
        throw err instanceof GlanceHashMismatchError && !raw && !uploadDigests(file, this.digests) ? await explainMismatch(err, file, ctx.signal) : err;
      }
      await this.revealNew(glance, held, series, image, log, ctx.signal, fix);
      return { ref: held.id, adopted: false };
    } finally {
      if (raw) await rm(raw.path, { force: true });
    }
  }

  /**
   * Before the download: adopt a verified copy Glance already holds (our flag, the signed sha256, and the signed
   * size where the source gives one), as publish does, so that the image needs no download for this target.
   * Leftovers of the same sha256 never revealed (interrupted uploads) are deleted as publish deletes them; a
   * visible image without our flag is left for publish, which checks it against the verified file.
   */
  async adoptHeld(image: UpstreamImage, ctx: PublishContext): Promise<PublishResult | undefined> {
    const { session, glance, projectId } = await this.connect(ctx.signal);
    await this.members(session, ctx.signal);
    let series = await this.findOurs(glance, projectId, seriesFilter(image), ctx.signal);
    const same = series.filter((i) => propertyOf(i, PROP.sha256) === image.sha256);
    const copies = verifiedCopies(same, { sha256: image.sha256, sizeBytes: image.sizeBytes });
    if (copies.length === 0) return undefined;
    const neverRevealed = same.filter((i) => !copies.includes(i) && i.os_hidden === true && propertyOf(i, PROP.verified) !== 'true');
    series = await this.deleteLeftovers(glance, series, neverRevealed, ctx.log, ctx.signal);
    return this.adoptOldest(glance, copies, series, image, ctx.log, ctx.signal);
  }

  /**
   * At the start of a cycle, before any download: authenticate (a token, its project, Glance in its catalog) and
   * resolve the configured member projects, so that a wrong password or an unknown member fails now, not after
   * the download. The session keeps the token for the cycle's listing and publications.
   */
  async prepare(ctx: { log: Logger; signal?: AbortSignal }): Promise<void> {
    const { session } = await this.connect(ctx.signal);
    // A project given by id needs no request to find it: the token is asked for here, whatever the settings.
    await session.getToken(ctx.signal);
    await session.imageEndpoint(ctx.signal);
    await this.members(session, ctx.signal);
  }

  async listPublished(ctx: { log: Logger }): Promise<PublishedImage[]> {
    const { glance, projectId } = await this.connect();
    const images = await this.findOurs(glance, projectId);
    const published: PublishedImage[] = [];
    for (const image of images) {
      const p = toPublishedImage(image, this.config.keepTags);
      if (p) published.push(p);
      else ctx.log.warn({ event: 'glance.image.unrecognised', imageId: image.id }, `image ${image.id} has our target property but not the identity properties; left alone`);
    }
    return published;
  }

  async hide(image: PublishedImage, _ctx: { log: Logger }): Promise<void> {
    const { glance } = await this.connect();
    const now = new Date((this.options.now ?? Date.now)()).toISOString();
    await glance.patchImage(image.ref, [
      { op: 'replace', path: '/os_hidden', value: true },
      { op: 'add', path: `/${PROP.hiddenAt}`, value: now },
    ]);
  }

  async remove(image: PublishedImage, _ctx: { log: Logger }): Promise<void> {
    const { glance } = await this.connect();
    try {
      await glance.deleteImage(image.ref);
    } catch (err) {
      if (err instanceof OpenStackError && (err.status === 403 || err.status === 409)) {
        throw new SyncError(
          'GLANCE_DELETE_REFUSED',
          `Glance refused to delete image ${image.ref}: ${err.message}`,
          'the image is protected or in use (by a server or a snapshot); it stays hidden and deleting it is retried next run',
          { retryable: true, cause: err },
        );
      }
      throw err;
    }
  }

  /**
   * Probe without changing anything (for `cloudimg-sync check`): authenticate, find Glance, see whether it
   * offers the configured method, count our images. Throws the same errors a publish would.
   */
  async check(ctx: { log: Logger; signal?: AbortSignal }): Promise<string> {
    const { session, glance, projectId } = await this.connect(ctx.signal);
    const endpoint = await session.imageEndpoint(ctx.signal);
    const method = await this.chooseMethod(glance, ctx.log, ctx.signal);
    const ours = await this.findOurs(glance, projectId, {}, ctx.signal);
    const used = method === this.config.method ? method : `${method} (${this.config.method} not available)`;
    const format = this.config.diskFormat === 'raw' ? `, disk format raw (${await qemuImgVersion()})` : '';
    return `Glance ${endpoint}, project ${projectId}, method ${used}${format}, ${ours.length} image(s) of this target`;
  }

  /** Release the HTTP connections (when the target made its own session). */
  async close(): Promise<void> {
    const connection = this.connection;
    this.connection = undefined;
    if (!connection || this.options.session) return;
    const made = await connection.catch(() => undefined);
    await made?.session.close();
  }

  /**
   * The bytes as they go to Glance. The identity here; a test overrides it to make Glance hold other bytes
   * than the verified ones.
   */
  protected uploadBody(body: UploadBody): UploadBody {
    return body;
  }

  private connect(signal?: AbortSignal): Promise<Connection> {
    this.connection ??= this.openConnection(signal).catch((err: unknown) => {
      this.connection = undefined;
      throw err;
    });
    return this.connection;
  }

  /** Credentials and endpoint settings (OS_*, clouds.yaml, the target's keys), read once; ConfigError when missing. */
  async loadSettings(): Promise<void> {
    this.proxySettings();
    if (!this.options.session) await this.authSettings();
  }

  /** The proxy this cloud is reached through: the environment, under config.http, under the target's own keys. */
  proxySettings(): ProxySettings {
    return resolveProxySettings(this.options.env ?? process.env, this.options.http, { proxy: this.config.proxy, noProxy: this.config.noProxy });
  }

  private authSettings(): Promise<AuthSettings> {
    const { config, options } = this;
    this.settings ??= loadAuthSettings(
      { cloud: config.cloud, regionName: config.region, interface: config.interface, imageEndpoint: config.endpoint, auth: config.auth },
      { env: options.env, cwd: options.cwd, homeDir: options.homeDir },
    );
    return this.settings;
  }

  private async openConnection(signal?: AbortSignal): Promise<Connection> {
    const { options } = this;
    const log = options.log ?? silentLogger();
    const session = options.session ?? new KeystoneSession(await this.authSettings(), { log, proxy: this.proxySettings() });
    try {
      const projectId = await tokenProjectId(session, signal);
      return { session, glance: new GlanceClient(session, { log }), projectId };
    } catch (err) {
      if (!options.session) await session.close();
      throw err;
    }
  }

  /** Filter for our images: owned by our project, made by this target, plus `more`. */
  private ours(projectId: string, more: Record<string, string> = {}): Record<string, string> {
    return { owner: projectId, [PROP.target]: this.name, ...more };
  }

  /** The configured method, or `put` (logged, with the reason) when this Glance cannot do it. */
  private async chooseMethod(glance: GlanceClient, log: Logger, signal?: AbortSignal): Promise<'put' | 'web-download' | 'glance-direct'> {
    const wanted = this.config.method;
    if (wanted === 'put') return 'put';
    // stream: this is the verified file of a cached image, or the fallback after a stream failed.
    if (wanted === 'stream') return 'put';
    this.importMethods ??= glance.getImportInfo(signal).then((info) => info.methods).catch((err: unknown) => {
      this.importMethods = undefined;
      throw err;
    });
    const offered = await this.importMethods;
    if (offered.includes(wanted)) return wanted;
    log.warn({ event: 'image.publish.fallback', method: wanted, used: 'put', reason: `Glance offers only: ${offered.join(', ') || 'no import methods'}` },
      `Glance does not offer ${wanted}; uploading with put`);
    return 'put';
  }

  /**
   * Move the bytes with `method`; returns how many went up and, when the file was digested on the way (the
   * download did not compute what this Glance is compared by), its digests.
   */
  private async transfer(
    glance: GlanceClient, id: string, method: 'put' | 'web-download' | 'glance-direct', image: UpstreamImage, file: VerifiedFile, signal?: AbortSignal, onProgress?: (bytes: number) => void,
  ): Promise<{ sizeBytes: number; digests?: ImageDigests }> {
    const importOptions = { timeoutMs: this.config.importTimeoutMinutes * 60_000, intervalMs: this.options.importPollIntervalMs ?? 1_000, signal };
    if (method === 'web-download') {
      await glance.importImage(id, { name: 'web-download', uri: image.url }, signal).then(() => glance.waitForImport(id, importOptions));
      return { sizeBytes: file.sizeBytes };
    }
    // Read afresh if Glance refuses the token and the client sends it again. Digested on the way only when
    // the download did not digest it already.
    const needed = uploadDigests(file, this.digests);
    const reader = new FileUploadReader(file.path, { signal, digest: needed ?? false });
    reader.onBytes = onProgress;
    const open = () => this.uploadBody(reader);
    if (method === 'put') {
      await glance.uploadImageData(id, open, file.sizeBytes, signal);
    } else {
      await glance.stageImageData(id, open, file.sizeBytes, signal);
      await glance.importImage(id, { name: 'glance-direct' }, signal);
      await glance.waitForImport(id, importOptions);
    }
    const sentBytes = reader.bytesRead();
    if (sentBytes === undefined) throw new SyncError('GLANCE_UPLOAD_INCOMPLETE', `the upload of image ${id} ended before the whole file was read`, 'retried next cycle', { retryable: true });
    return { sizeBytes: sentBytes, digests: reader.digests() };
  }

  /** The raw conversion, uploaded with sha256 and the digest Glance is compared by computed on the way. */
  private async sendRaw(
    glance: GlanceClient, id: string, method: 'put' | 'web-download' | 'glance-direct', raw: RawCopy, signal?: AbortSignal, onProgress?: (bytes: number) => void,
  ): Promise<ImageDigests> {
    // The schema refuses web-download with diskFormat raw.
    if (method === 'web-download') throw new SyncError('GLANCE_RAW_WEB_DOWNLOAD', 'web-download cannot carry a local raw conversion', 'use method put, stream or glance-direct with diskFormat: raw');
    const reader = new FileUploadReader(raw.path, { signal, digest: downloadDigestsFor(this.comparedBy) });
    reader.onBytes = onProgress;
    const open = () => this.uploadBody(reader);
    if (method === 'put') {
      await glance.uploadImageData(id, open, raw.sizeBytes, signal);
    } else {
      await glance.stageImageData(id, open, raw.sizeBytes, signal);
      await glance.importImage(id, { name: 'glance-direct' }, signal);
      await glance.waitForImport(id, { timeoutMs: this.config.importTimeoutMinutes * 60_000, intervalMs: this.options.importPollIntervalMs ?? 1_000, signal });
    }
    const digests = reader.digests();
    if (!digests || digests.sizeBytes !== raw.sizeBytes) throw new SyncError('GLANCE_UPLOAD_INCOMPLETE', `the upload of image ${id} ended before the whole raw file was read`, 'retried next cycle', { retryable: true });
    return digests;
  }

  /**
   * The verified qcow2 as a raw file beside it. The qcow2 is hashed again while qemu-img reads it: what is
   * converted must still be what was verified.
   */
  private async convertVerified(file: VerifiedFile, log: Logger, signal?: AbortSignal): Promise<RawCopy> {
    const started = performance.now();
    const [converted, hashed] = await Promise.allSettled([convertToRaw(file.path, `${file.path}.raw`, { signal }), digestFile(file.path, [], signal)]);
    if (converted.status === 'rejected' || hashed.status === 'rejected' || hashed.value.sha256 !== file.sha256 || hashed.value.sizeBytes !== file.sizeBytes) {
      if (converted.status === 'fulfilled') await rm(converted.value.path, { force: true });
      if (converted.status === 'rejected') throw converted.reason;
      if (hashed.status === 'rejected') throw hashed.reason;
      throw cacheFileChanged(file, hashed.value);
    }
    log.info({ event: 'glance.raw.converted', sourceBytes: file.sizeBytes, bytes: converted.value.sizeBytes, durationMs: Math.round(performance.now() - started) },
      `converted ${file.path} to raw (${converted.value.sizeBytes} bytes)`);
    return converted.value;
  }

  /** Digests of the verified file's raw conversion (made, digested, removed): what Glance's own conversion must hold. */
  private async rawDigestsOf(file: VerifiedFile, algorithm: string | undefined, log: Logger, signal?: AbortSignal): Promise<ImageDigests> {
    const raw = await this.convertVerified(file, log, signal);
    try {
      return await digestFile(raw.path, algorithm && algorithm !== 'sha256' ? [algorithm] : [], signal);
    } finally {
      await rm(raw.path, { force: true });
    }
  }

  /** The algorithm `held` is compared by, remembered for the next downloads. */
  private comparingWith(held: GlanceImage): string | undefined {
    this.learnHashing([held]);
    return glanceComparison(held)?.algorithm;
  }

  /**
   * Make a verified image what a fresh publish makes it (visible, with the target's visibility, marked
   * verified), and put `cloudimg_sync_latest=true` and the stable name on the newest verified image of the
   * series before taking them off the others: at every moment some image carries the pointer. The image
   * and the pointer usually change in one PATCH, with `fix` (what only the verified file told, e.g. the
   * min_disk of a streamed image) in it too.
   */
  private async revealAndPoint(
    glance: GlanceClient, image: GlanceImage, series: readonly GlanceImage[], upstream: UpstreamImage, log: Logger, signal?: AbortSignal,
    fix: readonly JsonPatchOp[] = [],
  ): Promise<void> {
    const ops = new Map<string, JsonPatchOp[]>();
    const opsOf = (id: string) => ops.get(id) ?? ops.set(id, []).get(id)!;
    opsOf(image.id).push(...fix);
    if (image.os_hidden !== false) opsOf(image.id).push({ op: 'replace', path: '/os_hidden', value: false });
    if (image.visibility !== this.config.visibility) opsOf(image.id).push({ op: 'replace', path: '/visibility', value: this.config.visibility });
    if (propertyOf(image, PROP.verified) !== 'true') opsOf(image.id).push({ op: 'add', path: `/${PROP.verified}`, value: 'true' });
    if (propertyOf(image, PROP.hiddenAt) !== undefined) opsOf(image.id).push({ op: 'remove', path: `/${PROP.hiddenAt}` });

    const revealed: GlanceImage = { ...image, os_hidden: false, [PROP.verified]: 'true', [PROP.hiddenAt]: undefined };
    const view = [...series.filter((i) => i.id !== image.id), revealed];
    const newest = newestVerified(view);
    const stableName = this.config.stableName ? renderImageName(this.config.stableName, upstream) : undefined;
    const previous: string[] = [];
    if (newest) {
      if (propertyOf(newest, PROP.latest) !== 'true') opsOf(newest.id).push({ op: 'add', path: `/${PROP.latest}`, value: 'true' });
      if (stableName !== undefined && newest.name !== stableName) opsOf(newest.id).push({ op: 'replace', path: '/name', value: stableName });
      for (const other of view.filter((i) => i.id !== newest.id)) {
        const before = opsOf(other.id).length;
        if (propertyOf(other, PROP.latest) !== undefined) opsOf(other.id).push({ op: 'remove', path: `/${PROP.latest}` });
        const templateName = propertyOf(other, PROP.templateName);
        if (stableName !== undefined && other.name === stableName && templateName) opsOf(other.id).push({ op: 'replace', path: '/name', value: templateName });
        if (opsOf(other.id).length > before) previous.push(other.id);
      }
    }
    // The newest first (it takes the pointer), then the image itself, then the rest (they give it up).
    const order = [...new Set([newest?.id, image.id, ...ops.keys()])].filter((id): id is string => id !== undefined);
    for (const id of order) {
      const list = ops.get(id);
      if (list && list.length > 0) await glance.patchImage(id, list, signal);
    }
    if (newest && (previous.length > 0 || ops.get(newest.id)?.some((o) => o.path === `/${PROP.latest}`))) {
      log.info({ event: 'glance.latest.moved', imageId: newest.id, previous, ...(stableName ? { stableName } : {}) }, `latest pointer now on ${newest.id}`);
    }
    await this.shareWithMembers(glance, image.id, log, signal);
  }

  /** The configured member projects as ids, resolved once per target (a failure is tried again next time). */
  private members(session: KeystoneSession, signal?: AbortSignal): Promise<string[]> {
    if (this.config.members.length === 0) return Promise.resolve([]);
    this.memberIds ??= resolveProjectIds(session, this.config.members, signal).catch((err: unknown) => {
      this.memberIds = undefined;
      throw err;
    });
    return this.memberIds;
  }

  /**
   * Share a revealed image with every configured member project that does not have it yet, and accept it on
   * their behalf where Glance lets these credentials (an admin may; otherwise the project accepts it itself).
   * Members added by hand are left alone.
   */
  private async shareWithMembers(glance: GlanceClient, id: string, log: Logger, signal?: AbortSignal): Promise<void> {
    const wanted = await (this.memberIds ?? Promise.resolve([]));
    if (wanted.length === 0) return;
    const status = new Map((await glance.listMembers(id, signal)).map((m) => [m.member_id, m.status]));
    for (const member of wanted) {
      if (!status.has(member)) {
        await glance.addMember(id, member, signal);
        log.info({ event: 'glance.member.added', imageId: id, member }, `shared image ${id} with project ${member}`);
      }
      if (status.get(member) === 'accepted') continue;
      try {
        await glance.setMemberStatus(id, member, 'accepted', signal);
      } catch (err) {
        if (!(err instanceof OpenStackError && (err.status === 403 || err.status === 404))) throw err;
        if (status.get(member) === 'pending') continue; // said so when it was added
        log.warn({ event: 'glance.member.pending', imageId: id, member, err: describeError(err) },
          `project ${member} has to accept image ${id} itself (these credentials may not accept for it)`);
      }
    }
  }

  /**
   * Create the hidden image and record its id in state before anything else, so a crash from here on leaves
   * an id the next run cleans up; if recording fails, the image is deleted at once.
   */
  private async createRecorded(glance: GlanceClient, request: CreateImageRequest, method: string, ctx: PublishContext): Promise<GlanceImage> {
    const created = await glance.createImage(request, ctx.signal);
    try {
      ctx.onRef?.(created.id);
    } catch (err) {
      await this.discard(glance, created.id, ctx.log, err, ctx.signal);
      throw err;
    }
    ctx.log.info({ event: 'glance.image.created', imageId: created.id, method, minDisk: request.min_disk }, `created hidden image ${created.id}`);
    return created;
  }

  /** Adopt the oldest of verified `copies` (several: logged): revealed and given the latest pointer like a new image. */
  private async adoptOldest(
    glance: GlanceClient, copies: readonly GlanceImage[], series: readonly GlanceImage[], image: UpstreamImage, log: Logger, signal?: AbortSignal,
  ): Promise<PublishResult> {
    const [adopted, ...duplicates] = copies as [GlanceImage, ...GlanceImage[]];
    if (duplicates.length > 0) log.warn({ event: 'glance.image.duplicates', imageId: adopted.id, duplicates: duplicates.map((i) => i.id) }, 'several verified copies of this image; adopting the oldest');
    await this.revealAndPoint(glance, adopted, series, image, log, signal);
    return { ref: adopted.id, adopted: true };
  }

  /**
   * Of images carrying this sha256 but not our verified flag, a visible, active one whose size and Glance digest
   * (os_hash_value, else checksum) match the verified file: it holds the signed bytes and is adopted.
   */
  private async verifiedUnflagged(same: readonly GlanceImage[], file: VerifiedFile, log: Logger, signal?: AbortSignal): Promise<GlanceImage | undefined> {
    const candidates = same.filter((i) => i.status === 'active' && i.os_hidden === false && propertyOf(i, PROP.verified) !== 'true'
      && i.size === file.sizeBytes && glanceComparison(i) !== undefined);
    for (const candidate of candidates) {
      const local = await digestsOfVerified(file, file.sizeBytes, this.comparingWith(candidate), signal);
      let compared: string[];
      try {
        compared = checkHeldBytes(candidate, local, file);
      } catch (err) {
        if (err instanceof GlanceHashMismatchError) continue;
        throw err;
      }
      log.warn({ event: 'glance.image.reverified', imageId: candidate.id, bytes: local.sizeBytes, compared },
        `image ${candidate.id} lacked the verified flag but holds exactly the signed bytes (${compared.join(', ')}); adopting it`);
      return candidate;
    }
    return undefined;
  }

  /** Delete images of ours left by an earlier attempt (never verified); returns the series without them. */
  private async deleteLeftovers(glance: GlanceClient, series: GlanceImage[], leftovers: readonly GlanceImage[], log: Logger, signal?: AbortSignal): Promise<GlanceImage[]> {
    for (const leftover of leftovers) {
      await glance.deleteImage(leftover.id, signal);
      log.warn({ event: 'glance.image.leftover_deleted', imageId: leftover.id, status: leftover.status },
        `deleted leftover image ${leftover.id} (${leftover.status}, never verified) of an earlier attempt`);
    }
    return series.filter((i) => !leftovers.includes(i));
  }

  /** Reveal a freshly verified image; if the reveal itself fails, the image is still half-made and is deleted. */
  private async revealNew(
    glance: GlanceClient, held: GlanceImage, series: readonly GlanceImage[], image: UpstreamImage, log: Logger, signal?: AbortSignal,
    fix: readonly JsonPatchOp[] = [],
  ): Promise<void> {
    try {
      await this.revealAndPoint(glance, held, [...series, held], image, log, signal, fix);
    } catch (err) {
      // Not revealed (the PATCH failed): still a half-made image. Revealed but the pointer failed to move:
      // a complete image, adopted by the next run, which moves the pointer again.
      if (!(await this.isRevealed(glance, held.id))) await this.discard(glance, held.id, log, err, signal);
      throw err;
    }
  }

  private async isRevealed(glance: GlanceClient, id: string): Promise<boolean> {
    try {
      const image = await glance.getImage(id);
      return image.os_hidden === false && propertyOf(image, PROP.verified) === 'true';
    } catch {
      return false;
    }
  }

  /** Our images matching `filter`, hidden ones included (Glance lists those only when asked: both in parallel). */
  private async findOurs(glance: GlanceClient, projectId: string, filter: Record<string, string> = {}, signal?: AbortSignal): Promise<GlanceImage[]> {
    const ours = this.ours(projectId, filter);
    const [visible, hidden] = await Promise.all([
      glance.findImages(ours, { signal }),
      glance.findImages({ ...ours, os_hidden: 'true' }, { signal }),
    ]);
    this.learnHashing(visible);
    return [...visible, ...hidden];
  }

  /**
   * Delete a half-made image; a failure to do so is logged (the next publish or retention removes it). After a
   * shutdown (`signal` aborted) this is the routine end of an interrupted upload: info, not a warning.
   */
  private async discard(glance: GlanceClient, id: string, log: Logger, reason: unknown, signal?: AbortSignal): Promise<void> {
    try {
      // Not with the signal: an abort is the reason to clean up, not a reason to stop cleaning up.
      await glance.deleteImage(id);
      const shutdown = signal?.aborted === true;
      log[shutdown ? 'info' : 'warn']({ event: 'glance.image.discarded', imageId: id, err: describeError(reason) },
        `deleted half-made image ${id}${shutdown ? ' (upload stopped by shutdown)' : ''}`);
    } catch (err) {
      log.error({ event: 'glance.image.discard_failed', imageId: id, err: describeError(err) }, `could not delete half-made image ${id}; it stays hidden and is removed on a later run`);
    }
  }
}

/** Of images carrying one sha256, the verified copies of `expected` (see isVerifiedCopy), oldest first. */
function verifiedCopies(same: readonly GlanceImage[], expected: Parameters<typeof isVerifiedCopy>[1]): GlanceImage[] {
  return same.filter((i) => isVerifiedCopy(i, expected)).sort((a, b) => (a.created_at ?? '').localeCompare(b.created_at ?? ''));
}

/**
 * The digests (besides sha256) an upload of `file` must compute on the way because the download did not:
 * undefined when the download's pass has every one `wanted`.
 */
function uploadDigests(file: VerifiedFile, wanted: readonly DigestAlgorithm[]): DigestAlgorithm[] | undefined {
  return wanted.every((a) => file.digests?.[a]) ? undefined : [...wanted];
}

/**
 * What Glance must hold after `sentBytes` went up, in the digest it is compared by (`algorithm`): from the
 * upload's own pass, from the download's, or (a file downloaded before this Glance wanted that digest, an
 * algorithm the download does not compute) read from the file now.
 */
async function digestsOfVerified(
  file: VerifiedFile, sentBytes: number, algorithm: string | undefined, signal?: AbortSignal, uploaded?: ImageDigests,
): Promise<ImageDigests> {
  const wanted = algorithm && algorithm !== 'sha256' ? [algorithm] : [];
  if (uploaded && wanted.every((a) => uploaded.digests[a])) return uploaded;
  const known: Record<string, string> = { sha256: file.sha256, ...file.digests };
  if (wanted.every((a) => known[a])) return { sizeBytes: sentBytes, sha256: file.sha256, digests: known };
  return digestFile(file.path, wanted, signal);
}

/**
 * Glance holds other bytes than the download digested. If the cached file itself no longer has the
 * verified sha256, that is the cause to report; otherwise the mismatch stands.
 */
async function explainMismatch(err: GlanceHashMismatchError, file: VerifiedFile, signal?: AbortSignal): Promise<SyncError> {
  const now = await digestFile(file.path, [], signal).catch(() => undefined);
  if (!now || (now.sha256 === file.sha256 && now.sizeBytes === file.sizeBytes)) return err;
  return cacheFileChanged(file, now);
}

function cacheFileChanged(file: VerifiedFile, now: ImageDigests): SyncError {
  return new SyncError(
    'CACHE_FILE_CHANGED',
    `${file.path} changed since it was verified (sha256 now ${now.sha256}, ${now.sizeBytes} bytes; verified ${file.sha256}, ${file.sizeBytes} bytes)`,
    'something else writes into the cache directory; delete the file so it is downloaded and verified again',
  );
}

/**
 * Compare what Glance says it holds with what we sent: the size, and the one digest Glance reports that
 * ties its bytes to ours (see glanceComparison; with sha256 that is the signed checksum itself). Returns
 * what was compared; throws unless all of it agrees.
 */
export function checkHeldBytes(held: GlanceImage, local: ImageDigests, file: VerifiedFile): string[] {
  if (local.sha256 !== file.sha256 || local.sizeBytes !== file.sizeBytes) throw cacheFileChanged(file, local);
  return checkGlanceHolds(held, local);
}

/** The properties that mark a raw conversion, as PATCH operations for the reveal. */
function rawConversionOps(raw: ImageDigests): JsonPatchOp[] {
  return Object.entries(rawConversionProperties(raw)).map(([key, value]) => ({ op: 'add' as const, path: `/${key}`, value }));
}

/** Glance's size and digest against `local` (the bytes it must hold); returns what was compared. */
export function checkGlanceHolds(held: GlanceImage, local: ImageDigests): string[] {
  if (held.status !== 'active') {
    throw new SyncError('GLANCE_UPLOAD_INCOMPLETE', `image ${held.id} is ${held.status} after the upload, not active`, 'Glance did not finish storing the data; see its logs; retried next cycle', { retryable: true });
  }
  const by = glanceComparison(held);
  if (!by) {
    throw new SyncError('GLANCE_NO_DIGEST', `image ${held.id} is active, but Glance reports neither os_hash_value nor checksum for it`,
      'nothing ties the bytes Glance holds to the verified ones; check glance-api (its hashing_algorithm) and its store');
  }
  const ours = by.algorithm === 'sha256' ? local.sha256 : local.digests[by.algorithm];
  if (ours === undefined) throw new Error(`no ${by.algorithm} digest of the upload to compare with Glance's ${by.field}`);
  const mismatches: string[] = [];
  if (held.size !== local.sizeBytes) mismatches.push(`size ${held.size ?? 'none'} != ${local.sizeBytes}`);
  if (by.value !== ours) mismatches.push(`${by.field} (${by.algorithm}) ${by.value} != ${ours}`);
  if (mismatches.length > 0) throw new GlanceHashMismatchError(held.id, mismatches);
  return ['size', by.algorithm];
}
