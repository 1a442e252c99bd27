import { z } from 'zod';
import { streamSelectionShape } from '../source/streams.js';
import { cronExpressionValid } from '../daemon/schedule.js';

export const DEFAULT_SOURCE_URL = 'https://cloud-images.ubuntu.com';

/** Keys every target has: which streams it carries, and what becomes of its images of end-of-life releases. */
const targetCommon = {
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
  /** Stream ids (`release/server`) this target carries; default every configured stream. */
  streams: z.array(z.string().regex(/^[a-z]+\/[a-z]+$/, 'a stream id like release/server')).min(1).optional(),
  /** Images of a release past its end of life: kept (default), hidden, or deleted (hidden first, then after the grace). */
  eol: z.enum(['keep', 'hide', 'delete']).default('keep'),
};

const directoryTarget = z.strictObject({
  ...targetCommon,
  type: z.literal('directory'),
  path: z.string().min(1),
});

/** Placeholders a glance `nameTemplate` / `stableName` may use. */
export const GLANCE_NAME_PLACEHOLDERS = ['version', 'codename', 'release', 'arch', 'glanceArch', 'serial', 'channel', 'variant', 'flavor'] as const;

/**
 * Keys a glance target's `properties` may not set: Glance's own image fields (set from other settings or
 * by Glance), the identity properties every image gets (os_distro, architecture, ubuntu_*), and our
 * `cloudimg_sync_*` bookkeeping: the target finds its images again by them.
 */
export const GLANCE_RESERVED_PROPERTY = /^(id|name|status|visibility|protected|os_hidden|owner|size|virtual_size|checksum|os_hash_algo|os_hash_value|disk_format|container_format|min_disk|min_ram|tags|created_at|updated_at|locations|direct_url|self|file|schema|os_glance_.*|os_distro|os_version|architecture|ubuntu_codename|ubuntu_serial|cloudimg_sync_.*)$/;

const glanceNameTemplate = z.string().min(1).refine(
  (t) => [...t.matchAll(/\{([^}]*)\}/g)].every((m) => (GLANCE_NAME_PLACEHOLDERS as readonly string[]).includes(m[1] ?? '')),
  `unknown placeholder; use ${GLANCE_NAME_PLACEHOLDERS.map((p) => `{${p}}`).join(' ')}`,
);

const glanceTarget = z.strictObject({
  ...targetCommon,
  type: z.literal('glance'),
  method: z.enum(['put', 'stream', 'web-download', 'glance-direct']).default('put'),
  cloud: z.string().optional(),
  region: z.string().optional(),
  interface: z.enum(['public', 'internal', 'admin']).optional(),
  endpoint: z.string().url().optional(),
  visibility: z.enum(['public', 'private', 'shared', 'community']).default('private'),
  containerFormat: z.enum(['bare', 'ovf', 'ova', 'aki', 'ari', 'ami', 'docker', 'compressed']).default('bare'),
  // {flavor} is empty for release/server images, else `minimal`, `daily` or `minimal daily`.
  nameTemplate: glanceNameTemplate.default('Ubuntu {version} ({codename}) {flavor} {arch} {serial}'),
  /** Name given to the newest image of each release/arch (the previous one gets its template name back). */
  stableName: glanceNameTemplate.optional(),
  tags: z.array(z.string().min(1)).default([]),
  keepTags: z.array(z.string().min(1)).default(['cloudimg-sync-keep']),
  properties: z
    .record(z.string(), z.string())
    .default({})
    .refine((p) => Object.keys(p).every((k) => !GLANCE_RESERVED_PROPERTY.test(k)), 'a reserved key (a Glance image field, os_glance_*, os_distro, os_version, architecture, ubuntu_*, cloudimg_sync_*) cannot be set as a property'),
  hideGraceHours: z.number().nonnegative().default(72),
  /** How long an import (web-download, glance-direct) may take before it counts as failed. */
  importTimeoutMinutes: z.number().positive().default(30),
  auth: z.record(z.string(), z.string()).optional(),
});

export const configSchema = z.strictObject({
  source: z
    .strictObject({
      url: z.string().url().default(DEFAULT_SOURCE_URL),
      ...streamSelectionShape,
      verifySignature: z.boolean().default(true),
      keyring: z.string().optional(),
    })
    .prefault({}),
  stateDir: z.string().default('./var/state'),
  cacheDir: z.string().default('./var/cache'),
  keep: z.number().int().min(1).default(2),
  /** Keep downloaded images in cacheDir after every target has them (default: delete them). */
  keepCache: z.boolean().default(false),
  http: z
    .strictObject({
      connectTimeoutMs: z.number().int().positive().default(15_000),
      idleTimeoutMs: z.number().int().positive().default(60_000),
      retries: z.number().int().min(0).default(4),
      retryBaseDelayMs: z.number().int().positive().default(1_000),
      retryMaxDelayMs: z.number().int().positive().default(60_000),
    })
    .prefault({}),
  log: z.strictObject({ level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info') }).prefault({}),
  // ---- daemon (`cloudimg-sync daemon`)
  /**
   * node-cron expression (5 fields, or 6 with seconds first): when the daemon runs a cycle. Unset: hourly,
   * at a minute and second fixed per install (derived from stateDir/install-id; see resolveSchedule()).
   */
  schedule: z.string().refine((s) => cronExpressionValid(s), 'not a valid cron expression (e.g. "17 * * * *")').optional(),
  /** Run a cycle as soon as the daemon starts, not only on the schedule. */
  runOnStart: z.boolean().default(true),
  /** On SIGTERM/SIGINT, how long the cycle in flight may take to stop before the daemon exits anyway. */
  shutdownGraceMs: z.number().int().nonnegative().default(30_000),
  /** After a failed cycle, an extra earlier retry after min(baseDelayMs * 2^(failures-1), maxDelayMs). */
  failureRetry: z
    .strictObject({
      baseDelayMs: z.number().int().positive().default(60_000),
      maxDelayMs: z.number().int().positive().default(3_600_000),
    })
    .prefault({}),
  /** HTTP listener for /healthz and /metrics. */
  health: z
    .strictObject({
      enabled: z.boolean().default(true),
      listen: z.string().min(1).default('127.0.0.1'),
      port: z.number().int().min(0).max(65_535).default(9465),
      /** /healthz answers 503 when the last successful cycle is older than this. */
      maxAgeHours: z.number().positive().default(24),
    })
    .prefault({}),
  targets: z
    .array(z.discriminatedUnion('type', [directoryTarget, glanceTarget]))
    .min(1)
    .default([{ name: 'local', type: 'directory', path: './var/images', eol: 'keep' }])
    .refine((ts) => new Set(ts.map((t) => t.name)).size === ts.length, 'target names must be unique'),
});

export type Config = z.infer<typeof configSchema>;
export type TargetConfig = Config['targets'][number];
export type DirectoryTargetConfig = z.infer<typeof directoryTarget>;
export type GlanceTargetConfig = z.infer<typeof glanceTarget>;
