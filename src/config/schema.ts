import { z } from 'zod';
import { ARCHES, CHANNELS, VARIANTS } from '../source/image.js';
import { cronExpressionValid } from '../daemon/schedule.js';

export const DEFAULT_SOURCE_URL = 'https://cloud-images.ubuntu.com';

const directoryTarget = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
  type: z.literal('directory'),
  path: z.string().min(1),
});

/** Placeholders a glance `nameTemplate` / `stableName` may use. */
export const GLANCE_NAME_PLACEHOLDERS = ['version', 'codename', 'release', 'arch', 'glanceArch', 'serial', 'channel', 'variant'] as const;

/**
 * Keys a glance target's `properties` may not set: Glance's own image fields (set from other settings or
 * by Glance), the identity properties every image gets (os_distro, architecture, ubuntu_*), and our
 * `cloudimg_sync_*` bookkeeping: the target finds its images again by them.
 */
export const GLANCE_RESERVED_PROPERTY = /^(id|name|status|visibility|protected|os_hidden|owner|size|virtual_size|checksum|os_hash_algo|os_hash_value|disk_format|container_format|min_disk|min_ram|tags|created_at|updated_at|locations|direct_url|self|file|schema|os_glance_.*|os_distro|os_version|architecture|ubuntu_codename|ubuntu_serial|cloudimg_sync_.*)$/;

const noReservedKey = [
  (p: Record<string, string>) => Object.keys(p).every((k) => !GLANCE_RESERVED_PROPERTY.test(k)),
  'a reserved key (a Glance image field, os_glance_*, os_distro, os_version, architecture, ubuntu_*, cloudimg_sync_*) cannot be set as a property',
] as const;
const propertyMap = z.record(z.string(), z.string()).refine(...noReservedKey);
/** One value or a list of them, as a list. */
function oneOrMany<T extends z.ZodType>(schema: T) {
  return z.union([schema, z.array(schema).min(1)]).transform((v) => (Array.isArray(v) ? v : [v]) as z.output<T>[]);
}
// YAML reads 20.10 as the number 20.1: put the two decimals back.
const releaseName = z.union([z.string(), z.number().transform((n) => n.toFixed(2))]);
/** Properties for the images a `match` selects (every field that is given must match; none: every image). */
const propertyRule = z.strictObject({
  match: z.strictObject({
    channel: oneOrMany(z.enum(CHANNELS)).optional(),
    variant: oneOrMany(z.enum(VARIANTS)).optional(),
    /** Codenames or versions. */
    release: oneOrMany(releaseName).optional(),
    arch: oneOrMany(z.enum(ARCHES)).optional(),
  }).default({}),
  set: propertyMap,
});
export type GlancePropertyRule = z.infer<typeof propertyRule>;

const glanceNameTemplate = z.string().min(1).refine(
  (t) => [...t.matchAll(/\{([^}]*)\}/g)].every((m) => (GLANCE_NAME_PLACEHOLDERS as readonly string[]).includes(m[1] ?? '')),
  `unknown placeholder; use ${GLANCE_NAME_PLACEHOLDERS.map((p) => `{${p}}`).join(' ')}`,
);

const glanceTarget = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
  type: z.literal('glance'),
  method: z.enum(['put', 'stream', 'web-download', 'glance-direct']).default('put'),
  cloud: z.string().optional(),
  region: z.string().optional(),
  interface: z.enum(['public', 'internal', 'admin']).optional(),
  endpoint: z.string().url().optional(),
  visibility: z.enum(['public', 'private', 'shared', 'community']).default('private'),
  containerFormat: z.enum(['bare', 'ovf', 'ova', 'aki', 'ari', 'ami', 'docker', 'compressed']).default('bare'),
  /**
   * What Glance stores: the signed qcow2 as it is, or its guest disk as raw (`qemu-img convert`, for Ceph RBD
   * stores, which boot only raw without converting on every boot).
   */
  diskFormat: z.enum(['qcow2', 'raw']).default('qcow2'),
  nameTemplate: glanceNameTemplate.default('Ubuntu {version} ({codename}) {arch} {serial}'),
  /** Name given to the newest image of each release/arch (the previous one gets its template name back). */
  stableName: glanceNameTemplate.optional(),
  tags: z.array(z.string().min(1)).default([]),
  keepTags: z.array(z.string().min(1)).default(['cloudimg-sync-keep']),
  /**
   * Extra properties: a map for every image, or a list of rules `{ match: { channel, variant, release, arch }, set: {...} }`
   * applied in order (a later rule wins). Either way they override the defaults (hw_*, os_admin_user, SCS).
   */
  properties: z.preprocess(
    (v) => (v && typeof v === 'object' && !Array.isArray(v) ? [{ set: v }] : v),
    z.array(propertyRule),
  ).default([]),
  /** Glance's `hypervisor_type` property (unset by default: any hypervisor). */
  hypervisorType: z.enum(['qemu', 'kvm']).optional(),
  /** Glance's `min_ram`, in MiB (0: no minimum). */
  minRamMiB: z.number().int().min(0).default(0),
  /** With `visibility: shared`: the projects (names or ids) the images are shared with, and accepted for where the credentials allow. */
  members: z.array(z.string().min(1)).default([]),
  /** Opt-in metadata sets: `scs` adds the SCS image metadata standard's fields (scs-0102), derived from the stream. */
  metadata: z.enum(['scs']).optional(),
  hideGraceHours: z.number().nonnegative().default(72),
  /** How long an import (web-download, glance-direct) may take before it counts as failed. */
  importTimeoutMinutes: z.number().positive().default(30),
  auth: z.record(z.string(), z.string()).optional(),
}).refine((t) => !(t.diskFormat === 'raw' && t.method === 'web-download'), {
  path: ['diskFormat'],
  message: 'raw needs method put, stream or glance-direct: with web-download Glance fetches the qcow2 itself (enable its image_conversion import plugin for raw instead)',
}).refine((t) => t.members.length === 0 || t.visibility === 'shared', {
  path: ['members'],
  message: 'members need visibility: shared (Glance shares only shared images with projects)',
});

export const configSchema = z.strictObject({
  source: z
    .strictObject({
      url: z.string().url().default(DEFAULT_SOURCE_URL),
      channel: z.enum(CHANNELS).default('release'),
      variant: z.enum(VARIANTS).default('server'),
      // YAML reads 20.10 as the number 20.1: put the two decimals back.
      releases: z.array(z.union([z.string(), z.number().transform((n) => n.toFixed(2))])).min(1).default(['noble']),
      arches: z.array(z.enum(ARCHES)).min(1).default(['amd64']),
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
  /** node-cron expression (5 fields, or 6 with seconds first): when the daemon runs a cycle. */
  schedule: z.string().refine((s) => cronExpressionValid(s), 'not a valid cron expression (e.g. "17 */6 * * *")').default('17 */6 * * *'),
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
    .default([{ name: 'local', type: 'directory', path: './var/images' }])
    .refine((ts) => new Set(ts.map((t) => t.name)).size === ts.length, 'target names must be unique'),
});

export type Config = z.infer<typeof configSchema>;
export type TargetConfig = Config['targets'][number];
export type DirectoryTargetConfig = z.infer<typeof directoryTarget>;
export type GlanceTargetConfig = z.infer<typeof glanceTarget>;
