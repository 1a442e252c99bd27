import { z } from 'zod';
import { ARCHES, CHANNELS, VARIANTS } from '../source/image.js';

export const DEFAULT_SOURCE_URL = 'https://cloud-images.ubuntu.com';

const directoryTarget = z.strictObject({
  name: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'letters, digits, _ . - only'),
  type: z.literal('directory'),
  path: z.string().min(1),
});

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
  nameTemplate: z.string().default('Ubuntu {version} ({codename}) {arch} {serial}'),
  stableName: z.string().optional(),
  tags: z.array(z.string()).default([]),
  keepTags: z.array(z.string()).default(['cloudimg-sync-keep']),
  properties: z.record(z.string(), z.string()).default({}),
  hideGraceHours: z.number().nonnegative().default(72),
  auth: z.record(z.string(), z.string()).optional(),
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
