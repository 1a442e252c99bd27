import type { Readable } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Dispatcher } from 'undici';
import { request } from '../fetch/undici.js';
import { z } from 'zod';
import { silentLogger, type Logger } from '../log.js';
import { OpenStackError, cleanErrorMessage, transportError } from './errors.js';
import { USER_AGENT, readJson } from './http.js';
import type { KeystoneSession } from './keystone.js';

/** An image as Glance v2 returns it; custom properties are top-level keys. */
const imageSchema = z.looseObject({
  id: z.string(),
  name: z.string().nullable().optional(),
  status: z.string(),
  visibility: z.string().optional(),
  protected: z.boolean().optional(),
  os_hidden: z.boolean().optional(),
  size: z.number().nullable().optional(),
  virtual_size: z.number().nullable().optional(),
  checksum: z.string().nullable().optional(),
  os_hash_algo: z.string().nullable().optional(),
  os_hash_value: z.string().nullable().optional(),
  disk_format: z.string().nullable().optional(),
  container_format: z.string().nullable().optional(),
  tags: z.array(z.string()).default([]),
  created_at: z.string().optional(),
  updated_at: z.string().optional(),
});
export type GlanceImage = z.infer<typeof imageSchema>;

const imageListSchema = z.looseObject({ images: z.array(imageSchema), next: z.string().optional() });
const taskSchema = z.looseObject({
  id: z.string(),
  type: z.string().optional(),
  status: z.string(),
  message: z.string().nullable().optional(),
  created_at: z.string().optional(),
  updated_at: z.string().optional(),
});
export type GlanceTask = z.infer<typeof taskSchema>;
const taskListSchema = z.looseObject({ tasks: z.array(taskSchema) });
const memberSchema = z.looseObject({ member_id: z.string(), status: z.string() });
export type GlanceMember = z.infer<typeof memberSchema>;
const memberListSchema = z.looseObject({ members: z.array(memberSchema) });
const importInfoSchema = z.looseObject({
  'import-methods': z.looseObject({ value: z.array(z.string()) }),
});

type PropertyValue = string | number | boolean | string[] | null;

/** Body of POST /v2/images: the image's fields and our custom properties side by side. */
export interface CreateImageRequest {
  name: string;
  disk_format: string;
  container_format: string;
  visibility?: 'public' | 'private' | 'shared' | 'community';
  protected?: boolean;
  tags?: string[];
  min_disk?: number;
  min_ram?: number;
  [property: string]: PropertyValue | undefined;
}

export type JsonPatchOp =
  | { op: 'add' | 'replace'; path: string; value: PropertyValue }
  | { op: 'remove'; path: string };

export type ImportMethod = { name: 'web-download'; uri: string } | { name: 'glance-direct' };

/**
 * Upload bytes as undici sends them: a stream, or an async iterable (undici pulls the next chunk only
 * once the socket has drained, which lets a reader reuse its buffers: see FileUploadReader).
 */
export type UploadBody = Readable | AsyncIterable<Uint8Array>;

/** Image bytes: a body, or a function that opens a fresh one so a refused token can be retried. */
export type ImageData = UploadBody | (() => UploadBody);

export interface GlanceClientOptions {
  log?: Logger;
  /** Timeout for ordinary calls (headers and body). Default 60 s. */
  requestTimeoutMs?: number;
  /** How long to wait for Glance's answer once upload bytes stop flowing. Default 10 min. */
  uploadAnswerTimeoutMs?: number;
  /** Page size for listings. Default 100. */
  pageSize?: number;
}

interface CallOptions {
  query?: Record<string, string | number | boolean | string[] | undefined>;
  json?: unknown;
  data?: ImageData;
  sizeBytes?: number;
  contentType?: string;
  expect: readonly number[];
  signal?: AbortSignal;
}

const JSON_PATCH = 'application/openstack-images-v2.1-json-patch';

/**
 * Glance images v2. Every call goes through `call()`, which adds the token, asks for JSON errors,
 * re-authenticates once on 401 and turns error answers into OpenStackErrors.
 */
export class GlanceClient {
  private readonly session: KeystoneSession;
  private readonly log: Logger;
  private readonly requestTimeoutMs: number;
  private readonly uploadAnswerTimeoutMs: number;
  private readonly pageSize: number;

  constructor(session: KeystoneSession, options: GlanceClientOptions = {}) {
    this.session = session;
    this.log = options.log ?? silentLogger();
    this.requestTimeoutMs = options.requestTimeoutMs ?? 60_000;
    this.uploadAnswerTimeoutMs = options.uploadAnswerTimeoutMs ?? 600_000;
    this.pageSize = options.pageSize ?? 100;
  }

  async createImage(image: CreateImageRequest, signal?: AbortSignal): Promise<GlanceImage> {
    const res = await this.call('POST', '/v2/images', { json: withoutUndefined(image), expect: [201], signal });
    return this.readImage(res, 'POST', '/v2/images');
  }

  async getImage(id: string, signal?: AbortSignal): Promise<GlanceImage> {
    const path = `/v2/images/${enc(id)}`;
    return this.readImage(await this.call('GET', path, { expect: [200], signal }), 'GET', path);
  }

  /**
   * Every image matching `filter` (exact match on fields or custom properties, e.g. `{ cloudimg_sync_release:
   * 'noble' }`), following Glance's `next` links. Hidden images (`os_hidden`) are left out unless asked for.
   */
  async findImages(
    filter: Readonly<Record<string, string>> = {},
    options: { includeHidden?: boolean; tags?: string[]; signal?: AbortSignal } = {},
  ): Promise<GlanceImage[]> {
    const out: GlanceImage[] = [];
    for (const hidden of options.includeHidden ? [false, true] : [false]) {
      const query = { ...filter, ...(hidden ? { os_hidden: true } : {}), ...(options.tags ? { tag: options.tags } : {}) };
      for await (const image of this.listImages(query, options.signal)) out.push(image);
    }
    return out;
  }

  /** Pages of GET /v2/images, lazily. */
  async *listImages(
    query: Readonly<Record<string, string | number | boolean | string[]>> = {},
    signal?: AbortSignal,
  ): AsyncGenerator<GlanceImage> {
    let path: string | undefined = `/v2/images?${toQuery({ limit: this.pageSize, ...query })}`;
    while (path !== undefined) {
      const res = await this.call('GET', path, { expect: [200], signal });
      const page: z.infer<typeof imageListSchema> = await readJson(res.body, imageListSchema, { service: 'glance', method: 'GET', url: path });
      yield* page.images;
      // `next` is a path from the Glance root ("/v2/images?marker=..."); stop on an empty page too.
      path = page.next && page.images.length > 0 ? page.next : undefined;
    }
  }

  async patchImage(id: string, ops: readonly JsonPatchOp[], signal?: AbortSignal): Promise<GlanceImage> {
    const path = `/v2/images/${enc(id)}`;
    const res = await this.call('PATCH', path, { json: ops, contentType: JSON_PATCH, expect: [200], signal });
    return this.readImage(res, 'PATCH', path);
  }

  /**
   * PUT the image bytes, streamed (Content-Length `sizeBytes`; without it, chunked); Glance computes
   * checksum and os_hash_value.
   */
  async uploadImageData(id: string, data: ImageData, sizeBytes: number | undefined, signal?: AbortSignal): Promise<void> {
    await this.putData(id, 'file', data, sizeBytes, signal);
  }

  /** PUT the bytes to the staging area, for a later `importImage(id, { name: 'glance-direct' })`. */
  async stageImageData(id: string, data: ImageData, sizeBytes: number, signal?: AbortSignal): Promise<void> {
    await this.putData(id, 'stage', data, sizeBytes, signal);
  }

  /** Start an interoperable import (202); follow it with `waitForImport`. */
  async importImage(id: string, method: ImportMethod, signal?: AbortSignal): Promise<void> {
    const res = await this.call('POST', `/v2/images/${enc(id)}/import`, { json: { method }, expect: [202], signal });
    await res.body.dump();
  }

  /** The import methods this Glance offers (`glance-direct`, `web-download`, ...). */
  async getImportInfo(signal?: AbortSignal): Promise<{ methods: string[] }> {
    const path = '/v2/info/import';
    const res = await this.call('GET', path, { expect: [200], signal });
    const doc = await readJson(res.body, importInfoSchema, { service: 'glance', method: 'GET', url: path });
    return { methods: doc['import-methods'].value };
  }

  /** Tasks Glance ran for this image (imports), oldest first. */
  async getImageTasks(id: string, signal?: AbortSignal): Promise<GlanceTask[]> {
    const path = `/v2/images/${enc(id)}/tasks`;
    const res = await this.call('GET', path, { expect: [200], signal });
    const doc = await readJson(res.body, taskListSchema, { service: 'glance', method: 'GET', url: path });
    return [...doc.tasks].sort((a, b) => (a.created_at ?? '').localeCompare(b.created_at ?? ''));
  }

  /**
   * Poll until an import finishes. A failed web-download quietly puts the image back to `queued`; the
   * newest task then says `failure` and why, which becomes GLANCE_IMPORT_FAILED.
   */
  async waitForImport(
    id: string,
    options: { timeoutMs?: number; intervalMs?: number; signal?: AbortSignal } = {},
  ): Promise<GlanceImage> {
    const deadline = performance.now() + (options.timeoutMs ?? 30 * 60_000);
    const intervalMs = options.intervalMs ?? 1_000;
    for (;;) {
      const image = await this.getImage(id, options.signal);
      if (image.status === 'active') return image;
      if (image.status === 'killed' || image.status === 'deleted') throw importFailed(id, `image status is ${image.status}`);
      if (image.status === 'queued' || image.status === 'uploading') {
        const newest = (await this.getImageTasks(id, options.signal)).at(-1);
        if (newest?.status === 'failure') throw importFailed(id, newest.message || 'the import task failed');
      }
      if (performance.now() > deadline) {
        throw new OpenStackError(
          'GLANCE_IMPORT_TIMEOUT',
          `import of image ${id} still ${image.status} after ${Math.round((options.timeoutMs ?? 1_800_000) / 1000)} s`,
          'Glance may be slow or stuck; check its tasks (GET /v2/images/ID/tasks) and logs; retried next cycle',
          { service: 'glance' },
          { retryable: true },
        );
      }
      await sleep(intervalMs, undefined, { signal: options.signal });
    }
  }

  /** Delete an image; an image that is already gone counts as deleted. */
  async deleteImage(id: string, signal?: AbortSignal): Promise<void> {
    const res = await this.call('DELETE', `/v2/images/${enc(id)}`, { expect: [204, 404], signal });
    await res.body.dump();
  }

  /** The projects a shared image is shared with, and whether each accepted it. */
  async listMembers(id: string, signal?: AbortSignal): Promise<GlanceMember[]> {
    const path = `/v2/images/${enc(id)}/members`;
    const res = await this.call('GET', path, { expect: [200], signal });
    return (await readJson(res.body, memberListSchema, { service: 'glance', method: 'GET', url: path })).members;
  }

  /** Share an image (visibility `shared`) with a project; the member starts `pending`. */
  async addMember(id: string, projectId: string, signal?: AbortSignal): Promise<void> {
    const res = await this.call('POST', `/v2/images/${enc(id)}/members`, { json: { member: projectId }, expect: [200], signal });
    await res.body.dump();
  }

  /** Set a member's status (`accepted`, `rejected`, `pending`): the member project itself, or an admin. */
  async setMemberStatus(id: string, projectId: string, status: 'accepted' | 'rejected' | 'pending', signal?: AbortSignal): Promise<void> {
    const res = await this.call('PUT', `/v2/images/${enc(id)}/members/${enc(projectId)}`, { json: { status }, expect: [200], signal });
    await res.body.dump();
  }

  async addTag(id: string, tag: string, signal?: AbortSignal): Promise<void> {
    const res = await this.call('PUT', `/v2/images/${enc(id)}/tags/${enc(tag)}`, { expect: [204], signal });
    await res.body.dump();
  }

  async removeTag(id: string, tag: string, signal?: AbortSignal): Promise<void> {
    const res = await this.call('DELETE', `/v2/images/${enc(id)}/tags/${enc(tag)}`, { expect: [204, 404], signal });
    await res.body.dump();
  }

  private async readImage(res: Dispatcher.ResponseData, method: string, path: string): Promise<GlanceImage> {
    return readJson(res.body, imageSchema, { service: 'glance', method, url: path });
  }

  private async putData(id: string, kind: 'file' | 'stage', data: ImageData, sizeBytes: number | undefined, signal?: AbortSignal): Promise<void> {
    const startedAt = performance.now();
    const res = await this.call('PUT', `/v2/images/${enc(id)}/${kind}`, {
      data,
      sizeBytes,
      contentType: 'application/octet-stream',
      expect: [204],
      signal,
    });
    await res.body.dump();
    const durationMs = Math.round(performance.now() - startedAt);
    this.log.info(
      { event: kind === 'file' ? 'glance.upload.done' : 'glance.stage.done', imageId: id, bytes: sizeBytes, durationMs },
      `${kind === 'file' ? 'uploaded' : 'staged'} ${sizeBytes === undefined ? 'a stream' : `${sizeBytes} bytes`} in ${durationMs} ms`,
    );
  }

  /** The one way to Glance: token, JSON errors, one re-auth on 401, errors with a code and a cure. */
  private async call(method: string, pathAndQuery: string, options: CallOptions): Promise<Dispatcher.ResponseData> {
    const path = options.query ? `${pathAndQuery}?${toQuery(options.query)}` : pathAndQuery;
    for (let attempt = 1; ; attempt++) {
      const token = await this.session.getToken(options.signal);
      const url = `${await this.session.imageEndpoint(options.signal)}${path}`;
      const headers: Record<string, string> = { 'x-auth-token': token, accept: 'application/json', 'user-agent': USER_AGENT };
      let body: string | UploadBody | undefined;
      if (options.json !== undefined) {
        body = JSON.stringify(options.json);
        headers['content-type'] = options.contentType ?? 'application/json';
      } else if (options.data !== undefined) {
        body = typeof options.data === 'function' ? options.data() : options.data;
        headers['content-type'] = options.contentType ?? 'application/octet-stream';
        if (options.sizeBytes !== undefined) headers['content-length'] = String(options.sizeBytes);
      }
      const isUpload = options.data !== undefined;
      let res: Dispatcher.ResponseData;
      try {
        res = await request(url, {
          method: method as Dispatcher.HttpMethod,
          dispatcher: this.session.dispatcher,
          headers,
          // undici documents async iterable bodies (sent as pulled, after each drain); its types omit them.
          body: body as Dispatcher.RequestOptions['body'],
          headersTimeout: isUpload ? this.uploadAnswerTimeoutMs : this.requestTimeoutMs,
          bodyTimeout: this.requestTimeoutMs,
          signal: options.signal,
        });
      } catch (err) {
        throw transportError('glance', method, url, err);
      }
      if (res.statusCode === 401 && attempt === 1) {
        await res.body.dump();
        this.session.invalidate(token);
        const replayable = !isUpload || typeof options.data === 'function';
        this.log.info(
          { event: 'glance.auth.refused', method, path: pathAndQuery, retrying: replayable },
          'Glance refused the token; authenticating again',
        );
        if (replayable) continue;
        throw new OpenStackError(
          'GLANCE_TOKEN_REFUSED',
          `Glance refused the token during ${method} ${url}; the data stream cannot be replayed`,
          'none needed: the refused token was dropped and the next attempt authenticates again (pass a function that reopens the data to have it retried at once)',
          { service: 'glance', method, url, status: 401 },
          { retryable: true },
        );
      }
      if (options.expect.includes(res.statusCode)) return res;
      const text = await res.body.text().catch(() => '');
      throw glanceHttpError(method, url, res.statusCode, cleanErrorMessage(text));
    }
  }
}

function enc(segment: string): string {
  return encodeURIComponent(segment);
}

function toQuery(query: Readonly<Record<string, string | number | boolean | string[] | undefined>>): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value === undefined) continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, String(v));
  }
  return params.toString();
}

function withoutUndefined<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}

function importFailed(id: string, detail: string): OpenStackError {
  return new OpenStackError(
    'GLANCE_IMPORT_FAILED',
    `import of image ${id} failed: ${detail}`,
    'for web-download check that Glance can reach the URI (and [import_filtering_opts] allows its host/port); retried next cycle',
    { service: 'glance' },
    { retryable: true },
  );
}

function glanceHttpError(method: string, url: string, status: number, detail: string): OpenStackError {
  const at = `${method} ${url} answered ${status}${detail ? `: ${detail}` : ''}`;
  const details = { service: 'glance' as const, method, url, status };
  switch (status) {
    case 413:
      return new OpenStackError(
        'IMAGE_TOO_LARGE',
        `Glance refused the image data as too large (${at})`,
        'raise image_size_cap (bytes, [DEFAULT] in glance-api.conf) above the image size, or the storage quota of the project',
        details,
      );
    case 401:
      return new OpenStackError(
        'GLANCE_UNAUTHORIZED',
        `Glance refused a freshly issued token (${at})`,
        "Glance cannot validate tokens: check its [keystone_authtoken] settings and that it reaches the same Keystone",
        details,
      );
    case 403:
      return new OpenStackError(
        'GLANCE_FORBIDDEN',
        `not allowed: ${at}`,
        'the user lacks the role Glance policy wants for this (public visibility and protected images usually need admin)',
        details,
      );
    case 404:
      return new OpenStackError('GLANCE_NOT_FOUND', at, 'the image is gone (deleted outside cloudimg-sync?); it is recreated next cycle', details);
    case 409:
      return new OpenStackError(
        'GLANCE_CONFLICT',
        at,
        'the image is not in a state that allows this (data already uploaded, property missing for replace, ...); see the message',
        details,
      );
    case 400:
    case 415:
      return new OpenStackError('GLANCE_BAD_REQUEST', at, 'a bug or an unsupported Glance version: report it with this message', details);
    default: {
      const retryable = status >= 500 || status === 429;
      return new OpenStackError(
        `GLANCE_HTTP_${status}`,
        at,
        retryable ? 'Glance is failing; retried next cycle (see its logs if it persists)' : 'see the message',
        details,
        { retryable },
      );
    }
  }
}
